r"""The loss interface and what the built-in losses share.

A loss tells the trainer, in order, how to turn a batch into a regression:

1. `marginals(key, source, x1)`: the marginal batches from the data batch (for a
   pair loss `(x0, x1)` with `x0 ~ source`); a coupling may then re-pair them;
2. `prepare(key, *marginals) -> (t, sample, target)`: everything random (times,
   path samples, targets), drawn once for the whole batch so that it can be
   regressed in micro-batches; `sample.xt` is the model's input;
3. `regress(model_fn, params, t, xt, target, cond) -> (loss, LossAux)`: the error
   of the model, the function the trainer differentiates.

A model is a pure per-sample function `model_fn(params, t, x, cond)`; a loss
batches it with `jax.vmap`.
"""

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..paths import AbstractPath, PathSample
from ..time_samplers import TimeSampler
from ._targets import AbstractTarget

__all__ = [
    "AbstractLoss",
    "AbstractPairLoss",
    "AbstractSquaredErrorLoss",
    "LossAux",
    "ModelFn",
    "WeightFn",
    "draw_source",
    "squared_error",
]

ModelFn = Callable[[PyTree, Float[Array, ""], Float[Array, "*event"], Any], Array]
"""A per-sample model `model_fn(params, t, x, cond) -> prediction`."""

WeightFn = Callable[[Array], Array]
r"""A per-sample weight $w(t)$ of the squared error."""


class LossAux(NamedTuple):
    """What a loss call saw, for logging: times and per-sample losses."""

    t: Float[Array, " batch"]
    per_sample: Float[Array, " batch"]


Regression = tuple[Float[Array, ""], LossAux]
"""What `regress` returns: the scalar loss and its `LossAux`."""


def draw_source(
    key: PRNGKeyArray, source: Any, x1: Float[Array, "batch *event"]
) -> tuple[Float[Array, "batch *event"], Float[Array, "batch *event"]]:
    """`(x0, x1)` with `x0 = source.sample(key, batch)` in `x1`'s dtype.

    The two-marginal losses' `marginals`: the trainer's batch holds `x1`, and `x0`
    comes from the source.
    """
    if source is None:
        raise ValueError(
            "this loss transports a source to the data: pass source=, a sampler of "
            "x0 (e.g. flowlab.data.Gaussian(dim))."
        )
    x0 = source.sample(key, x1.shape[0]).astype(x1.dtype)
    if x0.shape != x1.shape:
        raise ValueError(
            f"the source draws samples of shape {x0.shape[1:]} but the data has "
            f"shape {x1.shape[1:]}."
        )
    return x0, x1


def squared_error(
    model_fn: ModelFn,
    params: PyTree,
    t: Array,
    xt: Array,
    target: Array,
    cond: PyTree | None,
    weight_fn: WeightFn | None,
    stacked: bool,
    error_fn: Callable[[Array, Array, Array], Array] | None = None,
) -> tuple[Float[Array, ""], LossAux]:
    """Mean weighted squared error; with `stacked`, summed over axis 1 of target.

    The per-sample error is the mean over the event dimensions (per field, then
    summed over the fields of a stacked target), or `error_fn(xt, pred, target)`
    on one sample when given (a path's `squared_error`), times `weight_fn(t)`.
    """
    cond_axis = None if cond is None else 0
    pred = jax.vmap(model_fn, in_axes=(None, 0, 0, cond_axis))(params, t, xt, cond)
    if stacked and isinstance(pred, tuple | list):
        pred = jnp.stack(pred, axis=1)
    if pred.shape != target.shape:
        raise ValueError(
            f"model output shape {pred.shape[1:]} does not match the target's "
            f"shape {target.shape[1:]} (per sample)."
        )
    pred = pred.astype(target.dtype)
    if error_fn is not None and not stacked:
        per_sample = jax.vmap(error_fn)(xt, pred, target)
    else:
        axes = tuple(range(2 if stacked else 1, target.ndim))
        per_sample = jnp.mean((pred - target) ** 2, axis=axes)
    if stacked:
        per_sample = jnp.sum(per_sample, axis=1)
    if weight_fn is not None:
        per_sample = per_sample * jax.vmap(weight_fn)(t)
    return jnp.mean(per_sample), LossAux(t, per_sample)


class AbstractLoss(eqx.Module):
    """A regression the trainer (`make_train_step`, `fit`) runs.

    Subclasses implement `marginals`, `prepare` and `regress` (module docstring);
    `weight_fn` is the optional weight of each sample's error, `None` for none.
    """

    weight_fn: eqx.AbstractVar[WeightFn | None]

    def check_event_shape(self, event_shape: tuple[int, ...]) -> None:
        """A `ValueError` if this loss cannot train on samples of `event_shape`.

        `fit` calls it with its target sampler's event shape before any work (a
        distillation loss checks its teacher); the default accepts any.
        """
        del event_shape

    @abc.abstractmethod
    def marginals(self, key: PRNGKeyArray, source: Any, x1: Array) -> tuple[Array, ...]:
        """The marginal batches a coupling may re-pair, from a data batch `x1`."""

    @abc.abstractmethod
    def prepare(self, key: PRNGKeyArray, *marginals: Array) -> tuple[Any, Any, Any]:
        """`(t, sample, target)` for the batch; `sample.xt` is the model's input."""

    @abc.abstractmethod
    def regress(
        self,
        model_fn: ModelFn,
        params: PyTree,
        t: Any,
        xt: Array,
        target: Any,
        cond: PyTree | None = None,
    ) -> Regression:
        """The scalar loss of the model at `(t, xt)` against `target`, and its aux."""


class AbstractSquaredErrorLoss(AbstractLoss):
    """A loss whose `regress` is the mean weighted squared error (`squared_error`).

    Subclasses say with `stacked` whether a target holds several fields along its
    first axis (each one's mean squared error summed).
    """

    @property
    @abc.abstractmethod
    def stacked(self) -> bool:
        """Whether a target stacks several fields on its first axis."""

    def regress(self, model_fn, params, t, xt, target, cond=None) -> Regression:
        """The mean weighted squared error of the model at `(t, xt)` to `target`."""
        return squared_error(
            model_fn, params, t, xt, target, cond, self.weight_fn, self.stacked
        )


class AbstractPairLoss(AbstractSquaredErrorLoss):
    """A regression on a path between `x0 ~ source` and the data `x1`.

    Subclasses hold a `path`, a `prediction` (an `AbstractTarget`: what the model
    predicts, which gives the target of each path sample) and a `time_sampler`.
    """

    path: eqx.AbstractVar[AbstractPath]
    prediction: eqx.AbstractVar[AbstractTarget]
    time_sampler: eqx.AbstractVar[TimeSampler]

    @property
    def stacked(self) -> bool:
        """Whether a target stacks several fields on its first axis."""
        return self.prediction.stacked

    def target(self, ps: PathSample) -> Array:
        """The regression target of one path sample for this loss's prediction."""
        return self.prediction(self.path, ps)

    def regress(self, model_fn, params, t, xt, target, cond=None) -> Regression:
        """The mean weighted error of the model, in the path's `squared_error`."""
        return squared_error(
            model_fn, params, t, xt, target, cond, self.weight_fn, self.stacked,
            self.path.squared_error,
        )  # fmt: skip

    def marginals(
        self, key: PRNGKeyArray, source: Any, x1: Float[Array, "batch *event"]
    ) -> tuple[Float[Array, "batch *event"], Float[Array, "batch *event"]]:
        """What `prepare` takes, from a batch `x1`: `(x0, x1)`, `x0 ~ source`."""
        return draw_source(key, source, x1)

    def prepare(
        self,
        key: PRNGKeyArray,
        x0: Float[Array, "batch *event"],
        x1: Float[Array, "batch *event"],
    ) -> tuple[Float[Array, " batch"], PathSample, Float[Array, "batch *target"]]:
        """Draw times and path samples for a batch: `(t, path_sample, target)`.

        Everything random about the loss happens here, so a batch can be prepared
        once and regressed in micro-batches (gradient accumulation).
        """
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {x0.shape} and {x1.shape}."
            )
        n = x1.shape[0]
        key_t, key_path = jax.random.split(key)
        t = self.time_sampler(key_t, n).astype(x1.dtype)
        ps = jax.vmap(self.path.sample)(jax.random.split(key_path, n), x0, x1, t)
        return t, ps, jax.vmap(self.target)(ps)

    def __call__(
        self,
        model_fn: ModelFn,
        params: PyTree,
        key: PRNGKeyArray,
        x0: Float[Array, "batch *event"],
        x1: Float[Array, "batch *event"],
        cond: PyTree | None = None,
    ) -> tuple[Float[Array, ""], LossAux]:
        """Mean weighted squared error over a batch: `prepare`, then `regress`."""
        t, ps, target = self.prepare(key, x0, x1)
        return self.regress(model_fn, params, t, ps.xt, target, cond)
