r"""Trajectory distillation: regress a flow map on a teacher's ODE solutions.

The teacher's ODE is solved once from `n` source points and saved on the grid
$t_k = k / K$, $k = 0, \dots, K$ (`teacher_trajectories`). `TrajectoryDistillation`
then regresses the map on jumps between grid points,

$$X(t_i, t_j, x_{t_i}) \approx x_{t_j}, \qquad i < j,$$

with $(i, j)$ drawn uniformly among the $K (K + 1) / 2$ ordered pairs. Luhman &
Luhman (2021) distil the one jump $0 \to 1$ of a teacher this way; regressing every
pair of a grid trains the samplers whose times lie on it at once ($K = 8$: 1, 2, 4
and 8 jumps). The targets are the teacher's own solutions, so the student can be
no better than the teacher's solve (pick its `solver` for that), and its start
points are only those on the teacher's trajectories.
"""

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import _checks
from ..data import AbstractSampler
from ..losses import WeightFn
from ..losses._base import Regression
from ._losses import AbstractFlowMapLoss, FlowMapTimes, _mse
from ._maps import Teacher
from ._reflow import check_teacher_solve, solve_teacher

__all__ = ["GridJump", "TrajectoryDistillation", "teacher_trajectories"]


def teacher_trajectories(
    key: PRNGKeyArray,
    teacher: Teacher,
    source: AbstractSampler,
    n: int,
    *,
    grid: int = 8,
    solver: str = "dopri5",
    steps: int | None = None,
    chunk: int = 8192,
) -> Float[Array, "n k *event"]:
    """`n` teacher trajectories from `x0 ~ source`, on the grid `k / grid`.

    The result has shape `(n, grid + 1, *event)`: row `r` holds the teacher's ODE
    solution from `x0[r]` at times `0, 1/grid, ..., 1` (`sample_ode(solver,
    steps)`, `chunk` rows at a time). It is what `TrajectoryDistillation` trains
    on, through `fit(..., target=data.Empirical(trajectories), source=None)`.
    """
    _checks.key(key)
    _checks.positive_int("grid", grid)
    check_teacher_solve(teacher, source, n, chunk)
    x0 = source.sample(key, n)
    return solve_teacher(teacher, x0, solver, steps, chunk, save=grid + 1)


class GridJump(NamedTuple):
    """The jumps of a `TrajectoryDistillation` batch: grid indices and starts.

    Attributes:
        start: `(batch,)` int, the grid index `i` of each row's start.
        end: `(batch,)` int, the grid index `j > i` of each row's end.
        xt: `(batch, *event)`, the start points: each trajectory at `t_i`.
    """

    start: Int[Array, " batch"]
    end: Int[Array, " batch"]
    xt: Float[Array, "batch *event"]


def _check_trajectories(trajectories: Any) -> None:
    shape = jnp.shape(trajectories)
    if len(shape) < 3 or shape[1] < 2:
        raise ValueError(
            "a TrajectoryDistillation batch stacks each trajectory's grid points on "
            "axis 1, shape (batch, grid + 1, *event) with grid >= 1 "
            f"(teacher_trajectories), got {shape}."
        )


class TrajectoryDistillation(AbstractFlowMapLoss):
    r"""Regress the map on jumps between the grid points of teacher trajectories.

    A batch holds trajectories on the uniform grid $t_k = k / K$, shape
    `(batch, K + 1, *event)` (`teacher_trajectories`). Each row draws one ordered
    pair $i < j$ uniformly and contributes
    $\mathrm{mean}|X(t_i, t_j, x_{t_i}) - x_{t_j}|^2$. Train it with `fit(...,
    source=None, target=data.Empirical(trajectories))`; a map initialised from the
    teacher's weights (`init_flow_map(..., velocity_params=)`) starts at one Euler
    step of the teacher and trains fastest.

    Attributes:
        weight_fn: optional weight $w(t_i)$ of each row.
    """

    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def marginals(
        self, key: PRNGKeyArray, source: Any, trajectories: Array
    ) -> tuple[Array]:
        """`(trajectories,)`, read from the batch; `source` must be `None`."""
        del key
        if source is not None:
            raise ValueError(
                "TrajectoryDistillation reads its points from the batch "
                "(teacher_trajectories): pass source=None."
            )
        _check_trajectories(trajectories)
        return (trajectories,)

    def prepare(
        self, key: PRNGKeyArray, trajectories: Float[Array, "batch k *event"]
    ) -> tuple[FlowMapTimes, GridJump, Float[Array, "batch *event"]]:
        """One ordered pair of grid points per row: times, starts and ends."""
        _check_trajectories(trajectories)
        b, k = trajectories.shape[:2]
        pairs = jnp.array([(i, j) for i in range(k) for j in range(i + 1, k)])
        i, j = pairs[jax.random.randint(key, (b,), 0, len(pairs))].T
        rows = jnp.arange(b)
        grid = jnp.linspace(0.0, 1.0, k, dtype=trajectories.dtype)
        t, s = grid[i], grid[j]
        jump = GridJump(i, j, trajectories[rows, i])
        return FlowMapTimes(t, s, t), jump, trajectories[rows, j]

    def error(self, fmap, params, t, s, m, x, target, cond):
        del m
        return _mse(fmap(params, t, s, x, cond), target)

    def __call__(self, model_fn, params, key, trajectories, cond=None) -> Regression:
        """The loss on a batch of trajectories: `prepare`, then `regress`."""
        t, jump, target = self.prepare(key, trajectories)
        return self.regress(model_fn, params, t, jump.xt, target, cond)
