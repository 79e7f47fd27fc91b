r"""Reflow (rectified flow, Liu, Gong & Liu 2023): straighten a flow by retraining.

A trained velocity field $v$ couples each source point $x_0$ with the end
$x_1 = X_v(0, 1, x_0)$ of its ODE trajectory. Flow matching on the straight line
between these pairs (`ReflowLoss`) learns a field with the same marginals and
straighter paths: trajectories of the new field cross less, so a few Euler steps
(`EulerMap`) get close to its ODE. `reflow` runs $k$ rounds, each student
initialised from the previous model and becoming the next round's teacher.
"""

import time
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _checks
from ..data import AbstractSampler, Empirical
from ..losses import AbstractPairLoss, ModelFn, WeightFn
from ..losses._targets import AbstractTarget, check_target
from ..losses.flow_matching import _prediction
from ..paths import AbstractPath
from ..sampling import sample_ode
from ..time_samplers import TimeSampler, UniformTime
from ._losses import _cond_ot_path
from ._maps import EulerMap, Teacher

__all__ = ["ReflowLoss", "ReflowRound", "reflow", "reflow_pairs"]


def reflow_pairs(
    key: PRNGKeyArray,
    teacher: Teacher,
    source: AbstractSampler,
    n: int,
    *,
    solver: str = "dopri5",
    steps: int | None = None,
    chunk: int = 8192,
) -> Float[Array, "n 2 *event"]:
    """`n` pairs `(x0, X(0, 1, x0))`, `x0 ~ source`, stacked on axis 1.

    The teacher's ODE is solved with `sample_ode(solver, steps)` in chunks of
    `chunk` rows. The result is what `ReflowLoss` trains on, e.g. through
    `fit(..., target=data.Empirical(pairs), source=None)`.
    """
    _checks.key(key)
    check_teacher_solve(teacher, source, n, chunk)
    x0 = source.sample(key, n)
    return jnp.stack([x0, solve_teacher(teacher, x0, solver, steps, chunk)], axis=1)


def check_teacher_solve(teacher: Any, source: Any, n: int, chunk: int) -> None:
    """The arguments of a teacher's ODE solve from `n` points of `source`."""
    _checks.positive_int("n", n)
    _checks.positive_int("chunk", chunk)
    _checks.sampler("source", source, AbstractSampler)
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must be a flowlab.flowmaps.Teacher, got {type(teacher).__name__}."
        )
    teacher.check("teacher", source.event_shape)


def solve_teacher(
    teacher: Teacher,
    x0: Array,
    solver: str,
    steps: int | None,
    chunk: int,
    save: int | None = None,
) -> Array:
    """The teacher's ODE from `x0` over `[0, 1]`, `chunk` rows at a time.

    The ends `(n, *event)`, or with `save` the `save` equally spaced points of
    each trajectory, `(n, save, *event)`.
    """
    out = []
    for start in range(0, x0.shape[0], chunk):
        sol = sample_ode(
            teacher.v, x0[start : start + chunk], teacher.args, solver=solver,
            steps=steps, save_trajectory=save or False,
        )  # fmt: skip
        out.append(sol.x if save is None else jnp.swapaxes(sol.trajectory, 0, 1))
    return jnp.concatenate(out)


class ReflowLoss(AbstractPairLoss):
    """Flow matching on given pairs: the batch stacks `(x0, x1)` on axis 1.

    Attributes:
        path: the path between each pair (default Cond-OT, the straight line).
        prediction: what the model outputs (default the velocity).
        time_sampler: law of the training times.
        weight_fn: optional weight $w(t)$ of each row.
    """

    path: AbstractPath = eqx.field(default_factory=_cond_ot_path)
    prediction: AbstractTarget = eqx.field(
        static=True, default="velocity", converter=_prediction
    )
    time_sampler: TimeSampler = eqx.field(static=True, default=UniformTime())
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_target(self.prediction, self.path)

    def marginals(self, key, source, pairs):
        """`(x0, x1)` read from the batch, shape `(batch, 2, *event)`."""
        del key
        if source is not None:
            raise ValueError(
                "ReflowLoss reads x0 and x1 from the batch (reflow_pairs): pass "
                "source=None."
            )
        if jnp.ndim(pairs) < 3 or jnp.shape(pairs)[1] != 2:
            raise ValueError(
                "a ReflowLoss batch stacks (x0, x1) on axis 1, shape (batch, 2, "
                f"*event), got {jnp.shape(pairs)}."
            )
        return pairs[:, 0], pairs[:, 1]


class ReflowRound(NamedTuple):
    """One round of `reflow`: the student, its pairs' teacher solve and training."""

    params: Any
    history: list
    pair_seconds: float
    train_seconds: float


def reflow(
    key: PRNGKeyArray,
    model_fn: ModelFn,
    params: Any,
    teacher: Teacher,
    *,
    source: AbstractSampler,
    rounds: int = 1,
    pairs: int = 50_000,
    steps: int,
    batch_size: int,
    solver: str = "dopri5",
    solver_steps: int | None = None,
    **fit_kwargs: Any,
) -> list[ReflowRound]:
    """`rounds` rounds of reflow from `teacher`; each student is the next teacher.

    Round `r` draws `pairs` pairs with the current teacher (`reflow_pairs`), then
    trains `model_fn` from the previous round's parameters (`params` in the first)
    for `steps` steps of `ReflowLoss` with `fit` (the pairs are solved with
    `solver`, in `solver_steps` fixed steps when given); the next teacher is the
    student's EMA velocity `model_fn(ema_params, t, x, None)`. `fit_kwargs` go to
    `fit` (e.g. `optimizer`, `progress=False`).
    """
    from ..training import fit

    _checks.key(key)
    _checks.positive_int("rounds", rounds)
    out: list[ReflowRound] = []
    for r in range(rounds):
        k_pairs, k_fit = jax.random.split(jax.random.fold_in(key, r))
        t0 = time.perf_counter()
        data = reflow_pairs(
            k_pairs, teacher, source, pairs, solver=solver, steps=solver_steps
        )
        jax.block_until_ready(data)
        t1 = time.perf_counter()
        result = fit(
            model_fn, params, ReflowLoss(), source=None, target=Empirical(data),
            key=k_fit, steps=steps, batch_size=batch_size, **fit_kwargs,
        )  # fmt: skip
        jax.block_until_ready(result.state.ema_params)
        params = result.state.ema_params
        out.append(
            ReflowRound(params, result.history, t1 - t0, time.perf_counter() - t1)
        )
        teacher = Teacher(EulerMap(model_fn).velocity_field(), params)
    return out
