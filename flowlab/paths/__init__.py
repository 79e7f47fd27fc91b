"""Probability paths: what $x_t$ is and what the model regresses onto."""

from ._base import AbstractPath, PathSample
from .affine import AffinePath
from .constant_noise import ConstantNoisePath
from .interpolants import (
    InterpolantCoefficients,
    QuadraticGamma,
    Sin2Gamma,
    SqrtGamma,
    StochasticInterpolant,
    ZeroGamma,
    encoding_decoding_interpolant,
    linear_interpolant,
    mirror_interpolant,
    one_sided_interpolant,
    quadratic_gamma,
    schrodinger_bridge,
    sin2_gamma,
    sqrt_gamma,
    trigonometric_interpolant,
    zero_gamma,
)
from .multimarginal import MultimarginalInterpolant, MultimarginalSample

__all__ = [
    "AbstractPath",
    "AffinePath",
    "ConstantNoisePath",
    "InterpolantCoefficients",
    "MultimarginalInterpolant",
    "MultimarginalSample",
    "PathSample",
    "QuadraticGamma",
    "Sin2Gamma",
    "SqrtGamma",
    "StochasticInterpolant",
    "ZeroGamma",
    "encoding_decoding_interpolant",
    "linear_interpolant",
    "mirror_interpolant",
    "one_sided_interpolant",
    "quadratic_gamma",
    "schrodinger_bridge",
    "sin2_gamma",
    "sqrt_gamma",
    "trigonometric_interpolant",
    "zero_gamma",
]
