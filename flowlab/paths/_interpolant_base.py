r"""The interpolant interface: coefficients by `jax.jvp`, targets, conversions.

See `flowlab.paths.interpolants` for the mathematics and the families.
"""

import abc
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import scalar_time
from ._base import AbstractPath, Key, PathSample, Point, Time, check_pair

__all__ = [
    "AbstractInterpolant",
    "AbstractPairInterpolant",
    "AbstractTwoSidedInterpolant",
    "CoefficientFn",
    "InterpolantCoefficients",
]

_X = Float[Array, "*event"]
_T = Float[ArrayLike, ""]
_S = Float[Array, ""]
CoefficientFn = Callable[[_S], _S]

BOUNDARY_TOL = 1e-6
r"""How far $\alpha, \beta, \gamma$ may miss their boundary values (float32)."""


class InterpolantCoefficients(NamedTuple):
    r"""$\alpha, \beta, \gamma$ and their time derivatives at one time $t$."""

    alpha: _S
    beta: _S
    gamma: _S
    d_alpha: _S
    d_beta: _S
    d_gamma: _S


def _check_boundary(fn: CoefficientFn, name: str, t: float, want: float) -> None:
    """Raise unless `fn(t) == want`; skipped when `fn` closes over traced values."""
    with jax.ensure_compile_time_eval():
        value = jnp.asarray(fn(jnp.asarray(t)))
    if value.shape != ():
        raise TypeError(f"{name} must return a scalar, got shape {value.shape}.")
    try:
        value = float(value)
    except jax.errors.ConcretizationTypeError:
        return
    if not abs(value - want) <= BOUNDARY_TOL:
        raise ValueError(
            f"{name}({t:g}) must be {want:g} for x_t to run from x0 at t = 0 to x1 "
            f"at t = 1, got {value:.6g}."
        )


class AbstractInterpolant(AbstractPath):
    r"""$x_t = \alpha(t) x_0 + \beta(t) x_1 + \gamma(t) z$ on one sample.

    Subclasses give the coefficients `alpha`, `beta`, `gamma` (scalar functions of
    a scalar time; derivatives come from `jax.jvp`), which array is the noise and
    its scale (`noise_scale`), how a sample is built from a pair and a noise
    (`interpolate`) and how the noise is drawn (`draw_noise`). The boundary values
    $\alpha(0) = \beta(1) = 1$, $\alpha(1) = \beta(0) = \gamma(0) = \gamma(1) = 0$
    are checked at construction.
    """

    @abc.abstractmethod
    def alpha(self, t: _S) -> _S:
        r"""$\alpha(t)$."""

    @abc.abstractmethod
    def beta(self, t: _S) -> _S:
        r"""$\beta(t)$."""

    @abc.abstractmethod
    def gamma(self, t: _S) -> _S:
        r"""$\gamma(t)$."""

    @abc.abstractmethod
    def noise_coefficients(self, c: InterpolantCoefficients) -> tuple[_S, _S]:
        r"""Of the coefficients `c`, the noise's scale and its derivative."""

    @abc.abstractmethod
    def source(self, x0: _X, x1: _X) -> _X:
        """The array in the place of $x_0$ (`x0`, or `x1` from data to data)."""

    @abc.abstractmethod
    def noise(self, x0: _X, z: _X) -> _X:
        """The noise of a sample: `z`, or the source `x0` when it is the noise."""

    @abc.abstractmethod
    def draw_noise(self, key: PRNGKeyArray | None, x1: _X, dtype) -> _X:
        """The noise `z` of one sample (zeros where the path draws none)."""

    def __check_init__(self):
        for field in self.__dataclass_fields__:
            if field.endswith("_fn") and not callable(getattr(self, field)):
                raise TypeError(f"{field} must be a callable of a scalar time.")
        for name, fn, t, want in (
            ("alpha_fn", self.alpha, 0.0, 1.0),
            ("alpha_fn", self.alpha, 1.0, 0.0),
            ("beta_fn", self.beta, 0.0, 0.0),
            ("beta_fn", self.beta, 1.0, 1.0),
            ("gamma_fn", self.gamma, 0.0, 0.0),
            ("gamma_fn", self.gamma, 1.0, 0.0),
        ):
            _check_boundary(fn, name, t, want)

    def noise_scale(self, t: _T) -> tuple[_S, _S]:
        r"""The scale of the noise in $x_t$ and its derivative at `t`."""
        return self.noise_coefficients(self.coefficients(t))

    def coefficients(self, t: _T) -> InterpolantCoefficients:
        r"""$\alpha, \beta, \gamma$ and their derivatives (by `jax.jvp`) at `t`."""
        t = scalar_time(t)
        one = jnp.ones_like(t)
        alpha, d_alpha = jax.jvp(self.alpha, (t,), (one,))
        beta, d_beta = jax.jvp(self.beta, (t,), (one,))
        gamma, d_gamma = jax.jvp(self.gamma, (t,), (one,))
        return InterpolantCoefficients(alpha, beta, gamma, d_alpha, d_beta, d_gamma)

    def interpolate(self, x0: _X, x1: _X, z: _X, t: _T) -> PathSample:
        r"""$x_t$ and $u_t = \dot x_t$ for given `x0`, `x1`, noise `z` and time `t`."""
        x0, x1, t = check_pair(x0, x1, t)
        z = _check_noise(z, x1)
        x0 = self.source(x0, x1)
        c = self.coefficients(t)
        xt = c.alpha * x0 + c.beta * x1 + c.gamma * z
        ut = c.d_alpha * x0 + c.d_beta * x1 + c.d_gamma * z
        return PathSample(t=t, x0=x0, x1=x1, xt=xt, ut=ut, z=self.noise(x0, z))

    def sample(self, key: Key, x0: Point, x1: Point, t: Time) -> PathSample:
        r"""Draw the noise with `key`; return `interpolate(x0, x1, z, t)`.

        A one-sided interpolant draws nothing (`key` may be `None`).
        """
        x0, x1, t = check_pair(x0, x1, t)
        dtype = jnp.result_type(x0.dtype, x1.dtype, float)
        return self.interpolate(x0, x1, self.draw_noise(key, x1, dtype), t)

    def velocity_target(self, ps: PathSample) -> _X:
        r"""The target of $b$: $u_t = \dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z$."""
        return ps.ut

    def denoiser_target(self, ps: PathSample) -> _X:
        r"""The target of $\eta$: the noise $z$ ($x_0$ when one-sided)."""
        return ps.z

    def noise_target(self, ps: PathSample) -> _X:
        r"""The noise of a sample, the denoiser's target (as `denoiser_target`)."""
        return self.denoiser_target(ps)

    def score_target(self, ps: PathSample) -> _X:
        r"""The target of the score: $-z/\gamma$ ($-x_0/\alpha$ when one-sided)."""
        return -ps.z / self.noise_scale(ps.t)[0]

    def interpolant_velocity_target(self, ps: PathSample) -> _X:
        r"""The target of $v$: $u_t - \dot\gamma z = \dot\alpha x_0 + \dot\beta x_1$."""
        return ps.ut - self.noise_scale(ps.t)[1] * ps.z

    def denoiser_to_score(self, t: _T, xt: _X, eta: _X) -> _X:
        r"""Score $s = -\eta / \gamma$ from a denoiser."""
        del xt
        return -eta / self.noise_scale(t)[0]

    def score_to_denoiser(self, t: _T, xt: _X, score: _X) -> _X:
        r"""Denoiser $\eta = -\gamma s$ from a score."""
        del xt
        return -self.noise_scale(t)[0] * score

    def two_field_to_velocity(self, t: _T, xt: _X, v: _X, eta: _X) -> _X:
        r"""Velocity $b = v + \dot\gamma \eta$ from the two-field predictions."""
        del xt
        return v + self.noise_scale(t)[1] * eta


def _check_noise(z: Array, x1: Array) -> Array:
    z = jnp.asarray(z)
    if z.shape != x1.shape:
        raise ValueError(
            f"z must have the event shape of x1 {x1.shape}, got {z.shape}."
        )
    return z


class AbstractTwoSidedInterpolant(AbstractInterpolant):
    r"""$x_t = \alpha x_0 + \beta x_1 + \gamma z$ with $z \sim N(0, I)$ drawn apart.

    Subclasses give `alpha`, `beta` and `source`; $\gamma$ is the field `gamma_fn`.
    """

    gamma_fn: eqx.AbstractVar[CoefficientFn]

    def gamma(self, t: _S) -> _S:
        return self.gamma_fn(t)

    def noise_coefficients(self, c: InterpolantCoefficients) -> tuple[_S, _S]:
        r"""$(\gamma, \dot\gamma)$."""
        return c.gamma, c.d_gamma

    def noise(self, x0: _X, z: _X) -> _X:
        return z

    def draw_noise(self, key: PRNGKeyArray | None, x1: _X, dtype) -> _X:
        if key is None:
            raise ValueError(
                f"{type(self).__name__} draws z ~ N(0, I): pass a PRNG key."
            )
        return jax.random.normal(key, x1.shape, dtype)


class AbstractPairInterpolant(AbstractTwoSidedInterpolant):
    """A two-sided interpolant between the pair `(x0, x1)` as given."""

    def source(self, x0: _X, x1: _X) -> _X:
        return x0
