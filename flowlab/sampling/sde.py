r"""Integrate an Itô SDE over a batch with diffrax.

`sample_sde` solves $dX = f(t, X)\,dt + g(t, X)\,dW$ for a batch-first `x0` with a
per-sample drift and a diagonal diffusion (independent noise per coordinate and
sample). `flowlab.sampling.marginal_sdes` builds the `SDE`s with the marginals of a
probability-flow ODE that `sample_sde(key, *sde, x0)` samples.
"""

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeAlias

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .. import _checks
from .._types import Scalar, VelocityFn
from . import _common
from ._brownian import AbstractBrownian
from .solvers import _drift_evaluations, get_sde_solver

__all__ = ["SDE", "SDESolution", "sample_sde"]

DiffusionFn: TypeAlias = Callable[[Scalar, Any, Any], Any]
"""A per-sample diffusion `g(t, x, args)`: a scalar or an array broadcastable to x."""

_MAX_STEPS = 16_384


class SDESolution(_common.Solution):
    """What `sample_sde` returns: `x, ts, trajectory, nfe, num_steps`.

    The state `x` at `t1` (batch-first, a pytree when `x0` is one), the saved times
    `ts` and states `trajectory` (`None` unless `save_trajectory`), the number of
    (batched) drift evaluations `nfe` (`-1` where the solver's is unknown) and of
    steps `num_steps`.
    """

    __slots__ = ()


class SDE(NamedTuple):
    r"""$dX = f\,dt + g\,dW$ as two per-sample functions: `sample_sde(key, *sde, x0)`.

    Attributes:
        drift: $f(t, x, \text{args})$, with the shape of `x`.
        diffusion: $g(t, x, \text{args})$, a scalar or an array broadcastable to `x`.
    """

    drift: VelocityFn
    diffusion: DiffusionFn


def _levy_area(solver: diffrax.AbstractSolver) -> type:
    """The Brownian increment type the solver needs (Lévy areas for SRK methods)."""
    minimal = getattr(solver, "minimal_levy_area", diffrax.BrownianIncrement)
    if issubclass(minimal, diffrax.AbstractSpaceTimeTimeLevyArea):
        return diffrax.SpaceTimeTimeLevyArea
    if issubclass(minimal, diffrax.AbstractSpaceTimeLevyArea):
        return diffrax.SpaceTimeLevyArea
    return diffrax.BrownianIncrement


def _broadcast_leaf(g, x):
    g = jnp.asarray(g)
    try:
        shape = jnp.broadcast_shapes(g.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            "diffusion(t, x, args) must return a scalar or an array broadcastable to "
            f"one sample's shape {x.shape}, got shape {g.shape}."
        )
    return jnp.broadcast_to(g.astype(x.dtype), x.shape)


class _BatchedDrift(eqx.Module):
    """A per-sample drift on every row, in the state's dtype (`fn` is a pytree)."""

    fn: VelocityFn

    def __call__(self, t, y, args):
        _common.check_field(self.fn, t, y, args, "drift")  # while tracing
        out = jax.vmap(self.fn, in_axes=(None, 0, None))(t, y, args)
        return jtu.tree_map(lambda o, leaf: o.astype(leaf.dtype), out, y)


class _BatchedDiffusion(eqx.Module):
    """A per-sample diffusion as a diagonal operator on the batch-first state."""

    fn: DiffusionFn

    def per_sample(self, t, x, args):
        g = self.fn(t, x, args)
        if jtu.tree_structure(g) != jtu.tree_structure(x):
            if not eqx.is_array_like(g):
                raise ValueError(
                    "diffusion(t, x, args) must return a scalar, an array or a pytree "
                    "like x."
                )
            g = jtu.tree_map(lambda _: g, x)
        return jtu.tree_map(_broadcast_leaf, g, x)

    def __call__(self, t, y, args):
        g = jax.vmap(self.per_sample, in_axes=(None, 0, None))(t, y, args)
        return lx.DiagonalLinearOperator(g)


def _depends_on_x(diffusion: _BatchedDiffusion, t0, x0, args) -> bool:
    """Whether the diffusion depends on the state (traced only, nothing computed)."""
    found = []

    def probe():
        t = jnp.asarray(t0)
        x = jtu.tree_map(lambda leaf: jnp.zeros(leaf.shape[1:], leaf.dtype), x0)
        ones = jtu.tree_map(jnp.ones_like, x)
        _, tangent = eqx.filter_jvp(
            lambda y: diffusion.per_sample(t, y, args), (x,), (ones,)
        )
        found.append(bool(jtu.tree_leaves(tangent)))

    jax.eval_shape(probe)
    return found[0]


class _SDETerms(_common.AbstractTerms):
    """Drift and diffusion, driven by a Brownian path made inside the solve."""

    drift: _BatchedDrift
    diffusion: _BatchedDiffusion
    brownian: AbstractBrownian
    key: PRNGKeyArray
    levy_area: type = eqx.field(static=True)

    def __call__(self, t0, t1, dt0, y0):
        shape = jtu.tree_map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), y0
        )
        path = self.brownian.path(t0, t1, dt0, shape, self.key, self.levy_area)
        return diffrax.MultiTerm(
            diffrax.ODETerm(self.drift), diffrax.ControlTerm(self.diffusion, path)
        )


def sample_sde(
    key: PRNGKeyArray,
    drift: VelocityFn,
    diffusion: DiffusionFn,
    x0: PyTree[Float[Array, "batch ..."]],
    args: Any = None,
    *,
    solver: str | diffrax.AbstractSolver = "euler_maruyama",
    t0: float = 0.0,
    t1: float = 1.0,
    steps: int = 100,
    save_trajectory: bool | int = False,
    brownian: Literal["increments", "tree"] | AbstractBrownian = "increments",
    brownian_tol: float | None = None,
) -> SDESolution:
    r"""Solve the Itô SDE $dX = f(t, X)\,dt + g(t, X)\,dW$ from `t0` to `t1`.

    The batch is one SDE state driven by a Brownian motion with independent
    coordinates, so every sample (and every coordinate) gets its own noise; `drift`
    and `diffusion` act on one sample and are vmapped. Steps are of equal size.

    The same `key` gives the same samples for the same shapes, times, steps, solver
    and `brownian`; changing any of them draws a different Brownian path (with
    `brownian="tree"` and a fixed `brownian_tol`, the path does not depend on
    `steps`). Times off the step grid in `save_trajectory` are linearly
    interpolated.

    Args:
        key: a `jax.random` key; the only source of randomness.
        drift: a pure per-sample drift `f(t, x, args)`, shaped like `x`.
        diffusion: a pure per-sample diagonal diffusion `g(t, x, args)`: a scalar,
            an array broadcastable to `x`, or (for pytree states) a pytree like `x`.
            Stratonovich solvers (all names but `"euler_maruyama"`) need it to be
            independent of `x`.
        x0: the starting batch, batch-first; may be a pytree of such arrays (one
            sample `x` goes in as `x[None]`; `drift` is traced on one row first).
        args: passed to `drift` and `diffusion` unchanged. Pass parameters here
            (not in a new closure per call) so repeated calls reuse the compiled
            solve; Python numbers in it are compile-time constants, arrays are not.
        solver: a diffrax solver, or a name in `SDE_SOLVERS`: `"euler_maruyama"`,
            `"heun"`, `"sea"`, `"shark"`, `"sra1"`.
        t0: the start time.
        t1: the end time, `t1 > t0`.
        steps: number of equal steps.
        save_trajectory: `True` saves every step; an int saves that many equally
            spaced times.
        brownian: an `AbstractBrownian`, or a name in `flowlab.registry`'s
            `"brownian"` table: `"increments"` (`BrownianIncrements()`) draws an
            independent Gaussian increment per step (`diffrax.UnsafeBrownianPath`;
            fastest, not reverse-mode differentiable); `"tree"`
            (`BrownianTree(tol)`) samples one Brownian path per key at any
            resolution (`diffrax.VirtualBrownianTree`; slower, differentiable,
            consistent across step counts).
        brownian_tol: with `brownian="tree"`, the tree's time resolution
            (`BrownianTree(tol=brownian_tol)`); default half a step.

    Returns:
        An `SDESolution` with the final `x`, the optional trajectory and the NFE.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> out = sample_sde(
        ...     jax.random.key(0), lambda t, x, a: -x, lambda t, x, a: 0.5,
        ...     jnp.ones((1000, 2)), solver="shark", steps=20)
        >>> out.x.shape, int(out.nfe)
        ((1000, 2), 40)
    """
    key = _checks.key(key)
    _checks.callables(drift=drift, diffusion=diffusion)
    _common.check_batch(x0)
    _checks.positive_int("steps", steps)
    if not float(t0) < float(t1):
        raise ValueError(
            f"sample_sde integrates forward in time: need t0 < t1, got t0={t0}, "
            f"t1={t1}."
        )
    if brownian_tol is not None and brownian != "tree":
        raise ValueError("brownian_tol applies only to brownian='tree'.")
    brownian = _common.from_name(
        "brownian", "brownian", brownian, AbstractBrownian, "an AbstractBrownian",
        **({} if brownian_tol is None else {"tol": brownian_tol}),
    )  # fmt: skip
    solver_obj = get_sde_solver(solver)

    x0 = jtu.tree_map(
        lambda leaf: jnp.asarray(
            leaf, None if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) else float
        ),
        x0,
    )
    # Times in the state's precision (at least float32): diffrax promotes the state
    # to the time dtype.
    time_dtype = jnp.result_type(*(leaf.dtype for leaf in jtu.tree_leaves(x0)), "f4")
    batched_diffusion = _BatchedDiffusion(diffusion)
    if isinstance(solver_obj, diffrax.AbstractStratonovichSolver) and _depends_on_x(
        batched_diffusion, t0, x0, args
    ):
        raise ValueError(
            f"solver {solver!r} is a Stratonovich solver: it solves the Itô SDE only "
            "for additive noise, but diffusion(t, x, args) depends on x. Use "
            "solver='euler_maruyama', or a diffusion of t only."
        )
    saveat = _common.save_at(save_trajectory, t0, t1, steps + 1, time_dtype)

    # Times and step are traced, so a new step count or time span reuses the
    # compiled solve; a new shape, solver, drift or diffusion function recompiles.
    # max_steps is static: only more than _MAX_STEPS steps recompile.
    terms = _SDETerms(
        _BatchedDrift(drift), batched_diffusion, brownian, key, _levy_area(solver_obj)
    )
    times = (t0, t1, (float(t1) - float(t0)) / steps)
    return _common.solve(
        SDESolution,
        terms,
        solver_obj,
        x0,
        args,
        tuple(jnp.asarray(time, time_dtype) for time in times),
        saveat,
        (diffrax.ConstantStepSize(), brownian.adjoint, max(steps, _MAX_STEPS)),
        _drift_evaluations(solver_obj),
    )
