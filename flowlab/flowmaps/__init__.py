r"""Few-step generation: flow maps `X(t, s, x)` and the losses that train them.

A flow map jumps a point from time `t` to time `s` in one network evaluation, so a
sample takes 1, 2 or 4 evaluations instead of an ODE solve's hundred. Every map is
called per sample as `flow_map(params, t, s, x, cond)` and satisfies
`X(t, t, x) = x`; `sample_flow_map` jumps a batch through any monotone list of
times.

- Maps (`flowlab.flowmaps._maps`): `AverageVelocityMap(model_fn)` (a network of
  the average velocity over `[t, s]`, `init_flow_map`), `EulerMap(model_fn)` (one
  Euler step of a velocity model), and `Teacher(v, args)`, a velocity to distil.
- Losses through `fit` (`flowlab.flowmaps._losses`): `MeanFlowLoss`,
  `ShortcutLoss`, `ConsistencyTraining`, `ConsistencyDistillation`,
  `LagrangianDistillation`, `EulerianDistillation`.
- Reflow (`flowlab.flowmaps._reflow`): `reflow_pairs`, `ReflowLoss`, `reflow`
  (`k` rounds).
- Trajectory distillation (`flowlab.flowmaps._trajectory`): `teacher_trajectories`
  on a time grid and `TrajectoryDistillation`, the map regressed on their jumps.

See the "Few-step sampling" page of the docs for the mathematics and when to use
which.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from .. import registry
from ..losses import FlowMatchingLoss
from ._losses import (
    AbstractFlowMapLoss,
    AbstractPathFlowMapLoss,
    ConsistencyDistillation,
    ConsistencyTraining,
    EulerianDistillation,
    FlowMapTimes,
    LagrangianDistillation,
    MeanFlowLoss,
    ShortcutLoss,
)
from ._maps import (
    AbstractFlowMap,
    AverageVelocityMap,
    EulerMap,
    InstantaneousField,
    Teacher,
    check_time,
)
from ._reflow import ReflowLoss, ReflowRound, reflow, reflow_pairs
from ._sample import FlowMapSolution, flow_map_times, sample_flow_map
from ._trajectory import GridJump, TrajectoryDistillation, teacher_trajectories

__all__ = [
    "AbstractFlowMap",
    "AbstractFlowMapLoss",
    "AbstractPathFlowMapLoss",
    "AverageVelocityMap",
    "ConsistencyDistillation",
    "ConsistencyTraining",
    "EulerMap",
    "EulerianDistillation",
    "FlowMapSolution",
    "FlowMapTimes",
    "GridJump",
    "InstantaneousField",
    "LagrangianDistillation",
    "MeanFlowLoss",
    "ReflowLoss",
    "ReflowRound",
    "ShortcutLoss",
    "Teacher",
    "TrajectoryDistillation",
    "check_time",
    "flow_map_times",
    "init_flow_map",
    "reflow",
    "reflow_pairs",
    "sample_flow_map",
    "teacher_trajectories",
]


def init_flow_map(
    module: nn.Module,
    key: PRNGKeyArray,
    x: Array,
    cond: Any = None,
    *,
    velocity_params: PyTree | None = None,
) -> tuple[AverageVelocityMap, Any, PyTree]:
    """Initialise a flax network of two times as an `AverageVelocityMap`.

    `module(times, x, cond)` acts on one sample with `times = (t, s - t)`
    (`flowlab.models.MLP` and `UNet` take a vector of times). With
    `velocity_params`, the parameters of the same module trained as a velocity
    model (one time: a teacher), the map starts from them
    (`module.two_time_params`, e.g. `MLP.two_time_params`): one Euler step of the
    teacher, which the losses then refine; `key` is then unused.

    Returns:
        `(flow_map, model_fn, params)`: the map to sample with, and the per-sample
        network `model_fn(params, times, x, cond)` and parameters to `fit` with a
        flow-map loss.
    """
    from ..models import apply_fn

    x = jnp.asarray(x)
    model_fn = apply_fn(module)
    if velocity_params is not None:
        if not hasattr(module, "two_time_params"):
            raise TypeError(
                f"velocity_params: {type(module).__name__} has no two_time_params "
                "method to turn a one-time network's parameters into two-time ones; "
                "initialise from a key instead."
            )
        params = module.two_time_params(velocity_params, x.size)
        return AverageVelocityMap(model_fn), model_fn, params
    variables = module.init(key, jnp.zeros((2,), x.dtype), x, cond)
    return AverageVelocityMap(model_fn), model_fn, variables["params"]


for _name, _cls in (
    ("flow_matching", FlowMatchingLoss),
    ("mean_flow", MeanFlowLoss),
    ("shortcut", ShortcutLoss),
    ("consistency_training", ConsistencyTraining),
):
    registry.register("loss", _name, _cls)
