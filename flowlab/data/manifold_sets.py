r"""Data sets on manifolds: mixtures of wrapped normals and of vMFs, a checkerboard.

Every sampler here knows the manifold its points lie on (`sampler.manifold`, a
`flowlab.manifolds` object) and draws arrays of shape `(n, *manifold.shape)`. Where
`log_prob(x)` exists it is the log-density of one point with respect to the
manifold's Riemannian volume, so on a compact manifold
$\int_M e^{\log p}\, d\mathrm{vol} = 1$ and $p / u$, with $u$ the uniform density
`manifold.uniform_log_prob`, has mean 1 under the uniform distribution.

| name | sampler | manifold | `log_prob` |
| :--- | :--- | :--- | :--- |
| `vmf_mixture` | `VonMisesFisherMixture` | `Sphere(2)` | exact |
| `torus_mixture` | `TorusNormalMixture` | `FlatTorus(2)` | exact to $10^{-25}$ |
| `torus_checkerboard` | `TorusCheckerboard` | `FlatTorus(2)` | exact |
| `so3_mixture` | `WrappedNormalMixture` | `SO3()` | exact to $10^{-12}$ |
| `hyperbolic_source` | `WrappedNormalMixture` | `Hyperbolic(2)` | exact |
| `hyperbolic_target` | `WrappedNormalMixture` | `Hyperbolic(2)` | exact |
| `quakes` | `Quakes` (`flowlab.data.quakes`) | `Sphere(2)` | none (a finite set) |

`sample` is compiled (`equinox.filter_jit`, once per sampler structure and `n`),
as SO3's kernels are: eagerly, its many small operations would each be dispatched
(and compiled) on their own; under an outer `jit` it is inlined. So is the wrapped
normals' `log_prob` (a Jacobian, an eigendecomposition, a Cholesky factor).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .. import _checks, registry
from ..manifolds import (
    SO3,
    AbstractManifold,
    FlatTorus,
    Hyperbolic,
    Sphere,
    WrappedNormal,
    axis_angle_to_matrix,
    tangent_basis,
)
from ._base import AbstractSampler, check_n

__all__ = [
    "AbstractManifoldSampler",
    "TorusCheckerboard",
    "TorusNormalMixture",
    "VonMisesFisherMixture",
    "WrappedNormalMixture",
    "hyperbolic_source",
    "hyperbolic_target",
    "so3_mixture",
    "torus_mixture",
    "vmf_mixture",
]

_TWO_PI = 2 * math.pi
_ATOL = 1e-6  # unit means, weights summing to 1: float32 rounding passes
_WRAPS = 3  # the torus' wrapped sum runs over the shifts 2 pi m, |m| <= 3
_MAX_TORUS_STD = 2.0  # where that sum's relative error is below 4e-26


class AbstractManifoldSampler(AbstractSampler):
    """A sampler whose points lie on `manifold`: samples are `(n, *manifold.shape)`.

    Attributes:
        manifold: the `flowlab.manifolds` manifold of the points.
    """

    manifold: eqx.AbstractVar[AbstractManifold]

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.manifold.shape)


def _weights(weights: ArrayLike | None, k: int) -> Float[Array, " k"]:
    """Mixture weights: uniform by default, else `k` non-negative ones summing to 1."""
    if weights is None:
        return jnp.full((k,), 1.0 / k)
    w = np.asarray(weights, np.float64)
    if w.shape != (k,):
        raise ValueError(
            f"weights must have shape ({k},), one per component, got {w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be non-negative, got {w.tolist()}.")
    if abs(w.sum() - 1) > _ATOL:
        raise ValueError(
            f"weights must sum to 1 (within {_ATOL}), got a sum of {w.sum()!r}; "
            "divide them by their sum."
        )
    return jnp.asarray(w, float)


def _positive(name: str, values: ArrayLike, k: int) -> Float[Array, " k"]:
    """One positive finite value per component (a scalar is broadcast)."""
    v = np.asarray(values, np.float64)
    if v.ndim == 0:
        v = np.full((k,), v)
    if v.shape != (k,):
        raise ValueError(
            f"{name} must be a positive float or an array of shape ({k},), one per "
            f"component, got shape {v.shape}."
        )
    if not np.all(np.isfinite(v) & (v > 0)):
        raise ValueError(f"{name} must be positive and finite, got {v.tolist()}.")
    return jnp.asarray(v, float)


def _rows(
    name: str, values: ArrayLike, width: tuple[int, ...], what: str
) -> np.ndarray:
    """`(k, *width)` finite floats with `k >= 1`, else a `ValueError` naming `name`."""
    a = np.asarray(values, np.float64)
    if a.ndim != 1 + len(width) or a.shape[1:] != width or a.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (k, {', '.join(map(str, width))}), {what}, one "
            f"row per component, got shape {a.shape}."
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite.")
    return a


def _components(key: PRNGKeyArray, weights: Float[Array, " k"], n: int) -> Array:
    """`n` component indices drawn with probabilities `weights`."""
    return jax.random.categorical(key, jnp.log(weights), shape=(n,))


def _orthonormal_pair(n: Float[Array, "3"]) -> tuple[Array, Array]:
    r"""Two unit vectors that make $(e_1, e_2, n)$ orthonormal, for a unit $n$.

    The branch-free formula of Duff et al. (2017, "Building an orthonormal basis,
    revisited"), with $s = \operatorname{sign}(n_z)$, $a = -1/(s + n_z)$,
    $b = n_x n_y a$: $e_1 = (1 + s n_x^2 a, s b, -s n_x)$,
    $e_2 = (b, s + n_y^2 a, -n_y)$. Closed form, so the same in and out of `jit`.
    """
    x, y, z = n[0], n[1], n[2]
    s = jnp.where(z >= 0, 1.0, -1.0).astype(n.dtype)
    a = -1 / (s + z)
    b = x * y * a
    e1 = jnp.stack([1 + s * x * x * a, s * b, -s * x])
    e2 = jnp.stack([b, s + y * y * a, -y])
    return e1, e2


class VonMisesFisherMixture(AbstractManifoldSampler):
    r"""A mixture of von Mises–Fisher distributions on the sphere $S^2$.

    $$p(x) = \sum_k w_k\, C(\kappa_k)\, e^{\kappa_k \langle \mu_k, x\rangle},
    \qquad C(\kappa) = \frac{\kappa}{4\pi\sinh\kappa},$$

    with respect to the area of $S^2$. `log_prob` writes
    $\log C(\kappa) + \kappa\langle\mu, x\rangle$ as
    $\log\kappa - \log 2\pi - \log(1 - e^{-2\kappa}) - \frac{\kappa}{2}\|x - \mu\|^2$
    (equal for unit $x$): finite for large $\kappa$ (the direct form overflows
    beyond $\kappa \approx 710$ in float64) and accurate at the mode, where the
    two $\kappa$'s of the direct form cancel.

    Sampling is exact: $w = \langle\mu, x\rangle$ has the density
    $\kappa e^{\kappa w} / (2\sinh\kappa)$ on $[-1, 1]$, whose inverse CDF is
    $w = 1 + \log(u + (1 - u)e^{-2\kappa}) / \kappa$ for $u \sim U[0, 1)$ (the log
    as a `logaddexp`, so no overflow for large $\kappa$); the direction orthogonal
    to $\mu$ is uniform. $E\langle\mu, x\rangle = \coth\kappa - 1/\kappa$.

    (Only $S^2$: the normaliser on $S^d$ needs the Bessel function
    $I_{(d-1)/2}$, which JAX has only for $d \in \{1, 3\}$.)

    Attributes:
        means: the unit vectors $\mu_k$, `(k, 3)`.
        concentrations: $\kappa_k > 0$, `(k,)`.
        weights: $w_k \ge 0$ summing to 1, `(k,)` (uniform by default).

    Example:
        >>> import jax
        >>> from flowlab import data
        >>> vmf = data.VonMisesFisherMixture([[0.0, 0.0, 1.0]], 10.0)
        >>> x = vmf.sample(jax.random.key(0), 4)
        >>> x.shape, bool(jax.vmap(vmf.manifold.is_point)(x).all())
        ((4, 3), True)
        >>> round(float(vmf.log_prob(vmf.means[0])), 4)  # log(10 / (2 pi))
        0.4647
    """

    means: Float[Array, "k 3"]
    concentrations: Float[Array, " k"]
    weights: Float[Array, " k"]

    def __init__(
        self,
        means: Float[ArrayLike, "k 3"],
        concentrations: float | Float[ArrayLike, " k"],
        weights: Float[ArrayLike, " k"] | None = None,
    ):
        mu = _rows("means", means, (3,), "unit vectors of R^3")
        norms = np.linalg.norm(mu, axis=-1)
        if np.any(np.abs(norms - 1) > _ATOL):
            raise ValueError(
                f"means must be unit vectors (norm 1 within {_ATOL}), got norms "
                f"{norms.tolist()}; divide each row by its norm."
            )
        self.means = jnp.asarray(mu, float)
        self.concentrations = _positive("concentrations", concentrations, len(mu))
        self.weights = _weights(weights, len(mu))

    @property
    def manifold(self) -> Sphere:
        return Sphere(2)

    @eqx.filter_jit
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 3"]:
        n = check_n(n)
        k_c, k_w, k_phi = jax.random.split(_checks.key(key), 3)
        c = _components(k_c, self.weights, n)
        mu, kappa = self.means[c], self.concentrations[c]
        e1, e2 = jax.vmap(_orthonormal_pair)(mu)
        u = jax.random.uniform(k_w, (n,), mu.dtype)
        phi = jax.random.uniform(k_phi, (n,), mu.dtype, 0.0, _TWO_PI)
        t = -jnp.logaddexp(jnp.log(u), jnp.log1p(-u) - 2 * kappa) / kappa  # 1 - w
        r = jnp.sqrt(jnp.maximum(t * (2 - t), 0.0))  # sqrt(1 - w^2)
        side = jnp.cos(phi)[:, None] * e1 + jnp.sin(phi)[:, None] * e2
        return jax.vmap(self.manifold.projx)((1 - t)[:, None] * mu + r[:, None] * side)

    def log_prob(self, x: Float[ArrayLike, "3"]) -> Float[Array, ""]:
        """The log-density at one point `x` of $S^2$, by area."""
        x = _checks.float_array("x", x, (3,), "a point of Sphere(2)")
        kappa = self.concentrations
        log_c = jnp.log(kappa) - math.log(_TWO_PI) - jnp.log(-jnp.expm1(-2 * kappa))
        sq = jnp.sum((x[None, :] - self.means) ** 2, axis=-1)
        return jax.nn.logsumexp(log_c - 0.5 * kappa * sq, b=self.weights)


class TorusNormalMixture(AbstractManifoldSampler):
    r"""A mixture of isotropic normals wrapped on the flat torus $T^d$.

    Component $k$ is $\mathcal{N}(\mu_k, \sigma_k^2 I)$ taken mod $2\pi$, so

    $$p(x) = \sum_k w_k \prod_{i=1}^d \sum_{m \in \mathbb{Z}}
    \varphi_{\sigma_k}(\delta_{ki} + 2\pi m), \qquad
    \delta_k = \log_{\mu_k}(x) \in [-\pi, \pi)^d,$$

    with $\varphi_\sigma$ the density of $\mathcal{N}(0, \sigma^2)$ (the sum over
    the shifts $m \in \mathbb{Z}^d$ factorises by coordinate). `log_prob` keeps
    $|m| \le 3$: the terms left out are below $e^{-24\pi^2/\sigma^2}$ times the
    largest one, a relative error under $2e^{-24\pi^2/\sigma^2} < 4 \cdot 10^{-26}$
    per coordinate for $\sigma \le 2$, the largest `stds` allowed. Sampling is
    exact.

    Attributes:
        manifold: `FlatTorus(d)`, $d$ from the shape of `means`.
        means: $\mu_k$, `(k, d)`, stored mod $2\pi$.
        stds: $\sigma_k \in (0, 2]$, `(k,)`.
        weights: $w_k \ge 0$ summing to 1, `(k,)` (uniform by default).
    """

    manifold: FlatTorus
    means: Float[Array, "k d"]
    stds: Float[Array, " k"]
    weights: Float[Array, " k"]

    def __init__(
        self,
        means: Float[ArrayLike, "k d"],
        stds: float | Float[ArrayLike, " k"],
        weights: Float[ArrayLike, " k"] | None = None,
    ):
        mu = np.asarray(means, np.float64)
        if mu.ndim != 2 or mu.shape[1] < 1:
            raise ValueError(
                "means must have shape (k, d) with d >= 1, one angle vector per "
                f"component, got shape {mu.shape}."
            )
        mu = _rows("means", mu, mu.shape[1:], "angles")
        self.manifold = FlatTorus(mu.shape[1])
        self.means = jnp.asarray(np.mod(mu, _TWO_PI), float)
        self.stds = _positive("stds", stds, len(mu))
        if np.any(np.asarray(self.stds) > _MAX_TORUS_STD):
            raise ValueError(
                f"stds must be at most {_MAX_TORUS_STD} (the wrapped sum of log_prob "
                f"is truncated at |m| <= {_WRAPS}), got {np.asarray(self.stds)}; "
                "for wider components use the uniform distribution on the torus."
            )
        self.weights = _weights(weights, len(mu))

    @eqx.filter_jit
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        n = check_n(n)
        k_c, k_z = jax.random.split(_checks.key(key))
        c = _components(k_c, self.weights, n)
        z = jax.random.normal(k_z, (n, self.manifold.dim), self.means.dtype)
        x = self.means[c] + self.stds[c][:, None] * z
        return jax.vmap(self.manifold.projx)(x)

    def log_prob(self, x: Float[ArrayLike, " d"]) -> Float[Array, ""]:
        """The log-density at one point `x` of the torus, by volume."""
        x = _checks.float_array("x", x, self.manifold.shape, "a point of the torus")
        delta = jax.vmap(self.manifold.logmap, (0, None))(self.means, x)  # (k, d)
        shifts = _TWO_PI * jnp.arange(-_WRAPS, _WRAPS + 1, dtype=delta.dtype)
        z = (delta[:, :, None] + shifts[None, None, :]) / self.stds[:, None, None]
        log_1d = jax.nn.logsumexp(-0.5 * z**2, axis=-1) - (
            jnp.log(self.stds)[:, None] + 0.5 * math.log(_TWO_PI)
        )
        return jax.nn.logsumexp(jnp.sum(log_1d, axis=-1), b=self.weights)


class TorusCheckerboard(AbstractManifoldSampler):
    r"""Uniform on the black squares of a checkerboard of the flat torus $T^d$.

    $[0, 2\pi)^d$ is cut into `squares`$^d$ cells of side $h = 2\pi/$`squares`; the
    cell $(i_1, \dots, i_d)$, $i_j = \lfloor x_j / h \rfloor$, is black when
    $\sum_j i_j$ is even. `squares` is even, so the colouring agrees across the
    seams. The density is $2 / (2\pi)^d$ on the black cells (half the volume) and
    0 elsewhere.

    Attributes:
        squares: cells per side, an even int $\ge 2$ (default 4).
        dim: $d$ (default 2).
    """

    squares: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(self, squares: int = 4, dim: int = 2):
        _checks.positive_int("squares", squares, "an even int >= 2")
        if squares % 2:
            raise ValueError(
                f"squares must be an even int >= 2, got {squares!r}: with an odd "
                "number the colours of the cells on either side of a seam agree."
            )
        self.squares = squares
        self.dim = _checks.positive_int("dim", dim)

    @property
    def manifold(self) -> FlatTorus:
        return FlatTorus(self.dim)

    @eqx.filter_jit
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        n = check_n(n)
        k_cell, k_last, k_u = jax.random.split(_checks.key(key), 3)
        free = jax.random.randint(k_cell, (n, self.dim - 1), 0, self.squares)
        half = jax.random.randint(k_last, (n, 1), 0, self.squares // 2)
        parity = jnp.sum(free, axis=-1, keepdims=True) % 2  # makes the sum even
        cells = jnp.concatenate([free, 2 * half + parity], axis=-1)
        u = jax.random.uniform(k_u, (n, self.dim))
        return (cells + u) * (_TWO_PI / self.squares)

    def log_prob(self, x: Float[ArrayLike, " d"]) -> Float[Array, ""]:
        r"""$-\log\frac{(2\pi)^d}{2}$ on a black cell, $-\infty$ elsewhere."""
        x = _checks.float_array("x", x, self.manifold.shape, "a point of the torus")
        cells = jnp.floor(self.manifold.projx(x) * (self.squares / _TWO_PI))
        cells = cells.astype(int) % self.squares  # projx may round up to 2 pi
        black = jnp.sum(cells) % 2 == 0
        log_area = math.log(_TWO_PI**self.dim / 2)
        return jnp.where(black, -log_area, -jnp.inf).astype(x.dtype)


@eqx.filter_jit
def _points_and_bases(manifold: AbstractManifold, locs: Array) -> tuple[Array, Array]:
    """Whether each row of `locs` is a point, and a basis of its tangent space.

    Compiled once per manifold: eagerly, the dozens of small operations of
    `tangent_basis` would each be dispatched (and compiled) on their own.
    """
    on = jax.vmap(manifold.is_point)(locs)
    return on, jax.vmap(lambda loc: tangent_basis(manifold, loc))(locs)


class WrappedNormalMixture(AbstractManifoldSampler):
    r"""A mixture of wrapped normals (`flowlab.manifolds.WrappedNormal`).

    $p(x) = \sum_k w_k\, p_k(x)$, with $p_k$ the wrapped normal at `locs[k]` with
    the tangent standard deviation `scales[k]`: a sample is
    $\exp_{\mu_k}(\sum_i v_i e_i)$, $v \sim \mathcal{N}(0, \sigma_k^2 I)$ in an
    orthonormal basis of $T_{\mu_k}M$. `log_prob` is the log-sum-exp of the
    components' `log_prob`, which counts the shortest pre-image only: exact where
    `expmap` has no cut locus ($\mathbb{R}^d$, $H^d$); on a compact manifold it
    misses the mass $P(\sigma_k\chi_d > \text{injectivity radius})$ that wraps
    round ($2.6 \cdot 10^{-13}$ on SO(3) at $\sigma = 0.4$). On the torus use
    `TorusNormalMixture`, whose wrapped sum is exact.

    Attributes:
        manifold: the manifold.
        locs: the centres $\mu_k$, points of `manifold`, `(k, *manifold.shape)`.
        scales: $\sigma_k > 0$, `(k,)`.
        weights: $w_k \ge 0$ summing to 1, `(k,)` (uniform by default).
        bases: an orthonormal basis $e_1, \dots, e_d$ of $T_{\mu_k}M$ for each
            component (`manifolds.tangent_basis`, computed once from `locs`: a
            basis computed again under `jit` may be another one, rotated within a
            repeated eigenvalue, and the same key would then draw other samples).
    """

    manifold: AbstractManifold
    locs: Float[Array, "k *shape"]
    scales: Float[Array, " k"]
    weights: Float[Array, " k"]
    bases: Float[Array, "k dim *shape"]

    def __init__(
        self,
        manifold: AbstractManifold,
        locs: Float[ArrayLike, "k *shape"],
        scales: float | Float[ArrayLike, " k"],
        weights: Float[ArrayLike, " k"] | None = None,
    ):
        _checks.instance_of(
            "manifold", manifold, AbstractManifold, "manifold", "manifolds.SO3()"
        )
        what = f"points of {manifold!r}"
        locs = jnp.asarray(_rows("locs", locs, tuple(manifold.shape), what), float)
        on, bases = _points_and_bases(manifold, locs)
        on = np.asarray(on)
        if not on.all():
            raise ValueError(
                f"locs must be {what}; rows {np.flatnonzero(~on).tolist()} are not "
                "(manifold.projx finds the nearest points)."
            )
        self.manifold = manifold
        self.locs = locs
        self.scales = _positive("scales", scales, len(locs))
        self.weights = _weights(weights, len(locs))
        self.bases = bases

    @eqx.filter_jit
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n *shape"]:
        n = check_n(n)
        k_c, k_v = jax.random.split(_checks.key(key))
        c = _components(k_c, self.weights, n)
        m = self.manifold
        v = jax.random.normal(k_v, (n, m.dim), self.locs.dtype) * self.scales[c, None]
        u = jax.vmap(lambda vi, b: jnp.tensordot(vi, b, axes=1))(v, self.bases[c])
        return jax.vmap(m.expmap)(self.locs[c], u)

    def log_prob(self, x: Float[ArrayLike, "*shape"]) -> Float[Array, ""]:
        """The log-density at one point `x`, by the Riemannian volume."""
        m = self.manifold
        return self._log_prob(_checks.float_array("x", x, m.shape, f"a point of {m!r}"))

    @eqx.filter_jit
    def _log_prob(self, x: Float[Array, "*shape"]) -> Float[Array, ""]:
        m = self.manifold
        logs = jax.vmap(lambda loc, s: WrappedNormal(m, loc, s).log_prob(x))(
            self.locs, self.scales
        )
        return jax.nn.logsumexp(logs, b=self.weights)


def vmf_mixture() -> VonMisesFisherMixture:
    r"""Four von Mises–Fisher components at the vertices of a tetrahedron.

    Means $(\pm1, \pm1, \pm1)/\sqrt3$ with an even number of minus signs (at least
    $109.5°$ apart, none at the north pole where `Sphere.origin()` is), $\kappa =
    20, 30, 40, 50$, equal weights. Registered as `"vmf_mixture"`.
    """
    means = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3)
    return VonMisesFisherMixture(means, [20.0, 30.0, 40.0, 50.0])


def torus_mixture() -> TorusNormalMixture:
    r"""Four wrapped normals on $T^2$, one of them across both seams.

    Means $(0, 0)$, $(\pi, \pi)$, $(\frac\pi2, \frac{3\pi}2)$, $(\frac{3\pi}2,
    \frac\pi2)$, standard deviations 0.5, 0.5, 0.3, 0.3, equal weights. Registered
    as `"torus_mixture"`.
    """
    p = math.pi
    means = [[0.0, 0.0], [p, p], [p / 2, 3 * p / 2], [3 * p / 2, p / 2]]
    return TorusNormalMixture(means, [0.5, 0.5, 0.3, 0.3])


def so3_mixture() -> WrappedNormalMixture:
    r"""Four wrapped normals on SO(3), none at the identity.

    Centred at the quarter turns about $x$, $y$, $z$ and $-(1, 1, 1)/\sqrt3$
    (pairwise $2\pi/3$ or $2.72$ apart), scales 0.25, 0.3, 0.35, 0.4, equal
    weights. Registered as `"so3_mixture"`.
    """
    axes = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1] / np.sqrt(3)])
    locs = jax.vmap(axis_angle_to_matrix)(jnp.asarray(axes * (math.pi / 2), float))
    return WrappedNormalMixture(SO3(), locs, [0.25, 0.3, 0.35, 0.4])


def _hyperbolic_normal(
    side: float, distance: float, scale: float
) -> WrappedNormalMixture:
    if not (_checks.is_number(distance) and 0 <= distance < math.inf):
        raise ValueError(f"distance must be a finite float >= 0, got {distance!r}.")
    if not (_checks.is_number(scale) and 0 < scale < math.inf):
        raise ValueError(f"scale must be a positive float, got {scale!r}.")
    h2 = Hyperbolic(2)
    u = jnp.asarray([0.0, side * distance, 0.0], float)
    return WrappedNormalMixture(h2, h2.expmap(h2.origin(), u)[None], scale)


def hyperbolic_source(
    distance: float = 2.0, scale: float = 0.5
) -> WrappedNormalMixture:
    r"""A wrapped normal on $H^2$ at `distance` from the origin, on the left.

    Centred at $(\cosh r, -\sinh r, 0)$, $r$ = `distance` (the Poincaré-disk point
    $(-\tanh\frac r2, 0)$), with the tangent standard deviation `scale`; the source
    of the transport to `hyperbolic_target`, its mirror image, $2r$ away.
    Registered as `"hyperbolic_source"`.

    Args:
        distance: $r \ge 0$, the geodesic distance of the centre from the origin.
        scale: $\sigma > 0$, the standard deviation of each tangent coordinate.

    Returns:
        A one-component `WrappedNormalMixture` (exact `log_prob`).
    """
    return _hyperbolic_normal(-1.0, distance, scale)


def hyperbolic_target(
    distance: float = 2.0, scale: float = 0.5
) -> WrappedNormalMixture:
    r"""The mirror image of `hyperbolic_source`: centred at $(\cosh r, \sinh r, 0)$.

    Registered as `"hyperbolic_target"`.

    Args:
        distance: $r \ge 0$, the geodesic distance of the centre from the origin.
        scale: $\sigma > 0$, the standard deviation of each tangent coordinate.

    Returns:
        A one-component `WrappedNormalMixture` (exact `log_prob`).
    """
    return _hyperbolic_normal(1.0, distance, scale)


for _name, _factory in {
    "vmf_mixture": vmf_mixture,
    "torus_mixture": torus_mixture,
    "torus_checkerboard": TorusCheckerboard,
    "so3_mixture": so3_mixture,
    "hyperbolic_source": hyperbolic_source,
    "hyperbolic_target": hyperbolic_target,
}.items():
    registry.register("data", _name, _factory)
