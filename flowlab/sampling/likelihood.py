r"""Log-likelihood of data under a flow, by the instantaneous change of variables.

Along $dx/dt = v(t, x)$, $\frac{d}{dt}\log p_t(x_t) = -\nabla\!\cdot v(t, x_t)$, so

$$\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\!\cdot v(t, x_t)\,dt,$$

with $x_0$ found by integrating from $t = 1$ back to $t = 0$. The divergence comes
from an `AbstractDivergence` (`flowlab.sampling._divergence`): the exact trace of the
Jacobian or Hutchinson's unbiased estimate, by object or by name (`method="exact"`,
`method="hutchinson"`).
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
from ._common import check_field, from_name
from ._divergence import AbstractDivergence
from .ode import sample_ode

__all__ = ["log_likelihood", "standard_normal_log_prob"]


def standard_normal_log_prob(x: Float[Array, "*event"]) -> Float[Array, ""]:
    """Log density of one sample under $N(0, I)$."""
    return -0.5 * jnp.sum(x**2) - 0.5 * x.size * math.log(2 * math.pi)


class _AugmentedField(eqx.Module):
    """Dynamics of `(x, log-density change, probe)` for one sample.

    A module rather than a closure: equal for the same `v` and kind of divergence
    (a Hutchinson key is data), so repeated calls reuse `sample_ode`'s compiled
    solve instead of retracing `v`.
    """

    v: VelocityFn = eqx.field(static=True)
    divergence: AbstractDivergence

    def __call__(self, t, state, args):
        x, _, probe = state
        check_field(self.v, t, x, args, "v", "x1", batched=False)  # while tracing
        dx, div = self.divergence.velocity_and_divergence(
            lambda y: self.v(t, y, args), x, probe
        )
        return dx, div, jnp.zeros_like(probe)


def log_likelihood(
    v: VelocityFn,
    x1: Float[Array, "batch *event"],
    args: Any = None,
    *,
    base_log_prob: Callable[[Array], Array] = standard_normal_log_prob,
    method: str | AbstractDivergence = "exact",
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
        method: an `AbstractDivergence`, e.g. `ExactDivergence()` or
            `HutchinsonDivergence(key)`, or a name in `flowlab.registry`'s
            `"divergence"` table: `"exact"` (Jacobian trace) or `"hutchinson"`
            (needs `key`).
        key: PRNG key for Hutchinson's probes, with `method="hutchinson"`.
        solver: as in `sample_ode`.
        steps: as in `sample_ode`.
        rtol: as in `sample_ode`.
        atol: as in `sample_ode`.
    """
    if key is not None and not isinstance(method, str):
        raise ValueError(
            "key goes with method='hutchinson' by name; a divergence object holds "
            "its own (HutchinsonDivergence(key))."
        )
    divergence = from_name(
        "divergence", "method", method, AbstractDivergence, "an AbstractDivergence",
        key=key,
    )  # fmt: skip
    x1 = jnp.asarray(x1)
    if x1.ndim < 2:
        raise ValueError(
            f"x1 must be batch-first (batch, *event), got shape {x1.shape}."
        )

    state = (x1, jnp.zeros((x1.shape[0],), x1.dtype), divergence.probes(x1))
    out = sample_ode(
        _AugmentedField(v, divergence),
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
