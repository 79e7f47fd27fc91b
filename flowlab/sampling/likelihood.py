r"""Log-likelihood of data under a flow, by the instantaneous change of variables.

Along $dx/dt = v(t, x)$, $\frac{d}{dt}\log p_t(x_t) = -\nabla\!\cdot v(t, x_t)$, so

$$\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\!\cdot v(t, x_t)\,dt,$$

with $x_0$ found by integrating from $t = 1$ back to $t = 0$. The divergence comes
from an `AbstractDivergence` (`flowlab.sampling._divergence`): the exact trace of the
Jacobian or Hutchinson's unbiased estimate, by object or by name (`method="exact"`,
`method="hutchinson"`).

On a manifold (`manifold=`) the same formula holds with the Riemannian divergence and
densities with respect to the Riemannian volume. At each point $x$ it is the
Euclidean divergence, at $\xi = 0$, of the field in the normal coordinates centred at
$x$ (where the Christoffel symbols vanish):

$$w(\xi) = \mathrm{proju}_x\, d(\log_x)_y\,[v(t, y)], \qquad
y = \exp_x(\mathrm{proju}_x\, \xi),$$

written on the ambient coordinates so that no basis of $T_x M$ is needed: its
Jacobian vanishes on the kernel of `proju` and maps into $T_x M$, so its trace is the
trace on $T_x M$. The exact estimate costs one JVP per ambient coordinate, and
Hutchinson's probes are ambient vectors (still unbiased). The solve steps on the
manifold (`flowlab.sampling.manifold_solvers`).
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
from ..manifolds import AbstractCompactManifold, AbstractManifold
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
    manifold: AbstractManifold | None = None

    def __call__(self, t, state, args):
        x, _, probe = state
        check_field(self.v, t, x, args, "v", "x1", batched=False)  # while tracing
        field = lambda y: self.v(t, y, args)  # noqa: E731
        if self.manifold is None:
            dx, div = self.divergence.velocity_and_divergence(field, x, probe)
        else:
            chart = normal_chart_field(self.manifold, field, x)
            dx, div = self.divergence.velocity_and_divergence(
                chart, jnp.zeros_like(x), probe
            )
        return dx, div, jnp.zeros_like(probe)


def normal_chart_field(
    manifold: AbstractManifold,
    field: Callable[[Array], Array],
    x: Float[Array, "*shape"],
) -> Callable[[Array], Array]:
    r"""The field in the normal coordinates centred at `x`, on ambient vectors.

    $\xi \mapsto \mathrm{proju}_x\, d(\log_x)_y[\text{field}(y)]$ with
    $y = \exp_x(\mathrm{proju}_x \xi)$: at $\xi = 0$ its value is the field at `x`
    (projected on $T_x M$) and the trace of its Jacobian is the Riemannian
    divergence of the field at `x` (module docstring).
    """

    def chart(xi):
        y = manifold.expmap(x, manifold.proju(x, xi))
        _, pulled = jax.jvp(lambda z: manifold.logmap(x, z), (y,), (field(y),))
        return manifold.proju(x, pulled)

    return chart


def _base_log_prob(base_log_prob, manifold):
    """The base density: the given one, else N(0, I) or a compact manifold's uniform."""
    if base_log_prob is not None:
        return base_log_prob
    if manifold is None:
        return standard_normal_log_prob
    if isinstance(manifold, AbstractCompactManifold):
        return manifold.uniform_log_prob
    raise ValueError(
        f"base_log_prob is needed on {manifold!r}, which has no uniform "
        "distribution: pass the source's log-density, e.g. "
        "manifolds.WrappedNormal(manifold, manifold.origin(), 1.0).log_prob."
    )


def log_likelihood(
    v: VelocityFn,
    x1: Float[Array, "batch *event"],
    args: Any = None,
    *,
    base_log_prob: Callable[[Array], Array] | None = None,
    method: str | AbstractDivergence = "exact",
    key: PRNGKeyArray | None = None,
    solver: str | diffrax.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    manifold: AbstractManifold | None = None,
    project: bool = False,
) -> Float[Array, " batch"]:
    r"""$\log p_1(x_1)$ per sample under the flow of `v` from the base density.

    Args:
        v: per-sample field `v(t, x, args)` transporting the base (t=0) to the data.
        x1: a batch of data points.
        args: passed to `v`.
        base_log_prob: log density of the source on one sample; by default the
            standard normal, or with `manifold` the uniform distribution of a
            compact manifold (a non-compact one needs it given).
        method: an `AbstractDivergence`, e.g. `ExactDivergence()` or
            `HutchinsonDivergence(key)`, or a name in `flowlab.registry`'s
            `"divergence"` table: `"exact"` (Jacobian trace) or `"hutchinson"`
            (needs `key`).
        key: PRNG key for Hutchinson's probes, with `method="hutchinson"`.
        solver: as in `sample_ode`.
        steps: as in `sample_ode`.
        rtol: as in `sample_ode`.
        atol: as in `sample_ode`.
        manifold: score points of this `flowlab.manifolds.AbstractManifold`:
            densities are with respect to its Riemannian volume, the divergence
            is the Riemannian one, and the solve steps on the manifold (`solver`
            names a manifold solver, as in `sample_ode`).
        project: with `manifold`, project `x1` onto it instead of refusing points
            off it (a `ValueError` with the distance).

    Returns:
        $\log p_1(x_1)$ for each row of `x1`; differentiable in the parameters
        passed through `args` and in `x1`.
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
    base_log_prob = _base_log_prob(base_log_prob, manifold)
    x1 = jnp.asarray(x1)
    if x1.ndim < 2:
        raise ValueError(
            f"x1 must be batch-first (batch, *event), got shape {x1.shape}."
        )
    if manifold is not None:
        x1 = manifold.check_points("x1", x1, project=project)

    state = (x1, jnp.zeros((x1.shape[0],), x1.dtype), divergence.probes(x1))
    out = sample_ode(
        _AugmentedField(v, divergence, manifold),
        state,
        args,
        solver=solver,
        t0=1.0,
        t1=0.0,
        steps=steps,
        rtol=rtol,
        atol=atol,
        manifold=manifold,
    )
    x0, minus_int_div, _ = out.x
    return jax.vmap(base_log_prob)(x0) + minus_int_div
