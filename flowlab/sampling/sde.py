r"""Integrate an Itô SDE over a batch with diffrax.

`sample_sde` solves $dX = f(t, X)\,dt + g(t, X)\,dW$ for a batch-first `x0` with a
per-sample drift and a diagonal diffusion (independent noise per coordinate and
sample). `flowlab.sampling.marginal_sdes` builds the `SDE`s with the marginals of a
probability-flow ODE that `sample_sde(key, *sde, x0)` samples.
"""

from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple, TypeAlias

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .. import registry
from .._types import Scalar, VelocityFn
from .solvers import _solver, evaluations_per_step

__all__ = [
    "SDE",
    "SDE_SOLVERS",
    "SDESolution",
    "get_sde_solver",
    "sample_sde",
]

DiffusionFn: TypeAlias = Callable[[Scalar, Any, Any], Any]
"""A per-sample diffusion `g(t, x, args)`: a scalar or an array broadcastable to x."""

_MAX_STEPS = 16_384

for _name, _cls in {
    "euler_maruyama": diffrax.Euler,
    "heun": diffrax.Heun,
    "sea": diffrax.SEA,
    "shark": diffrax.ShARK,
    "sra1": diffrax.SRA1,
}.items():
    registry.register("sde_solver", _name, _cls)

SDE_SOLVERS: Mapping[str, Callable[[], diffrax.AbstractSolver]] = registry.table(
    "sde_solver"
)
"""SDE solver names and the diffrax solvers they build (`flowlab.registry`).

`"euler_maruyama"` (strong order 1/2, 1 for additive noise) solves any Itô SDE. The
others are Stratonovich solvers, which solve the Itô SDE only for additive noise
(a diffusion independent of `x`, where the two agree; `sample_sde` checks): diffrax's
additive-noise stochastic Runge-Kutta methods `"sea"` (1 drift evaluation per step,
strong order 1), `"shark"` and `"sra1"` (2, strong order 1.5), and `"heun"` (2).
"""


class SDESolution(NamedTuple):
    """What `sample_sde` returns.

    Attributes:
        x: the state at `t1`, batch-first like `x0` (a pytree when `x0` is one).
        ts: the saved times (`(n_save,)`), or `None` without a trajectory.
        trajectory: the states at `ts`, each leaf `(n_save, batch, *event)`, or `None`.
        nfe: evaluations of the (batched) drift; `-1` where the solver's is unknown.
        num_steps: solver steps taken.
    """

    x: PyTree[Float[Array, "batch ..."]]
    ts: Float[Array, " n_save"] | None
    trajectory: PyTree[Float[Array, "n_save batch ..."]] | None
    nfe: Int[Array, ""]
    num_steps: Int[Array, ""]


class SDE(NamedTuple):
    r"""$dX = f\,dt + g\,dW$ as two per-sample functions: `sample_sde(key, *sde, x0)`.

    Attributes:
        drift: $f(t, x, \text{args})$, with the shape of `x`.
        diffusion: $g(t, x, \text{args})$, a scalar or an array broadcastable to `x`.
    """

    drift: VelocityFn
    diffusion: DiffusionFn


def get_sde_solver(solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver from a name in `SDE_SOLVERS`, or the solver itself."""
    return _solver("sde_solver", solver)


def _drift_evaluations_per_step(solver: diffrax.AbstractSolver) -> int:
    """Drift evaluations per step, or -1 where the solver's count is not known."""
    if isinstance(solver, diffrax.Euler | diffrax.EulerHeun | diffrax.ItoMilstein):
        return 1
    if isinstance(solver, diffrax.AbstractSRK):
        ignored = solver.tableau.ignore_stage_f
        return len(solver.tableau.b_sol) - (
            0 if ignored is None else int(ignored.sum())
        )
    per_step = evaluations_per_step(solver)
    if per_step is None or per_step[1] != 0:
        return -1
    return per_step[0]


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


def _check_callables(**fns):
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"{name} must be a callable {name}(t, x, args).")


def _check_key(key) -> PRNGKeyArray:
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if jnp.shape(key) != ():
            raise ValueError(
                f"key must be a single key, got an array of keys of shape "
                f"{jnp.shape(key)}; pass one key (jax.vmap over keys to draw batches "
                "of batches)."
            )
        return key
    if dtype == jnp.uint32 and jnp.ndim(key) == 1:
        try:
            return jax.random.wrap_key_data(key)
        except (TypeError, ValueError):
            pass
    got = type(key).__name__
    if dtype is not None:
        got += f" of dtype {dtype} and shape {jnp.shape(key)}"
    raise TypeError(f"key must be a JAX PRNG key, e.g. jax.random.key(0), got {got}.")


@eqx.filter_jit
def _solve(
    drift,
    diffusion,
    solver,
    key,
    x0,
    args,
    t0,
    t1,
    dt0,
    saveat,
    brownian,
    tol,
    max_steps,
):
    shape = jtu.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), x0)
    levy_area = _levy_area(solver)
    if brownian == "increments":
        path = diffrax.UnsafeBrownianPath(shape, key, levy_area=levy_area)
        adjoint = diffrax.ForwardMode()
    else:
        path = diffrax.VirtualBrownianTree(t0, t1, tol, shape, key, levy_area=levy_area)
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    sol = diffrax.diffeqsolve(
        diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, path)),
        solver,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=x0,
        args=args,
        saveat=saveat,
        stepsize_controller=diffrax.ConstantStepSize(),
        adjoint=adjoint,
        max_steps=max_steps,
    )
    return sol.ts, sol.ys, sol.stats["num_steps"]


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
    brownian: Literal["increments", "tree"] = "increments",
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
        x0: the starting batch, batch-first; may be a pytree of such arrays.
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
        brownian: `"increments"` draws an independent Gaussian increment per step
            (`diffrax.UnsafeBrownianPath`; fastest, not reverse-mode
            differentiable); `"tree"` samples one Brownian path per key at any
            resolution (`diffrax.VirtualBrownianTree`; slower, differentiable,
            consistent across step counts).
        brownian_tol: the tree's time resolution; default half a step.

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
    key = _check_key(key)
    _check_callables(drift=drift, diffusion=diffusion)
    leaves = jtu.tree_leaves(x0)
    if not leaves or any(jnp.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError(
            "x0 must be a batch-first array (batch, *event_shape) or a pytree of them."
        )
    if len({jnp.shape(leaf)[0] for leaf in leaves}) != 1:
        raise ValueError("every leaf of x0 must have the same batch size.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    if not float(t0) < float(t1):
        raise ValueError(
            f"sample_sde integrates forward in time: need t0 < t1, got t0={t0}, "
            f"t1={t1}."
        )
    if brownian not in ("increments", "tree"):
        raise ValueError(f"brownian must be 'increments' or 'tree', got {brownian!r}.")
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

    dt0 = (float(t1) - float(t0)) / steps
    tol = None
    if brownian_tol is not None and brownian != "tree":
        raise ValueError("brownian_tol applies only to brownian='tree'.")
    if brownian == "tree":
        tol = 0.5 * dt0 if brownian_tol is None else brownian_tol
        if not tol > 0:
            raise ValueError(f"brownian_tol must be positive, got {brownian_tol!r}.")
        tol = jnp.asarray(tol, time_dtype)
    if save_trajectory is False:
        saveat = diffrax.SaveAt(t1=True)
    else:
        if save_trajectory is True:
            n_save = steps + 1
        elif isinstance(save_trajectory, int) and save_trajectory >= 2:
            n_save = save_trajectory
        else:
            raise ValueError(
                "save_trajectory must be a bool or an int >= 2, "
                f"got {save_trajectory!r}."
            )
        saveat = diffrax.SaveAt(ts=jnp.linspace(t0, t1, n_save, dtype=time_dtype))

    # Times and step are traced, so a new step count or time span reuses the
    # compiled solve; a new shape, solver, drift or diffusion function recompiles.
    ts, ys, num_steps = _solve(
        _BatchedDrift(drift),
        batched_diffusion,
        solver_obj,
        key,
        x0,
        args,
        jnp.asarray(t0, time_dtype),
        jnp.asarray(t1, time_dtype),
        jnp.asarray(dt0, time_dtype),
        saveat,
        brownian,
        tol,
        max(steps, _MAX_STEPS),  # static: only more than _MAX_STEPS steps recompile
    )
    per_step = _drift_evaluations_per_step(solver_obj)
    nfe = num_steps * per_step if per_step > 0 else -jnp.ones_like(num_steps)
    if save_trajectory is False:
        final = jtu.tree_map(lambda y: y[0], ys)
        return SDESolution(final, None, None, nfe, num_steps)
    final = jtu.tree_map(lambda y: y[-1], ys)
    return SDESolution(final, ts, ys, nfe, num_steps)
