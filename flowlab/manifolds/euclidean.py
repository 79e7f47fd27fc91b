r"""Flat $\mathbb{R}^d$ with the Euclidean metric: geodesics are straight lines."""

import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .. import registry
from ._base import AbstractFlatManifold, Point, Tangent

__all__ = ["Euclidean"]


@registry.register("manifold", "euclidean")
class Euclidean(AbstractFlatManifold):
    r"""$\mathbb{R}^d$: `expmap(x, u) = x + u`, `logmap(x, y) = y - x`.

    With it a geodesic path is the affine path of the same schedule, which makes it
    the reference the curved manifolds are tested against.

    Attributes:
        dim: $d$ (points have shape `(d,)`).

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds, paths, schedules
        >>> path = paths.GeodesicPath(schedules.cond_ot(), manifolds.Euclidean(2))
        >>> path.sample(None, jnp.zeros(2), jnp.array([3.0, 4.0]), 0.5).xt.tolist()
        [1.5, 2.0]
    """

    dim: int = eqx.field(static=True)
    injectivity_radius: ClassVar[float] = math.inf

    def expmap(self, x: Point, u: Tangent) -> Point:
        return x + u

    def logmap(self, x: Point, y: Point) -> Tangent:
        return y - x

    def projx(self, x) -> Point:
        return jnp.asarray(x)
