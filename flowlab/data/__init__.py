"""Sources of samples: 2-D toys and finite data sets, each with `sample(key, n)`."""

from collections.abc import Callable, Mapping

from .. import registry
from ._base import AbstractSampler
from .digits import DIGITS_SHAPE, Digits, load_digits
from .empirical import Empirical
from .stacked import Stacked
from .toys import Checkerboard, EightGaussians, Gaussian, Moons, Rings, SCurve, Spirals

__all__ = [
    "DATASETS",
    "DIGITS_SHAPE",
    "AbstractSampler",
    "Checkerboard",
    "Digits",
    "EightGaussians",
    "Empirical",
    "Gaussian",
    "Moons",
    "Rings",
    "SCurve",
    "Spirals",
    "Stacked",
    "get",
    "load_digits",
]

DATASETS: Mapping[str, Callable[..., AbstractSampler]] = registry.table("data")
"""Sampler names (for `get` and configs) and their classes (`flowlab.registry`)."""


def get(name: str, **kwargs) -> AbstractSampler:
    """The sampler called `name` (a key of `DATASETS`), built with `kwargs`."""
    return registry.build("data", name, **kwargs)
