r"""Conditional flow-matching regression losses.

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
batch loss is its mean. A model is a pure per-sample function
`model_fn(params, t, x, cond)`; the loss batches it with `jax.vmap`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .paths import AbstractPath, AffinePath, PathSample

__all__ = [
    "PREDICTIONS",
    "FlowMatchingLoss",
    "LossAux",
    "ModelFn",
    "TimeSampler",
    "get_time_sampler",
    "logit_normal_time",
    "uniform_time",
]

ModelFn = Callable[[PyTree, Float[Array, ""], Float[Array, "*event"], Any], Array]
"""A per-sample model `model_fn(params, t, x, cond) -> prediction`."""

TimeSampler = Callable[[PRNGKeyArray, int], Float[Array, " n"]]
"""`time_sampler(key, n)` returns `n` times in $[0, 1]$."""

PREDICTIONS = ("velocity", "x1", "x0", "epsilon", "score")
"""What a model may predict; `epsilon` is `x0` for a Gaussian source."""


def uniform_time(t_min: float = 0.0, t_max: float = 1.0) -> TimeSampler:
    """Times uniform on `[t_min, t_max]`."""
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(
            f"uniform_time needs 0 <= t_min < t_max <= 1, got {t_min}, {t_max}."
        )

    def sample(key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        return jax.random.uniform(key, (n,), minval=t_min, maxval=t_max)

    return sample


def logit_normal_time(mean: float = 0.0, std: float = 1.0) -> TimeSampler:
    r"""Times $t = \mathrm{sigmoid}(m + s\,\xi)$, $\xi \sim N(0, 1)$ (Esser et al.)."""
    if not std > 0:
        raise ValueError(f"logit_normal_time needs std > 0, got {std}.")

    def sample(key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        return jax.nn.sigmoid(mean + std * jax.random.normal(key, (n,)))

    return sample


def get_time_sampler(name: str, **kwargs) -> TimeSampler:
    """A time sampler by name: `"uniform"` or `"logit_normal"`."""
    samplers = {"uniform": uniform_time, "logit_normal": logit_normal_time}
    if name not in samplers:
        raise ValueError(
            f"unknown time sampler {name!r}; expected one of {sorted(samplers)}."
        )
    return samplers[name](**kwargs)


class LossAux(NamedTuple):
    """What a loss call saw, for logging: times and per-sample losses."""

    t: Float[Array, " batch"]
    per_sample: Float[Array, " batch"]


class FlowMatchingLoss(eqx.Module):
    r"""The conditional flow-matching regression on a path.

    Attributes:
        path: the probability path.
        prediction: what the model outputs, one of `PREDICTIONS`.
        time_sampler: `(key, n) -> t`, default uniform on $[0, 1]$.
        weight_fn: optional $w(t)$ multiplying each sample's squared error.

    Call it as `loss(model_fn, params, key, x0, x1, cond)` on a batch (batch-first
    arrays; `cond` is `None` or a pytree with the same leading axis); it returns the
    scalar loss and a `LossAux`.
    """

    path: AbstractPath
    prediction: str = eqx.field(static=True, default="velocity")
    time_sampler: TimeSampler = eqx.field(static=True, default=uniform_time())
    weight_fn: Callable[[Array], Array] | None = eqx.field(static=True, default=None)

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

    def prepare(
        self,
        key: PRNGKeyArray,
        x0: Float[Array, "batch *event"],
        x1: Float[Array, "batch *event"],
    ) -> tuple[Float[Array, " batch"], PathSample, Float[Array, "batch *event"]]:
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

    def regress(
        self,
        model_fn: ModelFn,
        params: PyTree,
        t: Float[Array, " batch"],
        xt: Float[Array, "batch *event"],
        target: Float[Array, "batch *event"],
        cond: PyTree | None = None,
    ) -> tuple[Float[Array, ""], LossAux]:
        """The mean weighted squared error of the model at `(t, xt)` to `target`."""
        cond_axis = None if cond is None else 0
        pred = jax.vmap(model_fn, in_axes=(None, 0, 0, cond_axis))(params, t, xt, cond)
        if pred.shape != target.shape:
            raise ValueError(
                f"model output shape {pred.shape[1:]} does not match the target's "
                f"event shape {target.shape[1:]}."
            )
        axes = tuple(range(1, target.ndim))
        per_sample = jnp.mean((pred.astype(target.dtype) - target) ** 2, axis=axes)
        if self.weight_fn is not None:
            per_sample = per_sample * jax.vmap(self.weight_fn)(t)
        return jnp.mean(per_sample), LossAux(t, per_sample)

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
