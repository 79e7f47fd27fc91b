r"""Schedules $(\alpha_t, \sigma_t)$ of Gaussian (affine) probability paths.

A schedule maps a scalar time $t \in [0, 1]$ to the coefficients of
$x_t = \alpha_t x_1 + \sigma_t x_0$ and their time derivatives. Time runs from the
source ($t = 0$, $x_0$, usually noise) to the data ($t = 1$, $x_1$).

Every schedule is an immutable `equinox.Module`; calling it on a scalar returns a
`ScheduleOutput`. Families with a closed form give their derivatives in closed form;
`Schedule(alpha_fn, sigma_fn)` differentiates two user functions with `jax.jvp`:

```python
import jax.numpy as jnp
from flowlab import paths, schedules

s = schedules.Schedule(lambda t: t**2, lambda t: 1 - t**2)
path = paths.AffinePath(s)
```
"""

import abc
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from . import registry
from ._checks import scalar_time as _as_time

__all__ = [
    "VE",
    "VP",
    "AbstractSchedule",
    "CondOT",
    "Cosine",
    "KineticOptimal",
    "LinearVP",
    "LipmanOT",
    "Polynomial",
    "Schedule",
    "ScheduleOutput",
    "bisect_time",
    "cond_ot",
    "cosine",
    "get",
    "kinetic_optimal",
    "linear_vp",
    "lipman_ot",
    "polynomial",
    "ve",
    "vp",
]

_Scalar = Float[ArrayLike, ""]


class ScheduleOutput(NamedTuple):
    r"""$\alpha_t, \sigma_t$ and their time derivatives at one time $t$."""

    alpha: Float[Array, ""]
    sigma: Float[Array, ""]
    d_alpha: Float[Array, ""]
    d_sigma: Float[Array, ""]


class AbstractSchedule(eqx.Module):
    r"""A Gaussian path schedule $t \mapsto (\alpha_t, \sigma_t)$.

    Subclasses implement `__call__` (closed forms with derivatives),
    `snr_inverse`, the time at which $\alpha_t / \sigma_t$ equals a given value,
    `kappa_inverse`, the time at which $\alpha_t$ equals a given value, and
    `diffusion_noise_level`, the noise level of the forward diffusion with the
    path's marginals (`flowlab.sampling.reverse_diffusion_sde`).
    """

    @abc.abstractmethod
    def __call__(self, t: _Scalar) -> ScheduleOutput:
        """Coefficients and their derivatives at a scalar time `t`."""

    @abc.abstractmethod
    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        r"""The time $t$ at which $\alpha_t / \sigma_t$ equals `snr` (it increases)."""

    @abc.abstractmethod
    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""The time $t$ at which $\alpha_t$ equals `kappa` (it increases).

        Raises:
            ValueError: the schedule's $\alpha_t$ is constant (`VE`), so no time is
                found by it; `snr_inverse` inverts such a schedule.
        """

    @abc.abstractmethod
    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""The diffusion's noise level at a scalar time `t`.

        $\epsilon_t = \tfrac12 g_t^2 = \sigma_t^2\dot\alpha_t/\alpha_t -
        \sigma_t\dot\sigma_t$, the noise level of the forward diffusion
        $dY = \tfrac{d\log\alpha}{d\tau} Y\,d\tau + g\,dW$ (diffusion time
        $\tau = 1 - t$) whose marginals are the path's; the default noise level of
        `flowlab.sampling.reverse_diffusion_sde`. Built-in schedules give it in
        closed form, finite wherever $\alpha_t > 0$ (also where $\dot\sigma_t$ is
        infinite).
        """


class CondOT(AbstractSchedule):
    r"""Conditional optimal transport: $\alpha_t = t$, $\sigma_t = 1 - t$."""

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        one = jnp.ones_like(t)
        return ScheduleOutput(t, 1 - t, one, -one)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        snr = jnp.asarray(snr)
        return snr / (1 + snr)

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""$t = \kappa$."""
        return jnp.asarray(kappa, dtype=jnp.result_type(kappa, float))

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$(1 - t)/t$."""
        t = _as_time(t)
        return (1 - t) / t


class LipmanOT(AbstractSchedule):
    r"""Lipman et al.'s OT path: $\alpha_t = t$, $\sigma_t = 1 - (1 - \sigma_{min}) t$.

    The path ends at $\mathcal N(x_1, \sigma_{min}^2 I)$ rather than at $x_1$.
    """

    sigma_min: float = 1e-4

    def __check_init__(self):
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"sigma_min must lie in [0, 1), got {self.sigma_min}.")

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        one = jnp.ones_like(t)
        c = 1 - self.sigma_min
        return ScheduleOutput(t, 1 - c * t, one, -c * one)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        snr = jnp.asarray(snr)
        return snr / (1 + snr * (1 - self.sigma_min))

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""$t = \kappa$."""
        return jnp.asarray(kappa, dtype=jnp.result_type(kappa, float))

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$(1 - (1 - \sigma_{min}) t)/t$."""
        t = _as_time(t)
        return (1 - (1 - self.sigma_min) * t) / t


class Polynomial(AbstractSchedule):
    r"""Polynomial convex schedule: $\alpha_t = t^n$, $\sigma_t = 1 - t^n$."""

    n: float

    def __check_init__(self):
        if not self.n >= 1:
            raise ValueError(
                f"n must be >= 1, got {self.n}: for n < 1 the velocity "
                "d_alpha = n t^(n-1) is infinite at t = 0, where sampling starts."
            )

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        alpha = t**self.n
        d_alpha = self.n * t ** (self.n - 1)
        return ScheduleOutput(alpha, 1 - alpha, d_alpha, -d_alpha)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        snr = jnp.asarray(snr)
        return (snr / (1 + snr)) ** (1 / self.n)

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""$t = \kappa^{1/n}$."""
        return jnp.asarray(kappa, dtype=jnp.result_type(kappa, float)) ** (1 / self.n)

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$n (1 - t^n)/t$."""
        t = _as_time(t)
        return self.n * (1 - t**self.n) / t


class Cosine(AbstractSchedule):
    r"""Cosine schedule: $\alpha_t = \sin(\pi t / 2)$, $\sigma_t = \cos(\pi t / 2)$."""

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        h = 0.5 * jnp.pi
        s, c = jnp.sin(h * t), jnp.cos(h * t)
        return ScheduleOutput(s, c, h * c, -h * s)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        return jnp.arctan(jnp.asarray(snr)) * (2 / jnp.pi)

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""$t = \tfrac{2}{\pi}\arcsin\kappa$."""
        return jnp.arcsin(jnp.asarray(kappa, dtype=jnp.result_type(kappa, float))) * (
            2 / jnp.pi
        )

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$\tfrac{\pi}{2}\cot(\pi t / 2)$."""
        t = _as_time(t)
        h = 0.5 * jnp.pi
        return h / jnp.tan(h * t)


class LinearVP(AbstractSchedule):
    r"""Linear variance preserving: $\alpha_t = t$, $\sigma_t = \sqrt{1 - t^2}$.

    $\dot\sigma_t$ diverges at $t = 1$.
    """

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        sigma = jnp.sqrt(1 - t**2)
        return ScheduleOutput(t, sigma, jnp.ones_like(t), -t / sigma)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        snr = jnp.asarray(snr)
        return snr / jnp.sqrt(1 + snr**2)

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""$t = \kappa$."""
        return jnp.asarray(kappa, dtype=jnp.result_type(kappa, float))

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$1/t$ (finite at $t = 1$, where $\dot\sigma_t$ is not)."""
        return 1 / _as_time(t)


class VP(AbstractSchedule):
    r"""Variance preserving diffusion schedule (Song et al.) in flow-matching time.

    With $T(t) = \tfrac12 (1-t)^2 (\beta_{max} - \beta_{min}) + (1-t)\beta_{min}$:
    $\alpha_t = e^{-T/2}$ and $\sigma_t = \sqrt{1 - e^{-T}}$. At $t = 0$ the path is
    close to (not exactly) the source; $\dot\sigma_t$ diverges at $t = 1$.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __check_init__(self):
        if not 0 < self.beta_min <= self.beta_max:
            raise ValueError(
                "vp needs 0 < beta_min <= beta_max, got "
                f"beta_min={self.beta_min}, beta_max={self.beta_max}."
            )

    def _big_t(self, t):
        u = 1 - t
        db = self.beta_max - self.beta_min
        return 0.5 * u**2 * db + u * self.beta_min, -(u * db + self.beta_min)

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        big_t, d_big_t = self._big_t(t)
        alpha = jnp.exp(-0.5 * big_t)
        sigma = jnp.sqrt(-jnp.expm1(-big_t))
        d_alpha = -0.5 * d_big_t * alpha
        d_sigma = 0.5 * d_big_t * alpha**2 / sigma
        return ScheduleOutput(alpha, sigma, d_alpha, d_sigma)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        snr = jnp.asarray(snr)
        big_t = jnp.log1p(1 / snr**2)
        db = self.beta_max - self.beta_min
        # The root of db u^2 / 2 + beta_min u = T, rationalised: valid for db = 0
        # and traceable when the betas are traced (no Python branch on them).
        u = 2 * big_t / (jnp.sqrt(self.beta_min**2 + 2 * db * big_t) + self.beta_min)
        return 1 - u

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""The root $t \le 1$ of $T(t) = -2\log\kappa$.

        Below $\alpha_0 = e^{-T(0)/2}$ (e.g. $\kappa = 0$) the root is $t < 0$, on
        the quadratic continued past $t = 0$.
        """
        big_t = -2 * jnp.log(jnp.asarray(kappa, dtype=jnp.result_type(kappa, float)))
        db = self.beta_max - self.beta_min
        # The rationalised root of db u^2 / 2 + beta_min u = T, as in snr_inverse.
        u = 2 * big_t / (jnp.sqrt(self.beta_min**2 + 2 * db * big_t) + self.beta_min)
        return 1 - u

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$\beta(t)/2 = \tfrac12(\beta_{min} + (1 - t)(\beta_{max} - \beta_{min}))$.

        With $\beta = -\dot T$; finite at $t = 1$, where $\sigma\dot\sigma$ is
        $0 \cdot \infty$ in floating point.
        """
        _, d_big_t = self._big_t(_as_time(t))
        return -0.5 * d_big_t


class VE(AbstractSchedule):
    r"""Variance exploding schedule.

    $\alpha_t = 1$ and $\sigma_t = \sigma_{min} (\sigma_{max} / \sigma_{min})^{1 - t}$.

    The path starts at $x_1 + \sigma_{max} x_0$ and ends at $x_1 + \sigma_{min} x_0$.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __check_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                "ve needs 0 < sigma_min < sigma_max, got "
                f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}."
            )

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        log_ratio = jnp.log(self.sigma_max / self.sigma_min)
        sigma = self.sigma_min * jnp.exp((1 - t) * log_ratio)
        return ScheduleOutput(
            jnp.ones_like(t), sigma, jnp.zeros_like(t), -log_ratio * sigma
        )

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        sigma = 1 / jnp.asarray(snr)
        return 1 - jnp.log(sigma / self.sigma_min) / jnp.log(
            self.sigma_max / self.sigma_min
        )

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""Not defined: $\alpha_t = 1$ at every $t$; raises a `ValueError`."""
        raise ValueError(
            "kappa_inverse is not defined for a VE schedule: alpha_t = 1 at every t, "
            "so alpha_t does not determine t. Use snr_inverse(snr) instead "
            "(alpha_t / sigma_t = 1 / sigma_t increases with t)."
        )

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$\log(\sigma_{max}/\sigma_{min})\,\sigma_t^2$."""
        sigma = self(t).sigma
        return jnp.log(self.sigma_max / self.sigma_min) * sigma**2


_ENDPOINTS = (
    ("alpha_fn", 0, 0.0, "alpha_0 = 0"),
    ("sigma_fn", 0, 1.0, "sigma_0 = 1"),
    ("alpha_fn", 1, 1.0, "alpha_1 = 1"),
    ("sigma_fn", 1, 0.0, "sigma_1 = 0"),
)
"""What `Schedule` checks: x_0 is the source draw at t = 0, x_1 the data at t = 1."""


def _endpoint(fn: Callable, name: str, t: int) -> float | None:
    """`fn(t)` as a float, or `None` when it is traced (built inside `jit`)."""
    value = jnp.asarray(fn(jnp.asarray(float(t))))
    if value.shape != ():
        raise ValueError(
            f"{name} must return a scalar for a scalar time, got shape {value.shape} "
            f"from {name}({t})."
        )
    try:
        return float(value)
    except jax.errors.ConcretizationTypeError:
        return None


def bisect_time(
    above: Callable[[Float[Array, ""]], Array], like: Array, steps: int = 60
) -> Float[Array, ""]:
    r"""The root in $[0, 1]$ of an increasing condition, by `steps` halvings.

    `above(t)` is true for times past the root (e.g. $\alpha_t > \kappa$); the
    result has the shape and dtype of `like`. The generic inverses of `Schedule`
    and of data-fitted schedules use it.
    """

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        past = above(mid)
        return jnp.where(past, lo, mid), jnp.where(past, mid, hi)

    lo, hi = jax.lax.fori_loop(
        0, steps, body, (jnp.zeros_like(like), jnp.ones_like(like))
    )
    return 0.5 * (lo + hi)


class Schedule(AbstractSchedule):
    r"""A schedule from two user functions; derivatives come from `jax.jvp`.

    The endpoints are checked when it is built: $\alpha_0 = 0$, $\sigma_0 = 1$ (the
    path starts at the source draw, where sampling starts) and $\alpha_1 = 1$,
    $\sigma_1 = 0$ (it ends at the data), each within `endpoint_tol`; a
    `ValueError` names the endpoint and its value. (Not checked when the functions
    close over traced values, i.e. a schedule built inside `jax.jit`.)

    Attributes:
        alpha_fn: $t \mapsto \alpha_t$ on a scalar, increasing, $\alpha_0 = 0$,
            $\alpha_1 = 1$.
        sigma_fn: $t \mapsto \sigma_t$ on a scalar, decreasing, $\sigma_0 = 1$,
            $\sigma_1 = 0$.
        bisection_steps: iterations of the generic SNR inverse (bisection on $[0,1]$).
        endpoint_tol: how far an endpoint may be from its value. The default 0.01
            admits paths that end near the data or start near the source (Lipman's
            $\sigma_1 = \sigma_{min}$, the VP schedule's $\alpha_0 = e^{-5}$);
            `math.inf` skips the check.

    Example:
        >>> s = Schedule(lambda t: t**2, lambda t: 1 - t**2)
        >>> float(s(0.5).d_alpha)
        1.0
    """

    alpha_fn: Callable[[Float[Array, ""]], Float[Array, ""]]
    sigma_fn: Callable[[Float[Array, ""]], Float[Array, ""]]
    bisection_steps: int = eqx.field(static=True, default=60)
    endpoint_tol: float = eqx.field(static=True, default=1e-2)

    def __check_init__(self):
        for name in ("alpha_fn", "sigma_fn"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be a callable of a scalar time.")
        if not self.endpoint_tol >= 0:
            raise ValueError(f"endpoint_tol must be >= 0, got {self.endpoint_tol}.")
        if self.endpoint_tol == float("inf"):
            return
        values = [_endpoint(getattr(self, n), n, t) for n, t, _, _ in _ENDPOINTS]
        for (name, t, want, rule), value in zip(_ENDPOINTS, values, strict=True):
            if value is not None and not abs(value - want) <= self.endpoint_tol:
                reversed_time = values[0] == 1.0 and values[2] == 0.0
                raise ValueError(
                    f"{name}({t}) = {value:.6g}, but a schedule needs {rule} (within "
                    f"endpoint_tol={self.endpoint_tol:g}): x_t = alpha_t x_1 + "
                    "sigma_t x_0 runs from the source x_0 at t = 0 to the data x_1 "
                    "at t = 1."
                    + (
                        " This one runs the other way (diffusion time): use "
                        "alpha(1 - t) and sigma(1 - t)."
                        if reversed_time
                        else ""
                    )
                )

    def __call__(self, t: _Scalar) -> ScheduleOutput:
        t = _as_time(t)
        one = jnp.ones_like(t)
        alpha, d_alpha = jax.jvp(self.alpha_fn, (t,), (one,))
        sigma, d_sigma = jax.jvp(self.sigma_fn, (t,), (one,))
        return ScheduleOutput(alpha, sigma, d_alpha, d_sigma)

    def snr_inverse(self, snr: _Scalar) -> Float[Array, ""]:
        snr = jnp.asarray(snr, dtype=jnp.result_type(float))
        above = lambda t: self.alpha_fn(t) > snr * self.sigma_fn(t)  # noqa: E731
        return bisect_time(above, snr, self.bisection_steps)

    def kappa_inverse(self, kappa: _Scalar) -> Float[Array, ""]:
        r"""Bisection on $[0, 1]$ for $\alpha_t = \kappa$ (`bisection_steps` halvings).

        Needs $\alpha_t$ increasing; a `kappa` outside $[\alpha_0, \alpha_1]$ gives
        the nearer end.
        """
        kappa = jnp.asarray(kappa, dtype=jnp.result_type(kappa, float))
        above = lambda t: self.alpha_fn(t) > kappa  # noqa: E731
        return bisect_time(above, kappa, self.bisection_steps)

    def diffusion_noise_level(self, t: _Scalar) -> Float[Array, ""]:
        r"""$\sigma^2\dot\alpha/\alpha - \sigma\dot\sigma$ from the jvp derivatives."""
        s = self(t)
        return s.sigma**2 * s.d_alpha / s.alpha - s.sigma * s.d_sigma


@registry.register("schedule", "cond_ot")
def cond_ot() -> CondOT:
    r"""$\alpha_t = t$, $\sigma_t = 1 - t$ (rectified flow / Cond-OT)."""
    return CondOT()


@registry.register("schedule", "lipman_ot")
def lipman_ot(sigma_min: float = 1e-4) -> LipmanOT:
    r"""Lipman et al.'s path ending at $\mathcal N(x_1, \sigma_{min}^2 I)$."""
    return LipmanOT(sigma_min)


@registry.register("schedule", "polynomial")
def polynomial(n: float) -> Polynomial:
    r"""$\alpha_t = t^n$, $\sigma_t = 1 - t^n$."""
    return Polynomial(n)


@registry.register("schedule", "cosine")
def cosine() -> Cosine:
    r"""$\alpha_t = \sin(\pi t/2)$, $\sigma_t = \cos(\pi t/2)$."""
    return Cosine()


@registry.register("schedule", "linear_vp")
def linear_vp() -> LinearVP:
    r"""$\alpha_t = t$, $\sigma_t = \sqrt{1 - t^2}$."""
    return LinearVP()


@registry.register("schedule", "vp")
def vp(beta_min: float = 0.1, beta_max: float = 20.0) -> VP:
    """Variance preserving diffusion schedule (see `VP`)."""
    return VP(beta_min, beta_max)


@registry.register("schedule", "ve")
def ve(sigma_min: float = 0.01, sigma_max: float = 50.0) -> VE:
    """Variance exploding diffusion schedule (see `VE`)."""
    return VE(sigma_min, sigma_max)


def get(name: str, **kwargs) -> AbstractSchedule:
    """The schedule called `name`, built with `kwargs` (see `flowlab.registry`).

    Names: `cond_ot, lipman_ot, polynomial, cosine, linear_vp, vp, ve`.
    """
    return registry.build("schedule", name, **kwargs)


# The data-fitted schedule lives with the paths (`flowlab.paths.kinetic`, it needs
# the posterior means of the data); it is re-exported here, beside the others.
from .paths.kinetic import KineticOptimal, kinetic_optimal  # noqa: E402
