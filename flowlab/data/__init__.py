"""Sources of samples, each with `sample(key, n)`: toys, manifold sets, data sets."""

from collections.abc import Callable, Mapping

from .. import registry
from ._base import AbstractSampler
from .dequantization import dequantize
from .digits import (
    DIGITS_SHAPE,
    DigitImages,
    Digits,
    LabelledDigitImages,
    load_digits,
)
from .empirical import Empirical
from .images import AbstractImageSampler
from .labelled import AbstractLabelledSampler, LabelledBlobs, LabelledEmpirical
from .manifold_sets import (
    AbstractManifoldSampler,
    TorusCheckerboard,
    TorusNormalMixture,
    VonMisesFisherMixture,
    WrappedNormalMixture,
    hyperbolic_source,
    hyperbolic_target,
    so3_mixture,
    torus_mixture,
    vmf_mixture,
)
from .quakes import Quakes, load_quakes
from .stacked import Stacked
from .toys import Checkerboard, EightGaussians, Gaussian, Moons, Rings, SCurve, Spirals
from .uniform import Uniform

__all__ = [
    "DATASETS",
    "DIGITS_SHAPE",
    "AbstractImageSampler",
    "AbstractLabelledSampler",
    "AbstractManifoldSampler",
    "AbstractSampler",
    "Checkerboard",
    "DigitImages",
    "Digits",
    "EightGaussians",
    "Empirical",
    "Gaussian",
    "LabelledBlobs",
    "LabelledDigitImages",
    "LabelledEmpirical",
    "Moons",
    "Quakes",
    "Rings",
    "SCurve",
    "Spirals",
    "Stacked",
    "TorusCheckerboard",
    "TorusNormalMixture",
    "Uniform",
    "VonMisesFisherMixture",
    "WrappedNormalMixture",
    "dequantize",
    "get",
    "hyperbolic_source",
    "hyperbolic_target",
    "load_digits",
    "load_quakes",
    "so3_mixture",
    "torus_mixture",
    "vmf_mixture",
]

DATASETS: Mapping[str, Callable[..., AbstractSampler]] = registry.table("data")
"""Sampler names (for `get` and configs) and their classes (`flowlab.registry`)."""


def get(name: str, **kwargs) -> AbstractSampler:
    """The sampler called `name` (a key of `DATASETS`), built with `kwargs`."""
    return registry.build("data", name, **kwargs)
