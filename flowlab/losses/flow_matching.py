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

from typing import ClassVar

import equinox as eqx
from jaxtyping import Array, Float

from ..paths import AbstractPath, AffinePath, PathSample
from ..time_samplers import TimeSampler, UniformTime
from ._base import AbstractPairLoss, WeightFn

__all__ = ["PREDICTIONS", "FlowMatchingLoss"]

PREDICTIONS = ("velocity", "x1", "x0", "epsilon", "score")
"""What a model may predict; `epsilon` is `x0` for a Gaussian source."""


class FlowMatchingLoss(AbstractPairLoss):
    r"""The conditional flow-matching regression on a path.

    Attributes:
        path: the probability path.
        prediction: what the model outputs, one of `PREDICTIONS`.
        time_sampler: `(key, n) -> t`, default uniform on $[0, 1]$.
        weight_fn: optional $w(t)$ multiplying each sample's squared error.

    Call it as `loss(model_fn, params, key, x0, x1, cond)` on a batch (batch-first
    arrays; `cond` is `None` or a pytree with the same leading axis); it returns the
    scalar loss and a `LossAux`. The trainer calls its parts: `marginals` (draw
    `x0` for a batch of `x1`), `prepare` (times, path samples, targets) and
    `regress` (the model's error, differentiated).
    """

    path: AbstractPath
    prediction: str = eqx.field(static=True, default="velocity")
    time_sampler: TimeSampler = eqx.field(static=True, default=UniformTime())
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)
    stacked: ClassVar[bool] = False

    def __check_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}."
            )
        if self.prediction != "velocity" and not isinstance(self.path, AffinePath):
            raise ValueError(
                f"prediction={self.prediction!r} needs an AffinePath; "
                f"{type(self.path).__name__} supports prediction='velocity'."
            )

    def target(self, ps: PathSample) -> Float[Array, "*event"]:
        """The regression target of one path sample for this loss's prediction."""
        if self.prediction == "velocity":
            return ps.ut
        if self.prediction == "x1":
            return ps.x1
        if self.prediction in ("x0", "epsilon"):
            return ps.x0
        return -ps.x0 / self.path.schedule(ps.t).sigma
