"""What `sample_ode` and `sample_sde` share: checks, save times, the solve, the result.

Both integrate a batch-first pytree state with one diffrax solve: the batch is checked
(`check_batch`) and the field traced on one of its rows (`check_field`),
`save_trajectory` becomes a `diffrax.SaveAt` (`save_at`), the terms are built inside
one compiled `diffrax.diffeqsolve` (`solve`, which also counts the evaluations and
splits the saved states into the final state and the trajectory).
Names of solvers, Brownian motions and divergence estimators become objects through
`flowlab.registry` in `from_name`.
"""

import abc
from typing import Any, NamedTuple, TypeVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, Int, PyTree

from .. import registry

__all__ = [
    "AbstractTerms",
    "FieldError",
    "Solution",
    "check_batch",
    "check_field",
    "from_name",
    "save_at",
    "solve",
]


class Solution(NamedTuple):
    """A solve's final state, optional trajectory and cost.

    Attributes:
        x: the state at `t1`, batch-first like `x0` (a pytree when `x0` is one).
        ts: the saved times (`(n_save,)`), or `None` without a trajectory.
        trajectory: the states at `ts`, each leaf `(n_save, batch, *event)`, or `None`.
        nfe: evaluations of the batched field; `-1` where the solver's is unknown.
        num_steps: solver steps taken.
    """

    x: PyTree[Float[Array, "batch ..."]]
    ts: Float[Array, " n_save"] | None
    trajectory: PyTree[Float[Array, "n_save batch ..."]] | None
    nfe: Int[Array, ""]
    num_steps: Int[Array, ""]


_Solution = TypeVar("_Solution", bound=Solution)


def check_batch(x0: PyTree[Any]) -> None:
    """A `ValueError` unless `x0` is batch-first arrays sharing one batch size."""
    leaves = jtu.tree_leaves(x0)
    if not leaves or any(jnp.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError(
            "x0 must be a batch-first array (batch, *event_shape) or a pytree of them."
        )
    if len({jnp.shape(leaf)[0] for leaf in leaves}) != 1:
        raise ValueError("every leaf of x0 must have the same batch size.")


def _shapes(tree: PyTree[Any]) -> Any:
    """The shape of an array, or a pytree's leaves' shapes (for messages)."""
    if jtu.treedef_is_leaf(jtu.tree_structure(tree)):
        return jnp.shape(tree)
    return jtu.tree_map(jnp.shape, tree)


class FieldError(ValueError):
    """A field failed on one sample, or returned another shape (`check_field`)."""


def check_field(
    v: Any,
    t: Any,
    x: PyTree[Any],
    args: Any,
    name: str = "v",
    state: str = "x0",
    *,
    batched: bool = True,
) -> None:
    """Trace `v` on one sample (`eqx.filter_eval_shape`: no work); errors name shapes.

    Called where the solve traces its field (once per compilation): `x` is the
    batch-first state (`batched`), whose first axis is the batch, so `v` sees one
    row; or one sample. A field that fails there (typically because the user's `x0`
    lacks its batch axis, so that its rows are scalars) or returns another shape
    raises a `FieldError` that names `name` (the field), `state` (the argument)
    and the shapes; a `FieldError` from a field nested inside `v` passes through.
    """
    row = jtu.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(
            jnp.shape(leaf)[1 if batched else 0 :], jnp.result_type(leaf)
        ),
        x,
    )
    time = jax.ShapeDtypeStruct(jnp.shape(t), jnp.result_type(t))
    if batched:
        sample = (
            f"{state} has shape {_shapes(x)} and is batch-first (batch, "
            f"*event_shape), so one sample (a row) of {state} has shape {_shapes(row)}"
        )
        hint = f" If {state} is a single sample, add a batch axis ({state}[None])."
    else:
        sample, hint = f"one sample of {state} has shape {_shapes(row)}", ""
    try:
        out = eqx.filter_eval_shape(v, time, row, args)
    except FieldError:
        raise
    except Exception as err:  # the field's own error, reported with the shapes
        lines = str(err).strip().splitlines()
        raise FieldError(
            f"{name}(t, x, args) failed on one sample of {state}: {sample}.{hint} "
            f"{name} raised {type(err).__name__}: {lines[0] if lines else ''}"
        ) from err
    same = jtu.tree_structure(out) == jtu.tree_structure(row) and all(
        jnp.shape(o) == r.shape
        for o, r in zip(jtu.tree_leaves(out), jtu.tree_leaves(row), strict=True)
    )
    if not same:
        raise FieldError(
            f"{name}(t, x, args) must return the shape of its x: {sample}, but "
            f"{name} returned {_shapes(out)}."
        )


def save_at(
    save_trajectory: bool | int, t0: float, t1: float, points: int, dtype=None
) -> diffrax.SaveAt:
    """The final time only, `points` equally spaced times (`True`), or that many.

    Args:
        save_trajectory: `False`, `True`, or an int >= 2 (the number of times).
        t0: the first saved time.
        t1: the last saved time.
        points: how many times `True` means.
        dtype: the dtype of the saved times (`None`: the default float).
    """
    if save_trajectory is False:
        return diffrax.SaveAt(t1=True)
    if save_trajectory is True:
        n_save = points
    elif isinstance(save_trajectory, int) and save_trajectory >= 2:
        n_save = save_trajectory
    else:
        raise ValueError(
            f"save_trajectory must be a bool or an int >= 2, got {save_trajectory!r}."
        )
    return diffrax.SaveAt(ts=jnp.linspace(t0, t1, n_save, dtype=dtype))


def from_name(kind: str, arg: str, value: Any, base: type, what: str, **options: Any):
    """`value` if it is a `base`; else the `flowlab.registry` entry of `kind` it names.

    The entry is built with those of `options` that its factory takes (e.g. `key`
    for `"hutchinson"`, nothing for `"exact"`). Anything else is a `ValueError` that
    names the argument `arg` and lists the names.
    """
    if isinstance(value, base):
        return value
    known = registry.names(kind)
    if isinstance(value, str) and (value in known or ":" in value):  # or user code
        if options:
            options = registry.accepted(kind, value, options)
        return registry.build(kind, value, **options)
    quoted = [repr(name) for name in known]
    listed = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if known[1:] else quoted)
    raise ValueError(
        f"unknown {registry.KINDS[kind]} {value!r}: {arg} must be {listed}, or {what}."
    )


class AbstractTerms(eqx.Module):
    """The terms of a differential equation, built inside the compiled solve.

    Inside, because a Brownian path is made from the traced key, times and step.
    """

    @abc.abstractmethod
    def __call__(self, t0, t1, dt0, y0) -> diffrax.AbstractTerm:
        """The diffrax terms for a solve from `t0` to `t1` in steps `dt0`."""


@eqx.filter_jit
def _diffeqsolve(terms_fn, solver, y0, args, t0, t1, dt0, saveat, options):
    controller, adjoint, max_steps = options
    sol = diffrax.diffeqsolve(
        terms_fn(t0, t1, dt0, y0),
        solver,
        t0,
        t1,
        dt0,
        y0,
        args,
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=max_steps,
    )
    return sol.ts, sol.ys, sol.stats["num_steps"]


def solve(
    solution: type[_Solution],
    terms_fn: AbstractTerms,
    solver: diffrax.AbstractSolver,
    y0: PyTree[Float[Array, "batch ..."]],
    args: Any,
    times: tuple[Array, Array, Array | None],
    saveat: diffrax.SaveAt,
    options: tuple[diffrax.AbstractStepSizeController, diffrax.AbstractAdjoint, int],
    evaluations: tuple[int, int],
) -> _Solution:
    """One compiled solve, as `solution(x, ts, trajectory, nfe, num_steps)`.

    Times and steps are traced, so new ones reuse the compiled solve; a new shape,
    solver, function or static option compiles a new one.

    Args:
        solution: the result NamedTuple (`ODESolution`, `SDESolution`).
        terms_fn: builds the terms.
        solver: a diffrax solver.
        y0: the batch-first starting state.
        args: passed to the terms.
        times: `(t0, t1, dt0)` as arrays (`dt0` is `None` for adaptive steps).
        saveat: from `save_at`; without `ts`, no trajectory is returned.
        options: `(stepsize_controller, adjoint, max_steps)`.
        evaluations: `(per_step, once)` evaluations of the function `nfe` counts;
            `per_step <= 0` where it is not known (then `nfe` is `-1`).
    """
    ts, ys, num_steps = _diffeqsolve(
        terms_fn, solver, y0, args, *times, saveat, options
    )
    nfe = _nfe(num_steps, *evaluations)
    if saveat.subs.ts is None:
        return solution(jtu.tree_map(lambda y: y[0], ys), None, None, nfe, num_steps)
    return solution(jtu.tree_map(lambda y: y[-1], ys), ts, ys, nfe, num_steps)


def _nfe(num_steps: Int[Array, ""], per_step: int, once: int) -> Int[Array, ""]:
    if per_step > 0:
        return num_steps * per_step + once
    return -jnp.ones_like(num_steps)
