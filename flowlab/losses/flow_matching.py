r"""The conditional flow-matching regression on a probability path.

A loss draws times, samples the path at those times, and regresses a model onto the
path's target for the quantity the model predicts:

| `prediction` | target, per sample |
|---|---|
| `"velocity"` | $u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0$ |
| `"x1"` (data) | $x_1$ |
| `"x0"` / `"epsilon"` (noise) | $x_0$ |
| `"score"` | $-x_0 / \sigma_t$ (conditional score for a standard normal source) |

The per-sample loss is the mean squared error over the event dimensions (the
convention of torchcfm and flow_matching), times an optional weight $w(t)$, and the
batch loss is its mean.
"""

import equinox as eqx

from ..paths import AbstractPath
from ..time_samplers import TimeSampler, UniformTime
from ._base import AbstractPairLoss, WeightFn
from ._targets import AbstractTarget, as_target, check_target

__all__ = ["PREDICTIONS", "FlowMatchingLoss"]

PREDICTIONS = ("velocity", "x1", "x0", "epsilon", "score")
"""What a model may predict; `epsilon` is `x0` for a Gaussian source."""


def _prediction(value) -> AbstractTarget:
    return as_target(value, PREDICTIONS)


class FlowMatchingLoss(AbstractPairLoss):
    r"""The conditional flow-matching regression on a path.

    Attributes:
        path: the probability path.
        prediction: what the model outputs: one of `PREDICTIONS` or an
            `AbstractTarget` (`Velocity()`, `Data()`, `Noise()`, `Score()`);
            all but the velocity need an `AffinePath` (or an interpolant). A
            trained model is sampled through
            `flowlab.sampling.velocity_field(fn, loss.path, loss.prediction)`.
        time_sampler: `(key, n) -> t`, default uniform on $[0, 1]$.
        weight_fn: optional $w(t)$ multiplying each sample's squared error.

    Call it as `loss(model_fn, params, key, x0, x1, cond)` on a batch (batch-first
    arrays; `cond` is `None` or a pytree with the same leading axis); it returns the
    scalar loss and a `LossAux`. The trainer calls its parts: `marginals` (draw
    `x0` for a batch of `x1`), `prepare` (times, path samples, targets) and
    `regress` (the model's error, differentiated).
    """

    path: AbstractPath
    prediction: AbstractTarget = eqx.field(
        static=True, default="velocity", converter=_prediction
    )
    time_sampler: TimeSampler = eqx.field(static=True, default=UniformTime())
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_target(self.prediction, self.path)
