r"""Hyperbolic space $H^d$ in the hyperboloid (Lorentz) model.

$$H^d = \{x \in \mathbb{R}^{d+1} : \langle x, x\rangle_L = -1,\ x_0 > 0\}, \qquad
\langle x, y\rangle_L = -x_0 y_0 + \textstyle\sum_{i \ge 1} x_i y_i,$$

with the Minkowski form as the metric on the tangent spaces
$T_x = \{u : \langle x, u\rangle_L = 0\}$ (positive definite there). Write
$x = (x_0, x_s)$ for the time and spatial parts. Geodesics are

$$\exp_x(u) = \cosh\|u\|\,x + \frac{\sinh\|u\|}{\|u\|}\,u, \qquad
\log_x(y) = \frac{\theta}{\sinh\theta}\,(y - \cosh\theta\,x), \qquad
\theta = d(x, y) = \operatorname{arccosh}(-\langle x, y\rangle_L).$$

$H^d$ is complete and simply connected with curvature $-1$: every pair of points has
one geodesic, so `logmap` is defined everywhere (no cut locus).

Numerics. Far from the origin the coordinates grow like $e^{d(x, o)}$ and the
Minkowski form of two nearly light-like vectors cancels to about one part in
$x_0^2$; for nearby points $-\langle x, y\rangle_L$ rounds to 1 (`arccosh` then
loses half the digits, and its slope there is infinite). So:

- the distance is $\theta = 2\operatorname{asinh}\sqrt{q}$ with
  $q = \sinh^2\frac{\theta}{2} = \frac14\langle x - y, x - y\rangle_L$, evaluated as
  a ratio of sums of non-negative terms (`_sinh_half_sq`);
- the metric is evaluated from the spatial parts, split into the part along $x_s$
  and the part orthogonal to it (`inner`), and `expmap` uses only spatial parts;
- $\cosh$, $\sinh\theta/\theta$ and $\theta/\sinh\theta$ are functions of
  $\theta^2$ (or $q$) with Taylor series below $10^{-4}$, so the derivatives at
  `u = 0` and `y = x` are the identity and the tangent projection, and finite.

In float64 `dist` keeps a relative error of a few $\epsilon$ near the origin, for
nearby points (down to $10^{-12}$ apart) and for far ones; at distance $r$ from the
origin it grows to at most about $\epsilon \sinh r$, which is how far the rounding
of the coordinates themselves moves a point there. A point farther than about 44
(float32) or 355 (float64) from the origin overflows $|x_s|^2$.
"""

import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .. import _checks, registry
from ._base import AbstractManifold, Point, Scalar, Tangent, safe_norm, safe_sqrt

__all__ = ["Hyperbolic"]

_SMALL = 1e-4  # theta**2 (or q) below which the Taylor series are used


def _cosh_sinhc(sq: Scalar) -> tuple[Scalar, Scalar]:
    r"""$\cosh\theta$ and $\sinh\theta/\theta$ for $\theta = \sqrt{sq}$, smooth at 0."""
    small = sq < _SMALL
    s = jnp.where(small, sq, 0.0)
    theta = jnp.sqrt(jnp.where(small, 1.0, sq))
    cosh = jnp.where(small, 1 + s * (1 / 2 + s * (1 / 24 + s / 720)), jnp.cosh(theta))
    sinhc = jnp.where(
        small, 1 + s * (1 / 6 + s * (1 / 120 + s / 5040)), jnp.sinh(theta) / theta
    )
    return cosh, sinhc


def _log_coefficients(q: Scalar) -> tuple[Scalar, Scalar]:
    r"""$\theta/\sinh\theta$ and $\theta\tanh(\theta/2)$ for $q = \sinh^2(\theta/2)$.

    Below $q = 10^{-4}$ the first is the series $\sum_n (-1)^n
    \frac{(2^n n!)^2}{(2n + 1)!} q^n$ (truncated after $q^3$: error $< 10^{-16}$), and
    the second is $2q$ times the first.
    """
    small = q < _SMALL
    s = jnp.where(small, q, 0.0)
    series = 1 + s * (-2 / 3 + s * (8 / 15 - s * 16 / 35))
    big = jnp.where(small, 1.0, q)
    m, root = jnp.sqrt(big), jnp.sqrt(1 + big)  # sinh(theta/2), cosh(theta/2)
    half_theta = jnp.arcsinh(m)
    a = jnp.where(small, series, half_theta / (m * root))
    b = jnp.where(small, 2 * s * series, 2 * half_theta * (m / root))
    return a, b


def _sinh_half_sq(x: Point, y: Point) -> Scalar:
    r"""$q = \sinh^2\frac{d(x, y)}{2} = \frac14\langle x - y, x - y\rangle_L \ge 0$.

    With $\Delta = x_s - y_s$, on the hyperboloid

    $$q = \frac{|\Delta|^2 + |x_s \wedge y_s|^2}{2(1 + x_0 y_0 + x_s \cdot y_s)}
        \quad\text{if } x_s \cdot y_s \ge 0, \qquad
      q = \frac12\Big(\frac{|x_s|^2 + |y_s|^2 + |x_s|^2 |y_s|^2}{1 + x_0 y_0}
               - x_s \cdot y_s\Big) \quad\text{otherwise}:$$

    both are sums of non-negative terms, where $-\langle x, y\rangle_L - 1$ and the
    chord $-(x_0 - y_0)^2 + |\Delta|^2$ cancel (for nearby points, and far from the
    origin). $|x_s \wedge y_s| = |v|\,|\Delta_\perp|$ with $v$ the shorter of $x_s$,
    $y_s$ and $\Delta_\perp$ the part of $\Delta$ orthogonal to it (rounding then
    costs at most a factor $|v|$, not $|x_s|\,|y_s|$). The first form depends on the
    time parts only through its denominator, so its derivative in `y` at `y = x` is
    zero.
    """
    x0, xs, y0, ys = x[0], x[1:], y[0], y[1:]
    dot = jnp.sum(xs * ys)
    same_side = dot >= 0
    a, b, xy = jnp.sum(xs * xs), jnp.sum(ys * ys), x0 * y0
    # same side of the origin: (|D|^2 + |xs ^ ys|^2) / d with d = 2 (1 + x0 y0 + dot);
    # sqrt(d) in factors and D scaled by it first, so that no intermediate (nor its
    # derivative) is larger than q itself
    cos = jnp.where(same_side, jnp.sum((xs / x0) * (ys / y0)), 0.0)
    root = jnp.sqrt(2 * x0) * jnp.sqrt(y0) * jnp.sqrt(1 + 1 / xy + cos)
    delta = (xs - ys) / root
    v, v_sq = jnp.where(a <= b, xs, ys), jnp.minimum(a, b)
    v_norm = safe_sqrt(v_sq)
    v_hat = v / jnp.where(v_norm > 0, v_norm, 1.0)
    delta_perp = delta - jnp.sum(delta * v_hat) * v_hat
    near = jnp.sum(delta * delta) + v_sq * jnp.sum(delta_perp * delta_perp)
    # opposite sides: (x0 y0 - 1 - dot) / 2, with x0 y0 - 1 = (a + b + ab) / (1 + xy)
    # near the origin (x0 y0 < 2; the subtraction would cancel there)
    close = xy < 2
    a_c, b_c = jnp.where(close, a, 0.0), jnp.where(close, b, 0.0)
    t = 1 / (1 + jnp.where(close, xy, 0.0))
    xy_minus_1 = jnp.where(close, (a_c + b_c) * t + a_c * (b_c * t), xy - 1)
    far = (xy_minus_1 - dot) / 2
    return jnp.where(same_side, near, far)


@registry.register("manifold", "hyperbolic")
class Hyperbolic(AbstractManifold):
    r"""Hyperbolic space $H^d$, points on the hyperboloid in $\mathbb{R}^{d+1}$.

    Attributes:
        dim: $d$ (points have shape `(d + 1,)`, the time coordinate first;
            `Hyperbolic(2)` is the hyperbolic plane).

    The origin is $(1, 0, \dots, 0)$. `projx` keeps the spatial part and sets
    $x_0 = \sqrt{1 + |x_s|^2}$; `to_poincare` / `from_poincare` convert to and from
    the Poincaré ball. `proju` is the Euclidean-orthogonal projection on the
    tangent space (see there); the Minkowski-orthogonal one, which the
    Levi-Civita connection uses, is $u + \langle x, u\rangle_L\, x$. $H^d$ is not
    compact: there is no uniform distribution (centre a base distribution at
    `origin()` instead).

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> h2 = manifolds.Hyperbolic(2)
        >>> o, u = h2.origin(), jnp.array([0.0, 3.0, 4.0])  # |u| = 5
        >>> y = h2.expmap(o, u)
        >>> round(h2.dist(o, y).item(), 4)
        5.0
        >>> bool(jnp.allclose(h2.logmap(o, y), u, atol=1e-5))
        True
        >>> [round(v, 4) for v in h2.to_poincare(y).tolist()]  # tanh(5/2) (0.6, 0.8)
        [0.592, 0.7893]
    """

    dim: int = eqx.field(static=True)
    injectivity_radius: ClassVar[float] = math.inf

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim + 1,)

    def expmap(self, x: Point, u: Tangent) -> Point:
        cosh, sinhc = _cosh_sinhc(self.inner(x, u, u))
        return self.projx(cosh * x + sinhc * u)

    def logmap(self, x: Point, y: Point) -> Tangent:
        r"""$\frac{\theta}{\sinh\theta}(y - x) - \theta\tanh\frac{\theta}{2}\, x$.

        Then projected on $T_x$, which leaves the vector as it is, up to rounding.
        """
        a, b = _log_coefficients(_sinh_half_sq(x, y))
        return self.proju(x, a * (y - x) - b * x)

    def dist(self, x: Point, y: Point) -> Scalar:
        r"""$2\operatorname{asinh}\sqrt{q}$, $q = \langle x - y, x - y\rangle_L / 4$."""
        return 2 * jnp.arcsinh(safe_sqrt(_sinh_half_sq(x, y)))

    def projx(self, x: Float[ArrayLike, " d+1"]) -> Point:
        r"""The point with the same spatial part: $x_0 = \sqrt{1 + |x_s|^2}$."""
        x = jnp.asarray(x)
        xs = x[1:]
        return jnp.concatenate([jnp.sqrt(1 + jnp.sum(xs * xs))[None], xs])

    def proju(self, x: Point, u: Float[ArrayLike, " d+1"]) -> Tangent:
        r"""The Euclidean-orthogonal projection on $T_x$.

        $T_x$ is the hyperplane orthogonal to $Jx = (-x_0, x_s)$, so
        $P_x u = u - \frac{\langle x, u\rangle_L}{|x|^2} Jx$. It never lengthens a
        vector; the Minkowski-orthogonal $u + \langle x, u\rangle_L x$ (same range)
        multiplies the normal part of an ambient vector by up to $|x|^2 \approx
        2x_0^2$, which far from the origin turns rounding and a network's ambient
        output into huge tangent vectors.
        """
        x, u = jnp.asarray(x), jnp.asarray(u)
        jx = jnp.concatenate([-x[:1], x[1:]])
        sq = jnp.sum(x * x)
        return u - (jnp.sum(jx * u) / jnp.where(sq > 0, sq, 1.0)) * jx

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        r"""The Minkowski form of tangent vectors, from their spatial parts.

        On $T_x$ the time part is $u_0 = \langle x_s, u_s\rangle / x_0$, so with
        $u_r = \langle \hat x_s, u_s\rangle$ and $u_\perp = u_s - u_r \hat x_s$,
        $\langle u, v\rangle_L = \langle u_\perp, v_\perp\rangle + u_r v_r / x_0^2$:
        no cancellation, where $u_s \cdot v_s - u_0 v_0$ loses $\log_{10} x_0^2$
        digits for radial vectors. (Time parts are not read: a vector off $T_x$
        counts as the tangent vector with its spatial part.)
        """
        x0, xs = x[0], x[1:]
        r = safe_norm(xs)
        e = xs / jnp.where(r > 0, r, 1.0)  # the radial direction (0 at the origin)
        ur, vr = jnp.sum(e * u[1:]), jnp.sum(e * v[1:])
        u_perp, v_perp = u[1:] - ur * e, v[1:] - vr * e
        return jnp.sum(u_perp * v_perp) + ur * vr / (x0 * x0)

    def origin(self, dtype=float) -> Point:
        r"""The apex of the hyperboloid, $(1, 0, \dots, 0)$."""
        return jnp.zeros(self.shape, dtype).at[0].set(1)

    map_labels = ("Poincaré disk $z_1$", "Poincaré disk $z_2$")

    def map2d(self, x: Point) -> Float[Array, "2"]:
        """The first two coordinates of the point in the Poincaré ball."""
        return self.to_poincare(x)[:2]

    def to_poincare(self, x: Point) -> Float[Array, " d"]:
        r"""The Poincaré-ball point $p = x_s / (1 + x_0)$, $|p| < 1$.

        The ball's metric is $\frac{4\,|dp|^2}{(1 - |p|^2)^2}$ and its distance
        $\operatorname{arccosh}\big(1 + \frac{2|p - q|^2}{(1 - |p|^2)(1 - |q|^2)}\big)$.
        """
        x = _checks.float_array("x", x, self.shape, "a point of the hyperboloid")
        return x[1:] / (1 + x[0])

    def from_poincare(self, p: Float[ArrayLike, " d"]) -> Point:
        r"""The hyperboloid point $(1 + |p|^2, 2p) / (1 - |p|^2)$ of $|p| < 1$."""
        p = _checks.float_array("p", p, (self.dim,), "a point of the Poincaré ball")
        xs = 2 * p / (1 - jnp.sum(p * p))
        return self.projx(jnp.concatenate([jnp.zeros_like(p[:1]), xs]))
