"""Probability paths: what $x_t$ is and what the model regresses onto."""

from . import (
    _base,
    affine,
    constant_noise,
    geodesic,
    interpolants,
    kinetic,
    multimarginal,
)

# Re-exports: `__all__` below lists them from each module's own `__all__`.
from ._base import AbstractPath, PathSample
from .affine import AffinePath
from .constant_noise import ConstantNoisePath
from .geodesic import GeodesicPath
from .interpolants import (
    AbstractInterpolant,
    AbstractTwoSidedInterpolant,
    EncodingDecodingInterpolant,
    InterpolantCoefficients,
    LinearInterpolant,
    MirrorInterpolant,
    OneSidedInterpolant,
    QuadraticGamma,
    Sin2Gamma,
    SqrtGamma,
    StochasticInterpolant,
    TrigonometricInterpolant,
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
    *_base.__all__,
    *affine.__all__,
    *constant_noise.__all__,
    *geodesic.__all__,
    *(name for name in interpolants.__all__ if name != "KINDS"),
    *multimarginal.__all__,
]
