r"""The flat torus $T^d = (\mathbb{R} / 2\pi\mathbb{Z})^d$: angles in $[0, 2\pi)$.

The metric is the Euclidean one of the angles, so geodesics are straight lines
that wrap: `expmap(x, u) = (x + u) mod 2π`, and `logmap(x, y)` is `y - x` with each
component wrapped into $[-\pi, \pi)$ (the shortest way round). The injectivity
radius is $\pi$ in each angle.
"""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _checks, registry
from ._base import AbstractCompactManifold, AbstractFlatManifold, Point, Scalar, Tangent

__all__ = ["FlatTorus"]

_TWO_PI = 2 * jnp.pi


@registry.register("manifold", "torus")
class FlatTorus(AbstractFlatManifold, AbstractCompactManifold):
    r"""The flat torus $T^d$ (`FlatTorus(2)` is the square $[0, 2\pi)^2$, edges glued).

    Attributes:
        dim: $d$ (points have shape `(d,)`).

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> t2 = manifolds.FlatTorus(2)
        >>> x, y = jnp.array([0.1, 3.0]), jnp.array([6.2, 3.5])
        >>> [round(u, 4) for u in t2.logmap(x, y).tolist()]  # across the seam
        [-0.1832, 0.5]
    """

    dim: int = eqx.field(static=True)
    injectivity_radius: ClassVar[float] = math.pi

    def expmap(self, x: Point, u: Tangent) -> Point:
        return self.projx(x + u)

    def logmap(self, x: Point, y: Point) -> Tangent:
        return jnp.mod(y - x + jnp.pi, _TWO_PI) - jnp.pi

    def projx(self, x) -> Point:
        return jnp.mod(jnp.asarray(x), _TWO_PI)

    def random_uniform(self, key: PRNGKeyArray, dtype=float) -> Point:
        key = _checks.key(key)
        return jax.random.uniform(key, self.shape, dtype, 0.0, _TWO_PI)

    map_labels = (r"$\theta_1$", r"$\theta_2$")

    def features(self, x: Point) -> Float[Array, " two_dim"]:
        r"""$(\cos x, \sin x)$: continuous across the seam at $2\pi$."""
        return jnp.concatenate([jnp.cos(x), jnp.sin(x)])

    def log_volume(self) -> Scalar:
        r"""$d \log 2\pi$."""
        return self.dim * jnp.log(_TWO_PI)
