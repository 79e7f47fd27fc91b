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

`sample_and_log_prob` runs the same augmented ODE forwards, from source draws $x_0$
at $t = 0$ to samples $x_1$ at $t = 1$, so that samples and their log-densities come
from one solve. Both return a `Likelihood`: the two ends $(x_0, x_1)$ of each
trajectory, $\log p_1(x_1)$ and the cost.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._types import VelocityFn
from ..manifolds import AbstractCompactManifold, AbstractManifold
from ._common import check_field, from_name
from ._divergence import AbstractDivergence
from .ode import sample_ode

__all__ = [
    "Likelihood",
    "log_likelihood",
    "sample_and_log_prob",
    "standard_normal_log_prob",
]


class Likelihood(NamedTuple):
    r"""What `log_likelihood` and `sample_and_log_prob` return.

    `x0` and `x1` are the two ends of the same trajectories of $dx/dt = v$: for
    `log_likelihood`, `x1` is the data scored (projected onto the manifold with
    `project=True`) and `x0` the source point each maps to (the backward solution
    at $t = 0$); for `sample_and_log_prob`, `x0` is the source batch and `x1` the
    samples.

    Attributes:
        log_prob: $\log p_1(x_1)$ per sample, `(batch,)`.
        x0: the source end of each trajectory, `(batch, *event)`.
        x1: the data end, `(batch, *event)`.
        nfe: evaluations of the batched augmented field (each one also computes the
            divergence: `D` JVPs for `"exact"`, one for `"hutchinson"`).

    Bits per dimension: `flowlab.metrics.bits_per_dim(out.log_prob, D,
    bin_width=...)`.
    """

    log_prob: Float[Array, " batch"]
    x0: Float[Array, "batch *event"]
    x1: Float[Array, "batch *event"]
    nfe: Int[Array, ""]


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
    state_name: str = eqx.field(static=True, default="x1")

    def __call__(self, t, state, args):
        x, _, probe = state
        check_field(self.v, t, x, args, "v", self.state_name, batched=False)
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


def _divergence(method, key) -> AbstractDivergence:
    """The divergence estimator `method` names (with `key`), or `method` itself."""
    if key is not None and not isinstance(method, str):
        raise ValueError(
            "key goes with method='hutchinson' by name; a divergence object holds "
            "its own (HutchinsonDivergence(key))."
        )
    return from_name(
        "divergence", "method", method, AbstractDivergence, "an AbstractDivergence",
        key=key,
    )  # fmt: skip


def _batch(name: str, x, manifold, project: bool) -> Array:
    """`x` as a batch-first array, checked (or projected) onto `manifold`."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"{name} must be batch-first (batch, *event), got shape {x.shape}; "
            f"one sample x goes in as x[None]."
        )
    if manifold is not None:
        x = manifold.check_points(name, x, project=project)
    return x


def _integrate(v, x, args, divergence, manifold, name, t0, t1, **solve_options):
    r"""Solve for `(x, \int_{t0}^{t1} div v dt)` from `x` at `t0`, and the NFE."""
    state = (x, jnp.zeros((x.shape[0],), x.dtype), divergence.probes(x))
    out = sample_ode(
        _AugmentedField(v, divergence, manifold, name),
        state,
        args,
        t0=t0,
        t1=t1,
        manifold=manifold,
        **solve_options,
    )
    y, int_div, _ = out.x
    return y, int_div, out.nfe


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
) -> Likelihood:
    r"""$\log p_1(x_1)$ per sample under the flow of `v` from the base density.

    Integrates $(x, \ell)$ with $\dot x = v$, $\dot\ell = \nabla\!\cdot v$ from
    $(x_1, 0)$ at $t = 1$ back to $t = 0$, and returns $\log p_0(x_0) + \ell_0$.

    A model that predicts $x_1$, $\epsilon$ or the score scores data through
    `flowlab.sampling.velocity_field(fn, path, prediction)` like any field. The
    result is differentiable (reverse mode through the solve, diffrax's
    `RecursiveCheckpointAdjoint`): `jax.grad` of `-log_prob.mean()` in the
    parameters passed through `args` fine-tunes a model by maximum likelihood
    (a fixed-step solver, e.g. `solver="rk4", steps=8`, keeps it cheap).

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
        A `Likelihood`: `log_prob` ($\log p_1(x_1)$ for each row of `x1`;
        differentiable in the parameters passed through `args` and in `x1`), `x0`
        (where each row's trajectory starts), `x1` and `nfe`.

    Example:
        >>> import jax.numpy as jnp
        >>> # dx/dt = x: x1 = e x0, so log p1(x1) = log N(x1 / e) - D.
        >>> out = log_likelihood(lambda t, x, a: x, jnp.ones((3, 2)), solver="dopri5")
        >>> bool(jnp.allclose(out.x0, jnp.exp(-1.0), atol=1e-5))
        True
        >>> want = standard_normal_log_prob(jnp.full(2, jnp.exp(-1.0))) - 2
        >>> bool(jnp.allclose(out.log_prob, want, atol=1e-4))
        True
    """
    divergence = _divergence(method, key)
    base_log_prob = _base_log_prob(base_log_prob, manifold)
    x1 = _batch("x1", x1, manifold, project)
    x0, minus_int_div, nfe = _integrate(
        v,
        x1,
        args,
        divergence,
        manifold,
        "x1",
        1.0,
        0.0,
        solver=solver,
        steps=steps,
        rtol=rtol,
        atol=atol,
    )
    return Likelihood(jax.vmap(base_log_prob)(x0) + minus_int_div, x0, x1, nfe)


def sample_and_log_prob(
    v: VelocityFn,
    x0: Float[Array, "batch *event"],
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
) -> Likelihood:
    r"""Samples $x_1$ from source draws $x_0$ and $\log p_1(x_1)$, in one solve.

    Integrates $(x, \ell)$ with $\dot x = v$, $\dot\ell = \nabla\!\cdot v$ from
    $(x_0, 0)$ at $t = 0$ to $t = 1$, and returns $x_1$ with

    $$\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\!\cdot v(t, x_t)\,dt.$$

    The samples are those of `sample_ode(v, x0, args, ...)` with the same solver and
    steps (an adaptive solver's steps also control the error of $\ell$), and the
    log-densities equal `log_likelihood` of the samples up to the solver's error.

    Args:
        v: per-sample field `v(t, x, args)` transporting the base (t=0) to the data.
        x0: a batch of draws from the source, e.g. `source.sample(key, n)`.
        args: passed to `v`.
        base_log_prob: log density of the source on one sample, as in
            `log_likelihood` (standard normal, or a compact manifold's uniform).
        method: the divergence estimator, as in `log_likelihood`.
        key: PRNG key for Hutchinson's probes, with `method="hutchinson"`.
        solver: as in `sample_ode`.
        steps: as in `sample_ode`.
        rtol: as in `sample_ode`.
        atol: as in `sample_ode`.
        manifold: sample on this manifold (Riemannian divergence and volume), as
            in `log_likelihood`; `x0` holds its points.
        project: with `manifold`, project `x0` onto it instead of refusing points
            off it.

    Returns:
        A `Likelihood` with the samples `x1`, their `log_prob`, the given `x0` and
        `nfe`.

    Example:
        >>> import jax.numpy as jnp
        >>> # dx/dt = x: x1 = e x0, and log p1(x1) = log N(x0) - D.
        >>> out = sample_and_log_prob(lambda t, x, a: x, jnp.ones((3, 2)))
        >>> bool(jnp.allclose(out.x1, jnp.exp(1.0), atol=1e-4))
        True
        >>> want = standard_normal_log_prob(jnp.ones(2)) - 2
        >>> bool(jnp.allclose(out.log_prob, want, atol=1e-4))
        True
    """
    divergence = _divergence(method, key)
    base_log_prob = _base_log_prob(base_log_prob, manifold)
    x0 = _batch("x0", x0, manifold, project)
    x1, int_div, nfe = _integrate(
        v,
        x0,
        args,
        divergence,
        manifold,
        "x0",
        0.0,
        1.0,
        solver=solver,
        steps=steps,
        rtol=rtol,
        atol=atol,
    )
    return Likelihood(jax.vmap(base_log_prob)(x0) - int_div, x0, x1, nfe)
