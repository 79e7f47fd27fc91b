"""Integrate a per-sample velocity field over a batch with diffrax."""

from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree

from .._types import VelocityFn
from .solvers import ADAPTIVE, evaluations_per_step, get_ode_solver

__all__ = ["ODESolution", "sample_ode"]

DEFAULT_STEPS = 100
DEFAULT_TRAJECTORY_POINTS = 101


class ODESolution(NamedTuple):
    """What `sample_ode` returns.

    Attributes:
        x: the state at `t1`, batch-first like `x0` (a pytree when `x0` is one).
        ts: the saved times (`(n_save,)`), or `None` without a trajectory.
        trajectory: the states at `ts`, each leaf `(n_save, batch, *event)`, or `None`.
        nfe: evaluations of the (batched) vector field, from the solver's tableau
            and step count. Known gap: when an adaptive solve rejects its very
            first step, diffrax evaluates the field at `t0` once more, so `nfe`
            is low by one per such rejection (`-1` when a solver has no tableau
            and is not Euler).
        num_steps: solver steps taken, rejected steps included.
    """

    x: PyTree[Float[Array, "batch ..."]]
    ts: Float[Array, " n_save"] | None
    trajectory: PyTree[Float[Array, "n_save batch ..."]] | None
    nfe: Int[Array, ""]
    num_steps: Int[Array, ""]


class _BatchedField(eqx.Module):
    """A per-sample field applied to every row of a batch-first pytree state.

    Hashable by the identity of `v`, so diffrax's compiled solve is reused for the
    same `v`, shapes and solver.
    """

    v: VelocityFn = eqx.field(static=True)

    def __call__(self, t, y, args):
        return jax.vmap(self.v, in_axes=(None, 0, None))(t, y, args)


def _controller(solver_name, solver, steps, rtol, atol):
    """Step-size control: constant `steps` steps, or PID control when adaptive."""
    adaptive = steps is None and (
        solver_name in ADAPTIVE
        or (solver_name is None and isinstance(solver, diffrax.AbstractAdaptiveSolver))
    )
    if adaptive:
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be positive, got {rtol}, {atol}.")
        return diffrax.PIDController(
            rtol=jnp.asarray(rtol), atol=jnp.asarray(atol)
        ), None
    steps = DEFAULT_STEPS if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int or None, got {steps!r}.")
    return diffrax.ConstantStepSize(), steps


@eqx.filter_jit
def _solve(field, solver, controller, x0, args, t0, t1, dt0, saveat, max_steps):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=x0,
        args=args,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=max_steps,
    )
    return sol.ts, sol.ys, sol.stats["num_steps"]


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
) -> ODESolution:
    r"""Integrate $dx/dt = v(t, x, \text{args})$ from `t0` to `t1` for a batch `x0`.

    The batch is one ODE state (a single step-size sequence for all rows, as
    torchdiffeq and flow_matching do); `v` acts on one sample and is vmapped.

    Args:
        v: a pure per-sample vector field `v(t, x, args)`. Pass parameters through
            `args` (not a new closure per call) so repeated calls reuse the compiled
            solve.
        x0: the starting batch, batch-first; may be a pytree of such arrays.
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

    Returns:
        An `ODESolution` with the final `x`, the optional trajectory and the NFE.

    Example:
        >>> import jax.numpy as jnp
        >>> out = sample_ode(lambda t, x, a: -x, jnp.ones((4, 2)), solver="rk4")
        >>> bool(jnp.allclose(out.x, jnp.exp(-1.0), atol=1e-6)), int(out.nfe)
        (True, 400)
    """
    if not callable(v):
        raise TypeError("v must be a callable v(t, x, args) acting on one sample.")
    leaves = jax.tree_util.tree_leaves(x0)
    if not leaves or any(jnp.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError(
            "x0 must be a batch-first array (batch, *event_shape) or a pytree of them."
        )
    if len({jnp.shape(leaf)[0] for leaf in leaves}) != 1:
        raise ValueError("every leaf of x0 must have the same batch size.")
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}.")
    solver_name = solver if isinstance(solver, str) else None
    solver_obj = get_ode_solver(solver)
    controller, n_steps = _controller(solver_name, solver_obj, steps, rtol, atol)
    dt0 = None if n_steps is None else (t1 - t0) / n_steps

    if save_trajectory is False:
        saveat = diffrax.SaveAt(t1=True)
    else:
        if save_trajectory is True:
            n_save = n_steps + 1 if n_steps is not None else DEFAULT_TRAJECTORY_POINTS
        elif isinstance(save_trajectory, int) and save_trajectory >= 2:
            n_save = save_trajectory
        else:
            raise ValueError(
                "save_trajectory must be a bool or an int >= 2, "
                f"got {save_trajectory!r}."
            )
        saveat = diffrax.SaveAt(ts=jnp.linspace(t0, t1, n_save))

    x0 = jax.tree_util.tree_map(jnp.asarray, x0)
    # Times, step and tolerances are traced (not static), so a new step count or
    # tolerance reuses the compiled solve; only a new shape or solver recompiles.
    ts, ys, num_steps = _solve(
        _BatchedField(v),
        solver_obj,
        controller,
        x0,
        args,
        jnp.asarray(t0, float),
        jnp.asarray(t1, float),
        None if dt0 is None else jnp.asarray(dt0, float),
        saveat,
        max_steps if n_steps is None else max(n_steps, max_steps),
    )
    per_step = evaluations_per_step(solver_obj)
    if per_step is None:
        per_step = (1, 0) if isinstance(solver_obj, diffrax.Euler) else (-1, 0)
    nfe = (
        num_steps * per_step[0] + per_step[1]
        if per_step[0] > 0
        else -jnp.ones_like(num_steps)
    )
    if save_trajectory is False:
        final = jax.tree_util.tree_map(lambda y: y[0], ys)
        return ODESolution(final, None, None, nfe, num_steps)
    final = jax.tree_util.tree_map(lambda y: y[-1], ys)
    return ODESolution(final, ts, ys, nfe, num_steps)
