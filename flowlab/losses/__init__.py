r"""Regression losses: what the trainer minimises.

Every loss is an `AbstractLoss` (`marginals`, `prepare`, `regress`; see
`flowlab.losses._base`), so `flowlab.training.make_train_step` and `fit` take any
of them, a user's own included:

| loss | regresses |
| :--- | :--- |
| `FlowMatchingLoss(path, prediction)` | a path's velocity, data, noise or score |
| `InterpolantLoss(interpolant, prediction)` | $b$, $\eta$, $s$ or $(v, \eta)$ |
| `MultimarginalLoss(interpolant)` | $E[x_k \mid x(\alpha)]$, $k = 0, \dots, K$ |

The per-sample loss is the mean squared error over the event dimensions (the
convention of torchcfm and flow_matching), times an optional weight, and the batch
loss is its mean. What a model predicts is a small class (`Velocity`, `Data`,
`Noise`, `Score`, `TwoField`, or its name; see `flowlab.losses._targets`). Time
samplers live in `flowlab.time_samplers` (re-exported here).
"""

from ..time_samplers import (
    TimeSampler,
    get_time_sampler,
    logit_normal_time,
    uniform_time,
)
from ._base import (
    AbstractLoss,
    AbstractPairLoss,
    AbstractSquaredErrorLoss,
    LossAux,
    ModelFn,
    WeightFn,
    draw_source,
    squared_error,
)
from ._targets import (
    AbstractFieldTarget,
    AbstractNoiseTarget,
    AbstractTarget,
    Data,
    Noise,
    Score,
    TwoField,
    Velocity,
)
from .flow_matching import PREDICTIONS, FlowMatchingLoss
from .interpolant import (
    INTERPOLANT_PREDICTIONS,
    INTERPOLANT_T_EPS,
    InterpolantLoss,
    noise_weight,
)
from .multimarginal import MultimarginalLoss

__all__ = [
    "INTERPOLANT_PREDICTIONS",
    "INTERPOLANT_T_EPS",
    "PREDICTIONS",
    "AbstractFieldTarget",
    "AbstractLoss",
    "AbstractNoiseTarget",
    "AbstractPairLoss",
    "AbstractSquaredErrorLoss",
    "AbstractTarget",
    "Data",
    "FlowMatchingLoss",
    "InterpolantLoss",
    "LossAux",
    "ModelFn",
    "MultimarginalLoss",
    "Noise",
    "Score",
    "TimeSampler",
    "TwoField",
    "Velocity",
    "WeightFn",
    "draw_source",
    "get_time_sampler",
    "logit_normal_time",
    "noise_weight",
    "squared_error",
    "uniform_time",
]
