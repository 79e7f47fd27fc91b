r"""Kinetic-optimal Gaussian schedules fitted to data (Shaul et al. 2023).

For the Gaussian path $x_t = \alpha_t x_1 + \sigma_t x_0$ with $x_0 \sim N(0, I_d)$,
the marginal velocity is $u_t(x) = \dot\alpha_t\, m_1 + \dot\sigma_t (x - \alpha_t
m_1)/\sigma_t$ with the posterior mean $m_1 = E[x_1 \mid x_t = x]$, and its kinetic
energy depends on the data only through the **data separation function**

$$\rho(s) = \frac{E\,\|E[x_1 \mid s x_1 + z]\|^2}{E\|x_1\|^2}, \qquad
z \sim N(0, I), \quad s = \alpha_t/\sigma_t \text{ (the SNR)}:$$

$$E\!\int_0^1\!\|u_t\|^2 dt = \int_0^1 M\big[\dot\alpha^2 - (1 - \rho(s))\,
\sigma^2 \dot s^2\big] + d\,\dot\sigma^2 \; dt, \qquad M = E\|x_1\|^2 .$$

(With $M = d$ this is the form of ../shared/DESIGN.md.) In the rescaled coefficient
$a = \alpha \sqrt{M/d}$ and the polar coordinates $a = r\sin\theta$,
$\sigma = r\cos\theta$, the integrand is $d\,[\dot r^2 + r^2 h(\theta)\dot\theta^2]$
with $h = (\rho - \sin^2\theta)/\cos^2\theta \in [0, 1]$, and with
$w(\theta) = \int_0^\theta \sqrt{h}$ it is the **flat** metric
$d\,[\dot r^2 + r^2 \dot w^2]$ in polar coordinates $(r, w)$. Its geodesics are
straight lines, so the schedule of least kinetic energy is the constant-speed chord
from $(r, w) = (1, 0)$ (the source) to $(\sqrt{M/d}, W)$, $W = w(\pi/2)$ (the
data), read back through $\theta = w^{-1}$: no numerical optimisation is needed, and
$\rho \equiv 1$ ($h \equiv 1$) gives Cond-OT exactly.

Where $h$ vanishes (at low SNR for centred data, $\rho(s) \approx s^2$) the optimum
moves infinitely fast in $\theta$ and $\dot\alpha_t$ is unbounded, and so is the
conditional target $\dot\alpha x_1 + \dot\sigma x_0$ that training regresses on. So
the fitted schedule minimises the marginal energy plus `regularization` $\lambda$
times the conditional one, $d\int(\dot a^2 + \dot\sigma^2)$, which is the same
construction with $h$ replaced by $(h + \lambda)/(1 + \lambda)$ (bounded below):
$\lambda \to 0$ is the exact optimum, $\lambda \to \infty$ Cond-OT.

$\rho$ is estimated by Monte Carlo on a grid of angles $\theta_k$ (SNR
$s_k = \sqrt{d/M}\tan\theta_k$): queries $y = s_k x_i + z$ for random data points and
noise, each query's posterior mean over **all** `n` points (the empirical measure,
the distribution training samples), streamed over chunks of the data with a running
log-sum-exp so memory is $O(\text{queries} \times \text{chunk})$; it runs under `jit`
on any device. $\sqrt{h}$ is linear between grid points, so $w$ is piecewise quadratic
and its inverse closed form: the schedule's derivatives are exact derivatives of the
schedule it evaluates.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .. import _checks, registry
from .._checks import scalar_time as _as_time
from ..schedules import AbstractSchedule, ScheduleOutput, bisect_time

__all__ = [
    "DataSeparation",
    "KineticEnergy",
    "KineticOptimal",
    "data_separation",
    "kinetic_energy",
    "kinetic_energy_mc",
    "kinetic_optimal",
    "posterior_mean",
]

_Scalar = Float[ArrayLike, ""]


class DataSeparation(NamedTuple):
    r"""A Monte-Carlo estimate of $\rho$ on a grid of SNR values.

    Attributes:
        theta: the grid's angles $\theta_k \in [0, \pi/2)$, `(K,)`.
        snr: the SNR of each angle, $s_k = \sqrt{d/M}\tan\theta_k$ on the data as
            given (`x_t = alpha x1 + sigma x0`, `snr = alpha / sigma`).
        rho: $\hat\rho(s_k)$, `(K,)`.
        rho_se: the Monte-Carlo standard error of each $\hat\rho(s_k)$.
        event_size: $d$, the number of coordinates of one point.
        mean_sq_norm: $M = E\|x_1\|^2$ over the data.
    """

    theta: Float[Array, " K"]
    snr: Float[Array, " K"]
    rho: Float[Array, " K"]
    rho_se: Float[Array, " K"]
    event_size: int
    mean_sq_norm: Float[Array, ""]

    @property
    def scale(self) -> Float[Array, ""]:
        r"""$c = \sqrt{d / M}$, the factor that makes $E\|c\,x_1\|^2 = d$."""
        return jnp.sqrt(self.event_size / self.mean_sq_norm)

    @property
    def h(self) -> Float[Array, " K"]:
        r"""$h(\theta_k) = (\rho - \sin^2\theta_k)/\cos^2\theta_k$, clipped to $[0, 1]$.

        The angular weight of the kinetic energy (module docstring); $h \equiv 1$
        for Cond-OT-like data, $h = 0$ where the data look Gaussian at that SNR.
        """
        h = (self.rho - jnp.sin(self.theta) ** 2) / jnp.cos(self.theta) ** 2
        return jnp.clip(h, 0.0, 1.0)

    def h_at(self, theta: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        r"""$h$ at any angle in $[0, \pi/2]$.

        Linear between grid points, flat past the last one (so
        $1 - \rho = (1 - h)\cos^2\theta$ decays like $1/s^2$ there, as the
        posterior's error does).
        """
        h = self.h
        grid = jnp.append(self.theta, jnp.pi / 2)
        return jnp.interp(jnp.asarray(theta), grid, jnp.append(h, h[-1]))

    def rho_se_at(self, snr: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        r"""The standard error of $\hat\rho$ at any SNR.

        Linear in $\theta$ between grid points, 0 at $\theta = \pi/2$.
        """
        theta = jnp.arctan(jnp.asarray(snr) / self.scale)
        grid = jnp.append(self.theta, jnp.pi / 2)
        return jnp.interp(theta, grid, jnp.append(self.rho_se, 0.0))

    def rho_at(self, snr: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        r"""$\rho$ at any SNR, $1 - (1 - h(\theta))\cos^2\theta$ with `h_at`."""
        theta = jnp.arctan(jnp.asarray(snr) / self.scale)
        return 1 - (1 - self.h_at(theta)) * jnp.cos(theta) ** 2


def _flat(x: Array, name: str) -> Array:
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"{name} must be batch-first (n, *event), got shape {x.shape}."
        )
    return x.reshape(x.shape[0], -1)


def posterior_mean(
    x1: Float[ArrayLike, "n *event"],
    y: Float[ArrayLike, "m *event"],
    snr: Float[ArrayLike, " m"],
    *,
    chunk_size: int = 4096,
) -> Float[Array, "m *event"]:
    r"""$E[x_1 \mid s x_1 + z = y]$ under the empirical measure of `x1`, per query.

    The weights are $\mathrm{softmax}_j(s\langle y, x_j\rangle - s^2\|x_j\|^2/2)$
    ($z \sim N(0, I)$); the sum over the `n` data points runs over chunks of
    `chunk_size` with a running log-sum-exp, so `n` may be large. For the affine
    path, $E[x_1 \mid x_t = x]$ is `posterior_mean(x1, x / sigma, alpha / sigma)`.

    Args:
        x1: the data, `(n, *event)`.
        y: the queries, `(m, *event)`.
        snr: the SNR $s \ge 0$ of each query, `(m,)`.
        chunk_size: data points per chunk.

    Returns:
        The posterior mean of each query, shaped like `y`.
    """
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    data = _flat(x1, "x1")
    y = jnp.asarray(y)
    queries = _flat(y, "y")
    if queries.shape[1] != data.shape[1]:
        raise ValueError(
            f"y must have the event size of x1 ({data.shape[1]}), got shape {y.shape}."
        )
    snr = jnp.broadcast_to(jnp.asarray(snr, queries.dtype), queries.shape[:1])
    n = data.shape[0]
    chunk_size = min(chunk_size, n)
    chunks = -(-n // chunk_size)
    pad = chunks * chunk_size - n
    data = jnp.pad(data, ((0, pad), (0, 0))).reshape(chunks, chunk_size, -1)
    valid = (jnp.arange(chunks * chunk_size) < n).reshape(chunks, chunk_size)

    def step(carry, chunk):
        top, total, acc = carry
        xs, ok = chunk
        sq_norms = jnp.sum(xs**2, axis=1)[None, :]
        logits = snr[:, None] * (queries @ xs.T) - 0.5 * (snr**2)[:, None] * sq_norms
        logits = jnp.where(ok, logits, -jnp.inf)
        new_top = jnp.maximum(top, jnp.max(logits, axis=1))
        shrink = jnp.exp(top - new_top)
        weights = jnp.exp(logits - new_top[:, None])
        total = total * shrink + jnp.sum(weights, axis=1)
        acc = acc * shrink[:, None] + weights @ xs
        return (new_top, total, acc), None

    m = queries.shape[0]
    init = (
        jnp.full((m,), -jnp.inf, queries.dtype),
        jnp.zeros((m,), queries.dtype),
        jnp.zeros_like(queries),
    )
    (_, total, acc), _ = jax.lax.scan(step, init, (data, valid))
    return (acc / total[:, None]).reshape(y.shape)


def _check_data(x1: Array) -> Array:
    """`x1` flattened, with at least two points, finite (checked when concrete)."""
    x1 = _flat(x1, "x1")
    if not jnp.issubdtype(x1.dtype, jnp.floating):
        x1 = x1.astype(jnp.result_type(float))
    if x1.shape[0] < 2:
        raise ValueError(
            f"x1 must hold at least two points to estimate the data separation, got "
            f"{x1.shape[0]}."
        )
    try:
        finite = bool(jnp.all(jnp.isfinite(x1)))
    except jax.errors.ConcretizationTypeError:
        return x1
    if not finite:
        bad = int(jnp.sum(~jnp.all(jnp.isfinite(x1), axis=1)))
        raise ValueError(
            f"x1 must be finite: {bad} of its {x1.shape[0]} points hold nan or inf."
        )
    if not float(jnp.max(jnp.sum(x1**2, axis=1))) > 0:
        raise ValueError("x1 must not be all zeros (E|x1|^2 = 0 has no SNR scale).")
    return x1


def data_separation(
    x1: Float[ArrayLike, "n *event"],
    *,
    key: PRNGKeyArray,
    grid: int = 64,
    n_queries: int = 1024,
    chunk_size: int = 4096,
) -> DataSeparation:
    r"""Estimate $\rho(s) = E\|E[x_1|s x_1 + z]\|^2 / E\|x_1\|^2$ on a grid.

    The grid is $\theta_k = k\pi / (2K)$, $k = 0 \dots K - 1$ (SNR
    $\sqrt{d/M}\tan\theta_k$, from 0 to about $0.6K$ times the data's scale). The same
    `n_queries` data points and noise draws are used at every grid point (common
    random numbers, so $\hat\rho$ is smooth in $s$); each query's posterior mean
    runs over all points (`posterior_mean`).

    Args:
        x1: the data, `(n, *event)` with `n >= 2`, finite.
        key: PRNG key for the queries.
        grid: the number of grid angles `K`.
        n_queries: Monte-Carlo queries per grid point.
        chunk_size: data points per chunk of the posterior sums.

    Returns:
        A `DataSeparation` with the estimate and its standard errors.
    """
    key = _checks.key(key)
    grid = _checks.positive_int("grid", grid)
    n_queries = _checks.positive_int("n_queries", n_queries)
    x1 = _check_data(x1)
    return _separation(key, x1, grid, n_queries, chunk_size)


@eqx.filter_jit
def _separation(key, x1, grid, n_queries, chunk_size):
    n, d = x1.shape
    sq = jnp.sum(x1**2, axis=1)
    mean_sq = jnp.mean(sq)
    scale = jnp.sqrt(d / mean_sq)
    theta = jnp.arange(grid, dtype=x1.dtype) * (jnp.pi / (2 * grid))
    snr = scale * jnp.tan(theta)
    k_rows, k_noise = jax.random.split(key)
    rows = jax.random.randint(k_rows, (n_queries,), 0, n)
    noise = jax.random.normal(k_noise, (n_queries, d), x1.dtype)

    def at(s):
        y = s * x1[rows] + noise
        means = posterior_mean(x1, y, jnp.full((n_queries,), s), chunk_size=chunk_size)
        # Two ratio estimators over the same queries: of E|m|^2 (exact at s = 0,
        # where m is the data mean) and of E|x1 - m|^2 = (1 - rho) E|x1|^2 (the
        # orthogonality of the posterior error; exact as s -> infinity, where m is
        # the query's own point). Each grid point keeps the one of smaller error.
        den = sq[rows]
        mean_den = jnp.mean(den) * jnp.sqrt(n_queries)
        num = jnp.sum(means**2, axis=1)
        rho_a = jnp.sum(num) / jnp.sum(den)
        se_a = jnp.std(num - rho_a * den) / mean_den
        err = jnp.sum((x1[rows] - means) ** 2, axis=1)
        gap = jnp.sum(err) / jnp.sum(den)
        se_b = jnp.std(err - gap * den) / mean_den
        rho = jnp.where(se_a <= se_b, rho_a, 1 - gap)
        return jnp.clip(rho, 0.0, 1.0), jnp.minimum(se_a, se_b)

    rho, rho_se = jax.lax.map(at, snr)
    return DataSeparation(theta, snr, rho, rho_se, d, mean_sq)


class KineticOptimal(AbstractSchedule):
    r"""The schedule of least (regularised) kinetic energy for a `DataSeparation`.

    Built by `kinetic_optimal`; see the module docstring for the construction.
    Every field is an array (a pytree leaf), so the schedule passes through `jit`.

    Attributes:
        theta: angles of the knots, $0 = \theta_0 < \dots < \theta_K = \pi/2$.
        g: $\sqrt{h_\lambda}$ at the knots (linear between them), positive.
        w: $w(\theta_k) = \int_0^{\theta_k} g$.
        scale: $c = \sqrt{d/M}$; $\alpha = c\,a$ with $a = r\sin\theta$.
    """

    theta: Float[Array, " K1"]
    g: Float[Array, " K1"]
    w: Float[Array, " K1"]
    scale: Float[Array, ""]

    @property
    def total_angle(self) -> Float[Array, ""]:
        r"""$W = w(\pi/2)$: $\pi/2$ for Cond-OT-like data, smaller when it pays."""
        return self.w[-1]

    def _chord(self):
        """The chord's end point `(px, py)` in the flat plane and its velocity."""
        r1 = 1 / self.scale
        big_w = self.total_angle
        return r1 * jnp.cos(big_w), r1 * jnp.sin(big_w)

    def _theta_of_w(self, w):
        r"""$\theta(w)$, the inverse of the piecewise-quadratic $w(\theta)$."""
        k = jnp.clip(jnp.searchsorted(self.w, w, side="right") - 1, 0, len(self.w) - 2)
        g0, g1 = self.g[k], self.g[k + 1]
        span = self.theta[k + 1] - self.theta[k]
        slope = (g1 - g0) / span
        delta = w - self.w[k]
        root = jnp.sqrt(jnp.maximum(g0**2 + 2 * slope * delta, 0.0))
        u = 2 * delta / (g0 + root)
        return self.theta[k] + u, g0 + slope * u

    def _w_of_theta(self, theta):
        r"""$w(\theta)$ (piecewise quadratic)."""
        k = jnp.clip(
            jnp.searchsorted(self.theta, theta, side="right") - 1, 0, len(self.w) - 2
        )
        span = self.theta[k + 1] - self.theta[k]
        slope = (self.g[k + 1] - self.g[k]) / span
        u = theta - self.theta[k]
        return self.w[k] + self.g[k] * u + 0.5 * slope * u**2

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        ex, ey = self._chord()
        vx, vy = ex - 1, ey  # the chord's constant velocity
        px, py = 1 + t * vx, t * vy
        r2 = px**2 + py**2
        r = jnp.sqrt(r2)
        d_r = (px * vx + py * vy) / r
        w = jnp.arctan2(py, px)
        d_w = (px * vy - py * vx) / r2
        theta, g = self._theta_of_w(w)
        d_theta = d_w / g
        sin, cos = jnp.sin(theta), jnp.cos(theta)
        alpha = self.scale * r * sin
        d_alpha = self.scale * (d_r * sin + r * cos * d_theta)
        sigma = r * cos
        d_sigma = d_r * cos - r * sin * d_theta
        return ScheduleOutput(alpha, sigma, d_alpha, d_sigma)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        snr = jnp.asarray(snr, self.g.dtype)
        w = self._w_of_theta(jnp.arctan(snr / self.scale))
        ex, ey = self._chord()
        # The chord point at polar angle w: (1 + t vx) sin w = t vy cos w.
        return jnp.sin(w) / (ey * jnp.cos(w) - (ex - 1) * jnp.sin(w))

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""The time at which $\alpha_t$ equals `kappa` (bisection; it increases)."""
        kappa = jnp.asarray(kappa, self.g.dtype)
        return bisect_time(lambda t: self(t).alpha > kappa, kappa)

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$\sigma^2\dot\alpha/\alpha - \sigma\dot\sigma$."""
        s = self(t)
        return s.sigma**2 * s.d_alpha / s.alpha - s.sigma * s.d_sigma

    @classmethod
    def from_separation(
        cls, separation: DataSeparation, regularization: float = 0.1
    ) -> "KineticOptimal":
        r"""The schedule for an estimated $\rho$ and regularisation $\lambda > 0$."""
        if not (_checks.is_number(regularization) and regularization > 0):
            raise ValueError(
                f"regularization must be a number > 0, got {regularization!r}: at 0 "
                "the optimum's d_alpha is unbounded where rho(s) = s^2/(1+s^2) (low "
                "SNR for centred data), and so is the training target; 0.1 costs "
                "little energy, larger values move towards Cond-OT."
            )
        theta = jnp.append(separation.theta, jnp.pi / 2)
        h = separation.h_at(theta)
        g = jnp.sqrt((h + regularization) / (1 + regularization))
        spans = jnp.diff(theta)
        w = jnp.concatenate(
            [jnp.zeros(1, g.dtype), jnp.cumsum(0.5 * (g[1:] + g[:-1]) * spans)]
        )
        return cls(theta, g, w, jnp.asarray(separation.scale, g.dtype))


@registry.register("schedule", "kinetic_optimal")
def kinetic_optimal(
    x1: Float[ArrayLike, "n *event"],
    *,
    key: PRNGKeyArray,
    regularization: float = 0.1,
    grid: int = 64,
    n_queries: int = 1024,
    chunk_size: int = 4096,
) -> KineticOptimal:
    r"""The Gaussian schedule of least kinetic energy on the data `x1`.

    Estimates $\rho$ (`data_separation`) and builds the optimal schedule in closed
    form (module docstring) for a standard normal source. The result is an ordinary
    `AbstractSchedule`: `paths.AffinePath(kinetic_optimal(x1, key=key))` trains and
    samples like any other, and a config names it `schedule = "kinetic_optimal"`
    (the run fits it on samples of its target).

    Args:
        x1: samples of the data, `(n, *event)` with `n >= 2`, finite; the more,
            the closer $\hat\rho$ is to the data's (tens of thousands of 64-D points
            take seconds on a CPU).
        key: PRNG key for the Monte-Carlo queries.
        regularization: $\lambda > 0$, the weight of the conditional energy
            (module docstring); smaller is closer to the exact optimum.
        grid: the number of SNR grid points.
        n_queries: Monte-Carlo queries per grid point.
        chunk_size: data points per chunk of the posterior sums.

    Returns:
        A `KineticOptimal` schedule.

    Example:
        >>> import jax
        >>> from flowlab import data, schedules
        >>> x1 = data.Moons().sample(jax.random.key(0), 1000)
        >>> s = schedules.kinetic_optimal(x1, key=jax.random.key(1))
        >>> float(s(0.0).alpha), round(float(s(1.0).alpha), 6)
        (0.0, 1.0)
    """
    separation = data_separation(
        x1, key=key, grid=grid, n_queries=n_queries, chunk_size=chunk_size
    )
    return KineticOptimal.from_separation(separation, regularization)


class KineticEnergy(NamedTuple):
    """A kinetic energy and its Monte-Carlo standard error (0 for a quadrature)."""

    energy: Float[Array, ""]
    se: Float[Array, ""]


def kinetic_energy(
    schedule: AbstractSchedule,
    separation: DataSeparation,
    *,
    nodes: int = 512,
    t_max: float = 1.0,
) -> KineticEnergy:
    r"""$E\int_0^{t_{max}}\|u_t\|^2dt$ of a Gaussian path by the formula in $\rho$.

    $\int M[\dot\alpha^2 - (1 - \rho(s))\,(\dot\alpha\sigma -
    \alpha\dot\sigma)^2/\sigma^2] + d\,\dot\sigma^2\,dt$ (module docstring) by
    Gauss-Legendre quadrature with `nodes` nodes, $\rho$ from `separation.rho_at`.
    Schedules with $\sigma_t \propto \sqrt{1 - t}$ at the data end (`vp`,
    `linear_vp`) have infinite energy ($\dot\sigma^2 \sim 1/(1-t)$): compare
    them with `t_max < 1`.

    Args:
        schedule: any affine-path schedule (standard normal source).
        separation: the data's `DataSeparation`.
        nodes: quadrature nodes.
        t_max: the upper end of the time integral.

    Returns:
        `KineticEnergy(energy, se)`: the energy (a sum over the `d` coordinates,
        like `metrics.path_energy`) and the error that $\hat\rho$'s Monte-Carlo
        error propagates to it, $M\int \mathrm{se}(\hat\rho)\,(\dot\alpha\sigma
        - \alpha\dot\sigma)^2/\sigma^2 dt$ (the grid's errors are correlated, as
        its queries are shared, so they add linearly).
    """
    _checks.instance_of(
        "schedule", schedule, AbstractSchedule, "schedule", "schedules.cosine()"
    )
    if not (_checks.is_number(t_max) and 0 < t_max <= 1):
        raise ValueError(f"t_max must be a number in (0, 1], got {t_max!r}.")
    x, weights = np.polynomial.legendre.leggauss(_checks.positive_int("nodes", nodes))
    dtype = separation.rho.dtype
    t = jnp.asarray(0.5 * t_max * (x + 1), dtype)
    weights = jnp.asarray(0.5 * t_max * weights, dtype)

    def integrand(t):
        s = schedule(t)
        snr = s.alpha / s.sigma
        angular = (s.d_alpha * s.sigma - s.alpha * s.d_sigma) ** 2 / s.sigma**2
        m = separation.mean_sq_norm
        value = m * (s.d_alpha**2 - (1 - separation.rho_at(snr)) * angular)
        return value + separation.event_size * s.d_sigma**2, m * angular * (
            separation.rho_se_at(snr)
        )

    values, errors = jax.vmap(integrand)(t)
    return KineticEnergy(jnp.sum(weights * values), jnp.sum(weights * errors))


def kinetic_energy_mc(
    key: PRNGKeyArray,
    schedule: AbstractSchedule,
    x1: Float[ArrayLike, "n *event"],
    *,
    n: int = 4096,
    t_max: float = 1.0,
    chunk_size: int = 4096,
) -> KineticEnergy:
    r"""$E\int_0^{t_{max}}\|u_t(x_t)\|^2dt$ of a Gaussian path by Monte Carlo.

    Draws `n` triples $(t, x_1, x_0)$ ($t$ stratified on $[0, t_{max}]$, $x_1$ from
    the rows of `x1`, $x_0 \sim N(0, I)$) and evaluates the exact marginal velocity
    of the empirical measure, $u_t = \dot\alpha m_1 + \dot\sigma (x_t - \alpha
    m_1)/\sigma$ with $m_1$ from `posterior_mean`: an estimate independent of
    $\rho$ and of the formula in `kinetic_energy`.

    Returns:
        `KineticEnergy(energy, se)`.
    """
    key = _checks.key(key)
    _checks.instance_of(
        "schedule", schedule, AbstractSchedule, "schedule", "schedules.cosine()"
    )
    n = _checks.positive_int("n", n)
    if not (_checks.is_number(t_max) and 0 < t_max <= 1):
        raise ValueError(f"t_max must be a number in (0, 1], got {t_max!r}.")
    data = _check_data(x1)
    k_t, k_rows, k_noise = jax.random.split(key, 3)
    t = t_max * (jnp.arange(n) + jax.random.uniform(k_t, (n,), data.dtype)) / n
    x1_rows = data[jax.random.randint(k_rows, (n,), 0, data.shape[0])]
    x0 = jax.random.normal(k_noise, x1_rows.shape, data.dtype)
    s = jax.vmap(schedule)(t)
    xt = s.alpha[:, None] * x1_rows + s.sigma[:, None] * x0
    m1 = posterior_mean(
        data, xt / s.sigma[:, None], s.alpha / s.sigma, chunk_size=chunk_size
    )
    ut = (
        s.d_alpha[:, None] * m1
        + s.d_sigma[:, None] * (xt - s.alpha[:, None] * m1) / s.sigma[:, None]
    )
    energy = t_max * jnp.sum(ut**2, axis=1)
    return KineticEnergy(jnp.mean(energy), jnp.std(energy) / jnp.sqrt(n))
