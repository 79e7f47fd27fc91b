"""Probability paths: what $x_t$ is and what the model regresses onto."""

from ._base import AbstractPath, PathSample
from .affine import AffinePath

__all__ = ["AbstractPath", "AffinePath", "PathSample"]
