r"""The multimarginal regression: one model for transport among K + 1 marginals."""

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..paths.multimarginal import MultimarginalInterpolant, MultimarginalSample
from ._base import AbstractSquaredErrorLoss, LossAux, WeightFn

__all__ = ["MultimarginalLoss"]


class MultimarginalLoss(AbstractSquaredErrorLoss):
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
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)
    stacked: ClassVar[bool] = True

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
