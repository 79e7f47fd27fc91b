r"""The unit sphere $S^d = \{x \in \mathbb{R}^{d+1} : \|x\| = 1\}$, the round metric.

$$\exp_x(u) = \cos\|u\|\,x + \frac{\sin\|u\|}{\|u\|}\,u, \qquad
\log_x(y) = d(x, y)\,\frac{P_x(y - x)}{\|P_x(y - x)\|}, \qquad
d(x, y) = 2\operatorname{atan2}(\|x - y\|, \|x + y\|),$$

with $P_x u = u - \langle x, u\rangle x$ the tangent projection. The distance is
written with `atan2` of two norms, accurate both for nearby and for nearly
antipodal points (`arccos` of the inner product loses half the digits at both
ends). $\cos$ and $\sin\theta/\theta$ are evaluated as functions of $\theta^2$ with
their Taylor series below $\theta = 10^{-2}$, so `expmap` has the identity as its
derivative at `u = 0` and no NaN anywhere.
"""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _checks, registry
from ._base import AbstractCompactManifold, Point, Scalar, Tangent, safe_norm

__all__ = ["Sphere"]

_SMALL = 1e-4  # theta**2 below which the Taylor series are used (theta < 1e-2)


def _cos_sinc(sq: Scalar) -> tuple[Scalar, Scalar]:
    r"""$\cos\theta$ and $\sin\theta/\theta$ for $\theta = \sqrt{sq}$, smooth at 0."""
    small = sq < _SMALL
    theta = jnp.sqrt(jnp.where(small, 1.0, sq))
    cos = jnp.where(small, 1 - sq / 2 + sq * sq / 24, jnp.cos(theta))
    sinc = jnp.where(small, 1 - sq / 6 + sq * sq / 120, jnp.sin(theta) / theta)
    return cos, sinc


@registry.register("manifold", "sphere")
class Sphere(AbstractCompactManifold):
    r"""The sphere $S^d$, points as unit vectors in $\mathbb{R}^{d+1}$.

    Attributes:
        dim: $d$ (points have shape `(d + 1,)`; `Sphere(2)` is the globe).

    At an exactly antipodal pair every direction is a shortest geodesic; `logmap`
    then returns the zero vector (finite, and the mean over directions).

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> s2 = manifolds.Sphere(2)
        >>> north, east = jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0])
        >>> round(s2.dist(north, east).item(), 6)  # a quarter of a great circle
        1.570796
        >>> y = s2.expmap(north, s2.logmap(north, east))
        >>> bool(s2.dist(y, east) < 1e-6)
        True
    """

    dim: int = eqx.field(static=True)
    injectivity_radius: ClassVar[float] = math.pi

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim + 1,)

    def expmap(self, x: Point, u: Tangent) -> Point:
        cos, sinc = _cos_sinc(jnp.sum(u * u))
        return self.projx(cos * x + sinc * u)

    def logmap(self, x: Point, y: Point) -> Tangent:
        # log_x(y) = (theta / sin theta) proju_x(y - x). Near y = x the factor is
        # its series in theta^2 = c2 + c2^2/12 + ... (c2 the squared chord), so
        # that the first and second derivatives in y stay exact there.
        v = self.proju(x, y - x)
        c2 = jnp.sum((x - y) ** 2)
        small = c2 < _SMALL
        sq = c2 + c2 * c2 / 12
        r = safe_norm(v)
        wide = ~small & (r > 0)
        far = self.dist(x, y) / jnp.where(wide, r, 1.0)
        near = 1 + sq / 6 + 7 * sq * sq / 360
        scale = jnp.where(small, near, jnp.where(wide, far, 1.0))
        return scale * v

    def dist(self, x: Point, y: Point) -> Scalar:
        return 2 * jnp.arctan2(safe_norm(x - y), safe_norm(x + y))

    map_projection = "mollweide"
    map_labels = ("longitude", "latitude")

    def map2d(self, x: Point) -> Float[Array, "2"]:
        r"""Longitude and latitude in radians of the last three coordinates.

        On $S^2$ the point $(\cos\phi\cos\lambda, \cos\phi\sin\lambda,
        \sin\phi)$ maps to $(\lambda, \phi)$, the north pole to latitude $\pi/2$.
        """
        x = jnp.asarray(x)
        lon = jnp.arctan2(x[-2], x[-3])
        lat = jnp.arctan2(x[-1], jnp.hypot(x[-3], x[-2]))
        return jnp.stack([lon, lat])

    def projx(self, x) -> Point:
        x = jnp.asarray(x)
        r = safe_norm(x)
        return x / jnp.where(r > 0, r, 1.0)

    def proju(self, x: Point, u) -> Tangent:
        u = jnp.asarray(u)
        return u - jnp.sum(x * u) * x

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        return jnp.sum(u * v)

    def origin(self, dtype=float) -> Point:
        r"""The north pole $e_{d+1} = (0, \dots, 0, 1)$."""
        return jnp.zeros(self.shape, dtype).at[-1].set(1)

    def random_uniform(self, key: PRNGKeyArray, dtype=float) -> Point:
        key = _checks.key(key)
        return self.projx(jax.random.normal(key, self.shape, dtype))

    def log_volume(self) -> Scalar:
        r"""The log-volume: $\log 2 + \frac{d+1}{2}\log\pi - \log\Gamma(\frac{d+1}{2})$.

        The volume is $4\pi$ for $S^2$, $2\pi^2$ for $S^3$.
        """
        half = (self.dim + 1) / 2
        return jnp.log(2.0) + half * jnp.log(jnp.pi) - gammaln(half)
