r"""SDEs with the marginals of a probability-flow ODE, for `sample_sde`.

`interpolant_sde` (a stochastic interpolant's velocity and score) and
`reverse_diffusion_sde` (an affine Gaussian path's velocity, through its score)
build `SDE` pairs $dX = (b + \epsilon_t s)\,dt + \sqrt{2\epsilon_t}\,dW$ whose
marginals are those of $dX = b\,dt$ for every noise level $\epsilon \ge 0$;
`sample_sde(key, *sde, x0)` samples them.
"""

from collections.abc import Callable
from typing import Any, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import callables
from .._types import VelocityFn
from ..paths.affine import AffinePath
from .sde import SDE

__all__ = ["EpsilonFn", "interpolant_sde", "reverse_diffusion_sde"]

EpsilonFn: TypeAlias = Callable[[Float[Array, ""]], Float[ArrayLike, ""]]
r"""A noise level $\epsilon(t) \ge 0$ of a scalar time."""

_EPSILON_CHECK_GRID = 1001


class _ConstantEpsilon(eqx.Module):
    value: Float[Array, ""]

    def __call__(self, t):
        return self.value


def _as_epsilon(epsilon: float | EpsilonFn) -> EpsilonFn:
    """A checked noise level epsilon(t) >= 0 from a number or a callable."""
    if not callable(epsilon):
        try:
            value = float(epsilon)
        except (TypeError, ValueError):
            raise TypeError(
                "epsilon must be a non-negative number or a callable epsilon(t) of a "
                f"scalar time, got {type(epsilon).__name__}."
            ) from None
        if not value >= 0:
            raise ValueError(f"epsilon must be >= 0 (a noise level), got {value}.")
        return _ConstantEpsilon(jnp.asarray(value))
    grid = jnp.linspace(0.0, 1.0, _EPSILON_CHECK_GRID)
    values = jax.vmap(lambda t: jnp.asarray(epsilon(t)))(grid)
    if values.shape != grid.shape:
        raise ValueError(
            "epsilon(t) must return a scalar for a scalar time t, got shape "
            f"{values.shape[1:]}."
        )
    try:
        values = np.asarray(values)
    except jax.errors.TracerArrayConversionError:
        return epsilon  # epsilon closes over traced values: not checkable here
    negative = np.flatnonzero(values < 0)
    if negative.size:
        i = negative[0]
        raise ValueError(
            f"epsilon(t) must be >= 0 on [0, 1] (a noise level), got "
            f"epsilon({float(grid[i]):.4g}) = {float(values[i]):.4g}."
        )
    return epsilon


class _Drift(eqx.Module):
    """`v + eps * score`, the score from `score(t, x, args, v)`."""

    velocity_fn: VelocityFn
    score: Callable[[Float[Array, ""], Array, Any, Array], Array]
    epsilon_fn: EpsilonFn

    def __call__(self, t, x, args):
        v = self.velocity_fn(t, x, args)
        eps = jnp.asarray(self.epsilon_fn(t)).astype(jnp.result_type(v))
        return v + eps * self.score(t, x, args, v)


class _GivenScore(eqx.Module):
    score_fn: VelocityFn

    def __call__(self, t, x, args, v):
        return self.score_fn(t, x, args)


class _ScoreOfVelocity(eqx.Module):
    """The score of an affine path from its velocity (`path.velocity_to_score`)."""

    path: AffinePath

    def __call__(self, t, x, args, v):
        return self.path.velocity_to_score(t, x, v).astype(jnp.result_type(v))


class _SqrtTwoEpsilon(eqx.Module):
    epsilon_fn: EpsilonFn

    def __call__(self, t, x, args):
        return jnp.sqrt(2 * jnp.asarray(self.epsilon_fn(t)))


def interpolant_sde(
    b_fn: VelocityFn, score_fn: VelocityFn, epsilon: float | EpsilonFn
) -> SDE:
    r"""The SDE $dX = (b + \epsilon_t s)\,dt + \sqrt{2\epsilon_t}\,dW$.

    For every $\epsilon \ge 0$ it has the marginals of the probability-flow ODE
    $dX = b\,dt$ when $s = \nabla\log p_t$ (the Fokker-Planck terms
    $-\nabla\cdot(p\,\epsilon s)$ and $\epsilon\Delta p$ cancel); $\epsilon \equiv 0$
    is that ODE. Integrate from $t = 0$ with `sample_sde(key, *sde, x0)`.

    Args:
        b_fn: the per-sample velocity $b(t, x, \text{args})$.
        score_fn: the per-sample score $s(t, x, \text{args})$ of the marginal $p_t$.
        epsilon: the noise level $\epsilon_t$: a number, or a jax-traceable
            callable of a scalar time; it must be $\ge 0$ (checked on 1001 points of
            $[0, 1]$). Reuse the same callable (not a new lambda) across calls to
            reuse the compiled solve.

    Returns:
        An `SDE` whose diffusion $\sqrt{2\epsilon_t}$ is additive (any solver).
    """
    callables(b_fn=b_fn, score_fn=score_fn)
    epsilon_fn = _as_epsilon(epsilon)
    return SDE(
        _Drift(b_fn, _GivenScore(score_fn), epsilon_fn), _SqrtTwoEpsilon(epsilon_fn)
    )


class _TimeReversalDrift(eqx.Module):
    """`v + eps * score` for the schedule's own `diffusion_noise_level` eps."""

    path: AffinePath
    velocity_fn: VelocityFn

    def __call__(self, t, x, args):
        # With eps = sigma^2 d_alpha / alpha - sigma d_sigma and score =
        # -x0_hat / sigma, v + eps * score simplifies to 2 v - (d_alpha / alpha) x:
        # no division by sigma, so it stays finite as sigma -> 0.
        v = self.velocity_fn(t, x, args)
        s = self.path.schedule(t)
        return 2 * v - (s.d_alpha / s.alpha).astype(jnp.result_type(v)) * x


def reverse_diffusion_sde(
    path: AffinePath,
    velocity_fn: VelocityFn,
    epsilon: float | EpsilonFn | None = None,
) -> SDE:
    r"""An SDE with the marginals of an affine Gaussian path, from its velocity.

    For $x_t = \alpha_t x_1 + \sigma_t x_0$ with $x_0 \sim N(0, I)$, the marginal
    velocity $v$ gives the score $s = -\hat x_0/\sigma_t$
    (`path.velocity_to_score`), and
    $dX = (v + \epsilon_t s)\,dt + \sqrt{2\epsilon_t}\,dW$ has the path's marginals
    for every $\epsilon \ge 0$.

    The default $\epsilon_t = \tfrac12 g_t^2 = \sigma_t^2\dot\alpha_t/\alpha_t -
    \sigma_t\dot\sigma_t$, the schedule's `diffusion_noise_level(t)`, makes it the
    time reversal of the forward diffusion
    $dY = \tfrac{d\log\alpha}{d\tau} Y\,d\tau + g\,dW$ (in diffusion time
    $\tau = 1 - t$) whose marginals are the path's: the drift is then
    $2v - (\dot\alpha_t/\alpha_t)\,x$. Each built-in schedule gives
    $\epsilon_t$ in closed form (e.g. $(1 - t)/t$ for Cond-OT), which may differ from
    the formula above, evaluated from $\alpha, \sigma$ and their derivatives, by
    floating-point round-off; a `schedules.Schedule(alpha_fn, sigma_fn)` uses the
    formula. For `schedules.vp(b, B)`, with
    $\beta(t) = -\dot T(t) = b + (1 - t)(B - b)$, this is $\epsilon_t = \beta(t)/2$
    and the SDE is Song et al.'s reverse VP SDE in flow-matching time,
    $dX = [\tfrac12\beta(t) X + \beta(t) s]\,dt + \sqrt{\beta(t)}\,dW$.

    Near $t = 1$, $\sigma_t \to 0$: the score of a learned model is ill-conditioned
    there and, for VP, $\dot\sigma_1 = -\infty$. Stop at `t1 = 1 - delta` with
    `delta = 1e-3` (Song et al.'s choice) and, for VP, start from $N(0, I)$, which
    is the path at $t = 0$ up to $\alpha_0 = e^{-T(0)/2}$ ($\approx 7\cdot10^{-3}$ for
    the default betas). The default $\epsilon$ diverges where $\alpha_t = 0$ (e.g.
    Cond-OT at $t = 0$): start after it or pass `epsilon`.

    Args:
        path: an `AffinePath` with a standard normal source.
        velocity_fn: the per-sample marginal velocity $v(t, x, \text{args})$ (a
            trained model).
        epsilon: `None` for the diffusion's own noise level above, or a
            non-negative number or callable $\epsilon(t)$ (checked on 1001 points of
            $[0, 1]$); `0` is the probability-flow ODE.

    Returns:
        An `SDE` with additive noise, for `sample_sde(key, *sde, x0, t1=1 - 1e-3)`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import paths, sample_sde, schedules
        >>> from flowlab.sampling import reverse_diffusion_sde
        >>> path = paths.AffinePath(schedules.vp())
        >>> mu = jnp.array([3.0, -3.0])  # data N(mu, I): the velocity is d_alpha mu
        >>> v = lambda t, x, args: path.schedule(t).d_alpha * mu
        >>> x0 = jax.random.normal(jax.random.key(0), (2000, 2))
        >>> out = sample_sde(
        ...     jax.random.key(1), *reverse_diffusion_sde(path, v), x0, t1=1 - 1e-3)
        >>> jnp.round(out.x.mean(0), 1).tolist(), jnp.round(out.x.std(0), 1).tolist()
        ([3.0, -3.0], [1.0, 1.0])
    """
    if not isinstance(path, AffinePath):
        raise TypeError(
            "path must be a flowlab.paths.AffinePath (a Gaussian path with a "
            f"standard normal source), got {type(path).__name__}."
        )
    callables(velocity_fn=velocity_fn)
    if epsilon is None:
        return SDE(
            _TimeReversalDrift(path, velocity_fn),
            _SqrtTwoEpsilon(path.schedule.diffusion_noise_level),
        )
    epsilon_fn = _as_epsilon(epsilon)
    return SDE(
        _Drift(velocity_fn, _ScoreOfVelocity(path), epsilon_fn),
        _SqrtTwoEpsilon(epsilon_fn),
    )
