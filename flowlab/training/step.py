"""The pure training step: draw, couple, regress, update, average."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from ..data import AbstractSampler
from ..losses import FlowMatchingLoss, ModelFn
from .state import TrainState

__all__ = ["Coupling", "make_train_step", "split_batch"]

Coupling = Callable[[Array, Any, Any], tuple[Any, Any]]
"""`coupling(key, x0, x1) -> (x0, x1)`, a re-pairing of a minibatch."""


def split_batch(batch: Any) -> tuple[Array, Any]:
    """`x1` and `cond` from a batch given as `x1` or `(x1, cond)`."""
    if isinstance(batch, tuple | list):
        if len(batch) != 2:
            raise ValueError("a batch is x1 or a pair (x1, cond).")
        return batch[0], batch[1]
    return batch, None


def make_train_step(
    model_fn: ModelFn,
    loss: FlowMatchingLoss,
    optimizer: optax.GradientTransformation,
    *,
    source: AbstractSampler,
    batch_size: int | None = None,
    coupling: Coupling | None = None,
    ema_decay: float = 0.999,
    steps_per_call: int = 1,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    r"""A pure `train_step(state, batch) -> (state, metrics)` to `jax.jit`.

    One step: `key = fold_in(state.key, state.step)` is split for the data, the
    source, the coupling and the loss; `x0 ~ source`, `x1` (and `cond`) come from the
    batch; the coupling re-pairs rows; the loss gradient updates the parameters with
    `optimizer`; the EMA parameters move by $1 - d_n$ with the warmed-up decay
    $d_n = \min(\text{ema\_decay}, (1 + n) / (10 + n))$; the step counts up.

    Args:
        model_fn: per-sample model `model_fn(params, t, x, cond)`.
        loss: the regression, e.g. `FlowMatchingLoss(AffinePath(cond_ot()))`.
        optimizer: any optax transformation.
        source: sampler of `x0` (e.g. `data.Gaussian(dim)`).
        batch_size: rows drawn per step when the batch is a sampler.
        coupling: optional `coupling(key, x0, (x1, cond)) -> (x0, (x1, cond))`.
        ema_decay: EMA decay in $[0, 1)$.
        steps_per_call: `K`; with `K > 1` one call runs `K` steps in a `lax.scan`, so
            small models are not bound by dispatch. Metrics then have a leading
            axis of length `K`.

    The batch is either an `AbstractSampler` (the step draws `batch_size` rows on
    device, e.g. `data.Empirical(points)` for a data set in device memory), or
    arrays `x1` / `(x1, cond)` with a leading batch axis, and with `K > 1` a further
    leading axis of length `K`.
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}.")
    if (
        isinstance(steps_per_call, bool)
        or not isinstance(steps_per_call, int)
        or steps_per_call < 1
    ):
        raise ValueError(
            f"steps_per_call must be a positive int, got {steps_per_call!r}."
        )
    if not isinstance(source, AbstractSampler):
        raise TypeError("source must be a flowlab.data.AbstractSampler.")

    def one_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(state.key, state.step)
        k_data, k_source, k_couple, k_loss = jax.random.split(key, 4)
        if isinstance(batch, AbstractSampler):
            if batch_size is None:
                raise ValueError("batch_size is needed when the batch is a sampler.")
            x1, cond = batch.sample(k_data, batch_size), None
        else:
            x1, cond = split_batch(batch)
        x0 = source.sample(k_source, x1.shape[0]).astype(x1.dtype)
        if x0.shape != x1.shape:
            raise ValueError(
                f"the source draws samples of shape {x0.shape[1:]} but the data has "
                f"shape {x1.shape[1:]}."
            )
        if coupling is not None:
            x0, (x1, cond) = coupling(k_couple, x0, (x1, cond))

        def objective(params):
            return loss(model_fn, params, k_loss, x0, x1, cond)

        (value, _), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # EMA warm-up: early on the average must not remember the initialisation.
        n = state.step.astype(jnp.float32)
        decay = jnp.minimum(ema_decay, (1.0 + n) / (10.0 + n))
        ema = optax.incremental_update(params, state.ema_params, 1.0 - decay)
        new_state = TrainState(params, opt_state, ema, state.step + 1, state.key)
        metrics = {"loss": value, "grad_norm": optax.tree.norm(grads)}
        return new_state, metrics

    if steps_per_call == 1:
        return one_step

    def fused_steps(state: TrainState, batch: Any):
        if isinstance(batch, AbstractSampler):
            return jax.lax.scan(
                lambda s, _: one_step(s, batch), state, None, steps_per_call
            )
        leading = {jnp.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(batch)}
        if leading != {steps_per_call}:
            raise ValueError(
                f"with steps_per_call={steps_per_call}, batch arrays need a leading "
                f"axis of that length, got {sorted(leading)}."
            )
        return jax.lax.scan(one_step, state, batch)

    return fused_steps
