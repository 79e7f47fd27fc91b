r"""Log-likelihood of data under a flow, by the instantaneous change of variables.

Along $dx/dt = v(t, x)$, $\frac{d}{dt}\log p_t(x_t) = -\nabla\!\cdot v(t, x_t)$, so

$$\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\!\cdot v(t, x_t)\,dt,$$

with $x_0$ found by integrating from $t = 1$ back to $t = 0$. The divergence is the
exact trace of the Jacobian (`method="exact"`, one `jax.jacfwd` per evaluation) or
Hutchinson's unbiased estimate $\epsilon^\top (\partial v/\partial x)\,\epsilon$ with
one Rademacher probe per sample held fixed along the trajectory.
"""

import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._types import VelocityFn
from .ode import sample_ode

__all__ = ["log_likelihood", "standard_normal_log_prob"]


def standard_normal_log_prob(x: Float[Array, "*event"]) -> Float[Array, ""]:
    """Log density of one sample under $N(0, I)$."""
    return -0.5 * jnp.sum(x**2) - 0.5 * x.size * math.log(2 * math.pi)


class _AugmentedField(eqx.Module):
    """Dynamics of `(x, log-density change, probe)` for one sample.

    A module rather than a closure: equal for the same `v` and `method`, so repeated
    calls reuse `sample_ode`'s compiled solve instead of retracing `v`.
    """

    v: VelocityFn = eqx.field(static=True)
    method: str = eqx.field(static=True)

    def __call__(self, t, state, args):
        x, _, probe = state
        flat = lambda y: self.v(t, y.reshape(x.shape), args).reshape(-1)  # noqa: E731
        if self.method == "exact":
            dx = self.v(t, x, args)
            div = jnp.trace(jax.jacfwd(flat)(x.reshape(-1)))
        else:
            dx, jvp = jax.jvp(flat, (x.reshape(-1),), (probe.reshape(-1),))
            dx = dx.reshape(x.shape)
            div = jnp.vdot(probe.reshape(-1), jvp)
        return dx, div, jnp.zeros_like(probe)


def log_likelihood(
    v: VelocityFn,
    x1: Float[Array, "batch *event"],
    args: Any = None,
    *,
    base_log_prob: Callable[[Array], Array] = standard_normal_log_prob,
    method: str = "exact",
    key: PRNGKeyArray | None = None,
    solver: str | diffrax.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Float[Array, " batch"]:
    r"""$\log p_1(x_1)$ per sample under the flow of `v` from the base density.

    Args:
        v: per-sample field `v(t, x, args)` transporting the base (t=0) to the data.
        x1: a batch of data points.
        args: passed to `v`.
        base_log_prob: log density of the source on one sample (standard normal).
        method: `"exact"` (Jacobian trace) or `"hutchinson"` (needs `key`).
        key: PRNG key for Hutchinson's probes.
        solver: as in `sample_ode`.
        steps: as in `sample_ode`.
        rtol: as in `sample_ode`.
        atol: as in `sample_ode`.
    """
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}.")
    if method == "hutchinson" and key is None:
        raise ValueError("method='hutchinson' needs a PRNG key: pass key=...")
    x1 = jnp.asarray(x1)
    if x1.ndim < 2:
        raise ValueError(
            f"x1 must be batch-first (batch, *event), got shape {x1.shape}."
        )

    if method == "exact":
        probes = jnp.zeros((x1.shape[0],), x1.dtype)
    else:
        probes = jax.random.rademacher(key, x1.shape, dtype=x1.dtype)

    state = (x1, jnp.zeros((x1.shape[0],), x1.dtype), probes)
    out = sample_ode(
        _AugmentedField(v, method),
        state,
        args,
        solver=solver,
        t0=1.0,
        t1=0.0,
        steps=steps,
        rtol=rtol,
        atol=atol,
    )
    x0, minus_int_div, _ = out.x
    return jax.vmap(base_log_prob)(x0) + minus_int_div
