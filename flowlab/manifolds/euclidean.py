r"""Flat $\mathbb{R}^d$ with the Euclidean metric: geodesics are straight lines."""

import equinox as eqx
import jax.numpy as jnp

from .. import _checks, registry
from ._base import AbstractManifold, Point, Scalar, Tangent

__all__ = ["Euclidean"]


@registry.register("manifold", "euclidean")
class Euclidean(AbstractManifold):
    r"""$\mathbb{R}^d$: `expmap(x, u) = x + u`, `logmap(x, y) = y - x`.

    With it a geodesic path is the affine path of the same schedule, which makes it
    the reference the curved manifolds are tested against.

    Attributes:
        dim: $d$ (points have shape `(d,)`).

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> m = manifolds.Euclidean(2)
        >>> m.dist(jnp.zeros(2), jnp.array([3.0, 4.0])).item()
        5.0
    """

    dim: int = eqx.field(static=True)

    def __check_init__(self):
        _checks.positive_int("dim", self.dim)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def expmap(self, x: Point, u: Tangent) -> Point:
        return x + u

    def logmap(self, x: Point, y: Point) -> Tangent:
        return y - x

    def projx(self, x) -> Point:
        return jnp.asarray(x)

    def proju(self, x: Point, u) -> Tangent:
        return jnp.asarray(u)

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        return jnp.sum(u * v)
