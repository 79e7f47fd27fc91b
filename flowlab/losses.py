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
from .paths.interpolants import StochasticInterpolant
from .paths.multimarginal import MultimarginalInterpolant, MultimarginalSample

__all__ = [
    "INTERPOLANT_PREDICTIONS",
    "PREDICTIONS",
    "FlowMatchingLoss",
    "InterpolantLoss",
    "LossAux",
    "ModelFn",
    "MultimarginalLoss",
    "TimeSampler",
    "get_time_sampler",
    "logit_normal_time",
    "noise_weight",
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


def _draw_source(
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


class LossAux(NamedTuple):
    """What a loss call saw, for logging: times and per-sample losses."""

    t: Float[Array, " batch"]
    per_sample: Float[Array, " batch"]


def _regress_stacked(model_fn, params, t, xt, target, cond, weight_fn, stacked):
    """Mean weighted squared error; with `stacked`, summed over axis 1 of target."""
    cond_axis = None if cond is None else 0
    pred = jax.vmap(model_fn, in_axes=(None, 0, 0, cond_axis))(params, t, xt, cond)
    if stacked and isinstance(pred, tuple | list):
        pred = jnp.stack(pred, axis=1)
    if pred.shape != target.shape:
        raise ValueError(
            f"model output shape {pred.shape[1:]} does not match the target's "
            f"shape {target.shape[1:]} (per sample)."
        )
    axes = tuple(range(2 if stacked else 1, target.ndim))
    per_sample = jnp.mean((pred.astype(target.dtype) - target) ** 2, axis=axes)
    if stacked:
        per_sample = jnp.sum(per_sample, axis=1)
    if weight_fn is not None:
        per_sample = per_sample * jax.vmap(weight_fn)(t)
    return jnp.mean(per_sample), LossAux(t, per_sample)


class _PairLoss(eqx.Module):
    """What the two-marginal losses share: `marginals`, `prepare`, `regress`, call.

    A subclass has the fields `path`, `prediction`, `time_sampler`, `weight_fn` and
    defines `target(path_sample)`; `_stacked` says whether a target holds several
    fields along its first axis (summed after the per-field means).
    """

    @property
    def _stacked(self) -> bool:
        return False

    def marginals(
        self, key: PRNGKeyArray, source: Any, x1: Float[Array, "batch *event"]
    ) -> tuple[Float[Array, "batch *event"], Float[Array, "batch *event"]]:
        """What `prepare` takes, from a batch `x1`: `(x0, x1)`, `x0 ~ source`."""
        return _draw_source(key, source, x1)

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

    def regress(
        self,
        model_fn: ModelFn,
        params: PyTree,
        t: Float[Array, " batch"],
        xt: Float[Array, "batch *event"],
        target: Float[Array, "batch *target"],
        cond: PyTree | None = None,
    ) -> tuple[Float[Array, ""], LossAux]:
        """The mean weighted squared error of the model at `(t, xt)` to `target`."""
        return _regress_stacked(
            model_fn, params, t, xt, target, cond, self.weight_fn, self._stacked
        )

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


class FlowMatchingLoss(_PairLoss):
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


# ---------------------------------------------------------------------------------
# Stochastic interpolants and multimarginal interpolants
# ---------------------------------------------------------------------------------

INTERPOLANT_PREDICTIONS = ("velocity", "denoiser", "score", "two_field")
r"""What an interpolant model may predict: $b$, $\eta$, $s$, or the pair $(v, \eta)$."""

INTERPOLANT_T_EPS = 1e-3
r"""The interpolant losses draw $t \in [\epsilon, 1 - \epsilon]$ by default, where
$\dot\gamma$ of $\gamma = \sqrt{a t(1-t)}$ and the score target $-z/\gamma$ stay
finite."""


def noise_weight(path: StochasticInterpolant) -> Callable[[Array], Array]:
    r"""$\lambda(t) = \gamma(t)^2$ (or $\alpha(t)^2$ one-sided), for the score loss.

    $\lambda \,\|s_\theta - (-z/\gamma)\|^2 = \|\gamma s_\theta + z\|^2$ stays
    bounded as $\gamma \to 0$: [SF]$^2$M's weighting by the noise scale.
    """
    if not isinstance(path, StochasticInterpolant):
        raise TypeError("noise_weight needs a StochasticInterpolant.")

    def weight(t: Array) -> Array:
        return path.noise_scale(t)[0] ** 2

    return weight


class InterpolantLoss(_PairLoss):
    r"""Square-loss regressions of a stochastic interpolant's fields.

    | `prediction` | model output | per-sample target |
    |---|---|---|
    | `"velocity"` | $b$ | $u_t = \dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z$ |
    | `"denoiser"` | $\eta$ | $z$ |
    | `"score"` | $s$ | $-z / \gamma$ |
    | `"two_field"` | $(v, \eta)$ | $(\dot\alpha x_0 + \dot\beta x_1,\ z)$ |

    (one-sided: the noise is $x_0$ and $\gamma$ reads $\alpha$.) Albergo et al.'s
    objectives $E\int |b|^2 - 2\dot x_t \cdot b$ and $E\int |\eta|^2 - 2 z \cdot
    \eta$ are these square losses times the event size, minus a constant
    ($E|u_t|^2$, $E|z|^2$): the same minimisers, the conditional expectations.

    For `"two_field"` the model returns a pair `(v, eta)` or one array of shape
    `(2, *event)`; the per-sample loss is the sum of the two mean squared errors, and
    `path.two_field_to_velocity(t, x, v, eta)` gives $b = v + \dot\gamma\eta$.

    Attributes:
        path: a `StochasticInterpolant`.
        prediction: one of `INTERPOLANT_PREDICTIONS`.
        time_sampler: default uniform on $[10^{-3}, 1 - 10^{-3}]$.
        weight_fn: optional $\lambda(t)$ on each sample's error, e.g.
            `noise_weight(path)` for the score.

    Same interface as `FlowMatchingLoss` (`marginals`, `prepare`, `regress`,
    `__call__`), so `training.make_train_step` and `fit` take it unchanged.
    """

    path: StochasticInterpolant
    prediction: str = eqx.field(static=True, default="velocity")
    time_sampler: TimeSampler = eqx.field(
        static=True,
        default=uniform_time(INTERPOLANT_T_EPS, 1.0 - INTERPOLANT_T_EPS),
    )
    weight_fn: Callable[[Array], Array] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.path, StochasticInterpolant):
            raise TypeError(
                "path must be a flowlab.paths.StochasticInterpolant, got "
                f"{type(self.path).__name__}; use FlowMatchingLoss for other paths."
            )
        if self.prediction not in INTERPOLANT_PREDICTIONS:
            raise ValueError(
                f"prediction must be one of {INTERPOLANT_PREDICTIONS}, got "
                f"{self.prediction!r}."
            )

    @property
    def _stacked(self) -> bool:
        return self.prediction == "two_field"

    def target(self, ps: PathSample) -> Float[Array, "*target"]:
        """The regression target of one path sample (`(2, *event)` for two-field)."""
        if self.prediction == "velocity":
            return self.path.velocity_target(ps)
        if self.prediction == "denoiser":
            return self.path.denoiser_target(ps)
        if self.prediction == "score":
            return self.path.score_target(ps)
        v = self.path.interpolant_velocity_target(ps)
        return jnp.stack([v, self.path.denoiser_target(ps)])


class MultimarginalLoss(eqx.Module):
    r"""One regression per vertex: $g_k(\alpha, x) \approx E[x_k \mid x(\alpha)=x]$.

    The model is `model_fn(params, alpha, x, cond)` with `alpha` of shape `(K + 1,)`
    in the place of `t`, returning the stacked $(g_0, \dots, g_K)$, shape
    `(K + 1, *event)`, followed by $\eta$ when the interpolant has a `gamma_fn`
    (`interpolant.num_outputs` slices). The per-sample loss is
    $\sum_k \mathrm{mean}|g_k - x_k|^2$ (plus $\mathrm{mean}|\eta - z|^2$), times
    the optional `weight_fn(alpha)`.

    `prepare(key, xs)` takes the stacked marginals `xs` of shape
    `(batch, K + 1, *event)` (or a sequence of `K + 1` arrays `(batch, *event)`) and
    returns `(alpha, sample, target)`; `regress` has `FlowMatchingLoss.regress`'s
    signature with `alpha` for `t`.

    `training.make_train_step` and `fit` take it with `source=None` and batches (or
    a sampler) of the stacked marginals `(batch, K + 1, *event)` or `(xs, cond)`:
    `marginals` reads them all from the batch, and no coupling applies.
    """

    interpolant: MultimarginalInterpolant
    weight_fn: Callable[[Array], Array] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.interpolant, MultimarginalInterpolant):
            raise TypeError("interpolant must be a MultimarginalInterpolant.")

    def marginals(
        self, key: PRNGKeyArray, source: Any, xs: Float[Array, "batch k *event"]
    ) -> tuple[Float[Array, "batch k *event"]]:
        """What `prepare` takes, from a batch: `(xs,)`; every marginal is data.

        The trainer's batch holds all `K + 1` marginals stacked on axis 1, so there
        is no separate source: `source` must be `None` (`key` is not used).
        """
        del key
        if source is not None:
            raise ValueError(
                "MultimarginalLoss reads all K + 1 marginals from the batch, shape "
                "(batch, K + 1, *event); pass source=None and put the source "
                "marginal in the batch."
            )
        k = self.interpolant.num_marginals
        if jnp.ndim(xs) < 3 or jnp.shape(xs)[1] != k:
            raise ValueError(
                f"a MultimarginalLoss batch stacks the {k} marginals on axis 1, "
                f"shape (batch, {k}, *event), got {jnp.shape(xs)}."
            )
        return (xs,)

    def prepare(
        self, key: PRNGKeyArray, xs: Float[Array, "batch k *event"]
    ) -> tuple[
        Float[Array, "batch k"], MultimarginalSample, Float[Array, "batch o *e"]
    ]:
        """Draw simplex points and noise for a batch: `(alpha, sample, target)`."""
        k = self.interpolant.num_marginals
        if isinstance(xs, tuple | list):
            if len(xs) != k:
                raise ValueError(f"xs must hold {k} marginal batches, got {len(xs)}.")
            xs = jnp.stack(xs, axis=1)
        xs = jnp.asarray(xs)
        if xs.ndim < 3 or xs.shape[1] != k:
            raise ValueError(
                f"xs must have shape (batch, {k}, *event), got {xs.shape}."
            )
        keys = jax.random.split(key, xs.shape[0])
        ps = jax.vmap(self.interpolant.sample)(keys, xs)
        return ps.alpha, ps, jax.vmap(self.interpolant.target)(ps)

    def regress(
        self,
        model_fn: Callable[..., Array],
        params: PyTree,
        alpha: Float[Array, "batch k"],
        xt: Float[Array, "batch *event"],
        target: Float[Array, "batch o *event"],
        cond: PyTree | None = None,
    ) -> tuple[Float[Array, ""], LossAux]:
        """The summed per-vertex mean squared error, averaged over the batch."""
        return _regress_stacked(
            model_fn, params, alpha, xt, target, cond, self.weight_fn, True
        )

    def __call__(
        self,
        model_fn: Callable[..., Array],
        params: PyTree,
        key: PRNGKeyArray,
        xs: Float[Array, "batch k *event"],
        cond: PyTree | None = None,
    ) -> tuple[Float[Array, ""], LossAux]:
        """`prepare`, then `regress`."""
        alpha, ps, target = self.prepare(key, xs)
        return self.regress(model_fn, params, alpha, ps.xt, target, cond)
