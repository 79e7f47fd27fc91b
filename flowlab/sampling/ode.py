"""Integrate a per-sample velocity field over a batch with diffrax."""

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .. import _checks
from .._types import VelocityFn
from ..manifolds import AbstractManifold
from . import _common
from .manifold_solvers import AbstractManifoldSolver, get_manifold_solver
from .solvers import ADAPTIVE, _ode_evaluations, get_ode_solver

__all__ = ["ODESolution", "sample_ode"]

DEFAULT_STEPS = 100
DEFAULT_TRAJECTORY_POINTS = 101


class ODESolution(_common.Solution):
    """What `sample_ode` returns: `x, ts, trajectory, nfe, num_steps`.

    `x` is the state at `t1`, batch-first like `x0`; `ts` and `trajectory` (each leaf
    `(n_save, batch, *event)`) are `None` without `save_trajectory`. `num_steps`
    counts rejected steps too, and `nfe` the evaluations of the (batched) vector
    field, from the solver's tableau and step count (`-1` when a solver has no
    tableau and is not Euler). Known gap: when an adaptive solve rejects its very
    first step, diffrax evaluates the field at `t0` once more, so `nfe` is low by
    one per such rejection.
    """

    __slots__ = ()


class _BatchedField(eqx.Module):
    """A per-sample field applied to every row of a batch-first pytree state.

    A plain function `v` is a static leaf, compared by identity, so diffrax's
    compiled solve is reused for the same `v`, shapes and solver; arrays inside a
    pytree `v` (e.g. a Hutchinson key) are traced.
    """

    v: VelocityFn

    def __call__(self, t, y, args):
        _common.check_field(self.v, t, y, args)  # while tracing: the shapes
        return jax.vmap(self.v, in_axes=(None, 0, None))(t, y, args)


class _ODETerms(_common.AbstractTerms):
    field: _BatchedField

    def __call__(self, t0, t1, dt0, y0):
        return diffrax.ODETerm(self.field)


def _controller(solver_name, solver, steps, rtol, atol):
    """Step-size control: constant `steps` steps, or PID control when adaptive."""
    if isinstance(solver, AbstractManifoldSolver):
        adaptive = steps is None and solver.adaptive
    else:
        adaptive = steps is None and (
            solver_name in ADAPTIVE
            or (
                solver_name is None
                and isinstance(solver, diffrax.AbstractAdaptiveSolver)
            )
        )
    if adaptive:
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be positive, got {rtol}, {atol}.")
        return diffrax.PIDController(
            rtol=jnp.asarray(rtol), atol=jnp.asarray(atol)
        ), None
    steps = DEFAULT_STEPS if steps is None else steps
    return diffrax.ConstantStepSize(), _checks.positive_int(
        "steps", steps, "a positive int or None"
    )


def _on_manifold(manifold: AbstractManifold, x0, project: bool):
    """`x0` with its first leaf checked (or projected) as points of `manifold`."""
    _checks.instance_of(
        "manifold",
        manifold,
        AbstractManifold,
        "flowlab.manifolds.AbstractManifold",
        "manifolds.Sphere(2)",
    )
    leaves, treedef = jax.tree_util.tree_flatten(x0)
    first = manifold.check_points("x0", leaves[0], project=project)
    return treedef.unflatten([first, *leaves[1:]])


def sample_ode(
    v: VelocityFn,
    x0: PyTree[Float[Array, "batch ..."]],
    args: Any = None,
    *,
    solver: str | diffrax.AbstractSolver = "tsit5",
    t0: float = 0.0,
    t1: float = 1.0,
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    save_trajectory: bool | int = False,
    max_steps: int = 16_384,
    manifold: AbstractManifold | None = None,
    project: bool = False,
) -> ODESolution:
    r"""Integrate $dx/dt = v(t, x, \text{args})$ from `t0` to `t1` for a batch `x0`.

    The batch is one ODE state (a single step-size sequence for all rows, as
    torchdiffeq and flow_matching do); `v` acts on one sample and is vmapped.

    Args:
        v: a pure per-sample vector field `v(t, x, args)`. Pass parameters through
            `args` (not a new closure per call) so repeated calls reuse the compiled
            solve. A model that predicts $x_1$, $\epsilon$ or the score is a
            velocity field through `flowlab.sampling.velocity_field`.
        x0: the starting batch, batch-first; may be a pytree of such arrays. Its
            first axis is always the batch (one sample `x` goes in as `x[None]`);
            `v` is traced on one row first, and a failure there or an output of
            another shape is a `ValueError` that names the shapes.
        args: passed to `v` unchanged.
        solver: a diffrax solver, or one of `"euler", "heun", "midpoint", "rk4"`
            (fixed steps) or `"tsit5", "dopri5", "dopri8"` (adaptive).
        t0: the start time.
        t1: the end time; `t1 < t0` integrates backwards.
        steps: number of equal steps; `None` means adaptive steps for adaptive
            solvers and 100 steps otherwise.
        rtol: relative tolerance of adaptive step-size control.
        atol: absolute tolerance of adaptive step-size control.
        save_trajectory: `True` saves every step for fixed-step solvers and 101
            equally spaced times otherwise; an int saves that many equally spaced
            times.
        max_steps: the most steps an adaptive solve may take.
        manifold: integrate on this `flowlab.manifolds.AbstractManifold`: `x0`
            (or the first leaf of a pytree `x0`) holds its points, `v` returns
            tangent vectors (projected on the tangent space if not quite), and
            every step stays on the manifold. `solver` then names a manifold
            solver (`flowlab.sampling.manifold_solvers`): `"euler"`,
            `"midpoint"`, `"rk4"`, `"tsit5"`, `"dopri5"` step along geodesics,
            `"projected_euler"` and so on project ambient steps back; or pass a
            `GeodesicRK` / `ProjectedRK`.
        project: with `manifold`, project the points of `x0` onto it; by
            default points farther than 1e-5 from it are a `ValueError` that
            gives the distance.

    Returns:
        An `ODESolution` with the final `x`, the optional trajectory and the NFE.

    Example:
        >>> import jax.numpy as jnp
        >>> out = sample_ode(lambda t, x, a: -x, jnp.ones((4, 2)), solver="rk4")
        >>> bool(jnp.allclose(out.x, jnp.exp(-1.0), atol=1e-6)), int(out.nfe)
        (True, 400)
    """
    _checks.callables(v=v)
    _common.check_batch(x0)
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}.")
    solver_name = solver if isinstance(solver, str) else None
    if manifold is None:
        solver_obj = get_ode_solver(solver)
    else:
        solver_obj = get_manifold_solver(solver, manifold)
        x0 = _on_manifold(manifold, x0, project)
    controller, n_steps = _controller(solver_name, solver_obj, steps, rtol, atol)
    dt0 = None if n_steps is None else (t1 - t0) / n_steps
    saveat = _common.save_at(
        save_trajectory,
        t0,
        t1,
        DEFAULT_TRAJECTORY_POINTS if n_steps is None else n_steps + 1,
    )
    # Times, step and tolerances are traced (not static), so a new step count or
    # tolerance reuses the compiled solve; only a new shape or solver recompiles.
    return _common.solve(
        ODESolution,
        _ODETerms(_BatchedField(v)),
        solver_obj,
        jax.tree_util.tree_map(jnp.asarray, x0),
        args,
        (
            jnp.asarray(t0, float),
            jnp.asarray(t1, float),
            None if dt0 is None else jnp.asarray(dt0, float),
        ),
        saveat,
        (
            controller,
            diffrax.RecursiveCheckpointAdjoint(),
            max_steps if n_steps is None else max(n_steps, max_steps),
        ),
        _ode_evaluations(solver_obj),
    )
