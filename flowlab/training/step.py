"""The pure training step: draw, couple, regress, update, average."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jaxtyping import Array

from ..couplings import AbstractDataDependent, Independent, Sharded, sharded
from ..data import AbstractSampler
from ..losses import FlowMatchingLoss, InterpolantLoss, ModelFn, MultimarginalLoss
from .mesh import DATA_AXIS, batch_sharding
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


def _mesh_coupling(
    coupling: Coupling | None, mesh: Mesh | None, global_coupling: bool = False
) -> Coupling | None:
    """The coupling the step runs under `mesh`: per device shard unless global.

    With more than one device on the mesh's `data` axis, a coupling that is not
    already `couplings.Sharded` becomes `couplings.sharded(coupling, mesh,
    global_batch=global_coupling)`: each device couples its own rows (exact OT is
    then exact within each shard, as for a batch of `batch_size / devices`), or
    with `global_coupling=True` the whole batch is gathered and coupled as one. On
    one device and without a mesh it is returned as it is, and so are `None` and
    the row-wise couplings (independent, data-dependent), which pair no rows with
    each other: sharding them would only change their keys.
    """
    if not isinstance(global_coupling, bool):
        raise TypeError(f"global_coupling must be a bool, got {global_coupling!r}.")
    if isinstance(coupling, Sharded):
        if global_coupling and not coupling.global_batch:
            raise ValueError(
                "global_coupling=True, but the coupling is already a per-shard "
                "couplings.Sharded; pass the unwrapped coupling, or "
                "sharded(..., global_batch=True)."
            )
        return coupling
    if coupling is None or isinstance(coupling, Independent | AbstractDataDependent):
        return coupling
    if mesh is None or mesh.shape[DATA_AXIS] == 1:
        return coupling
    return sharded(coupling, mesh, global_batch=global_coupling, axis=DATA_AXIS)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def _cast_floats(tree: Any, dtype) -> Any:
    def cast(x):
        if isinstance(x, jax.Array | float) and jnp.issubdtype(
            jnp.result_type(x), jnp.floating
        ):
            return jnp.asarray(x).astype(dtype)
        return x

    return jax.tree_util.tree_map(cast, tree)


def make_train_step(
    model_fn: ModelFn,
    loss: FlowMatchingLoss | InterpolantLoss | MultimarginalLoss,
    optimizer: optax.GradientTransformation,
    *,
    source: AbstractSampler | None,
    batch_size: int | None = None,
    coupling: Coupling | None = None,
    global_coupling: bool = False,
    ema_decay: float = 0.999,
    steps_per_call: int = 1,
    micro_batches: int = 1,
    compute_dtype: Any = None,
    skip_nonfinite: bool = False,
    mesh: Mesh | None = None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]:
    r"""A pure `train_step(state, batch) -> (state, metrics)` to `jax.jit`.

    One step: `key = fold_in(state.key, state.step)` is split for the data, the
    source, the coupling and the loss; `x1` (and `cond`) come from the batch and
    `loss.marginals` draws `x0 ~ source`; the coupling re-pairs rows; the loss draws
    times and path samples for the whole batch, and its gradient (accumulated over
    `micro_batches` equal slices) updates the parameters with `optimizer`; the EMA
    parameters move by $1 - d_n$ with the warmed-up decay
    $d_n = \min(\text{ema\_decay}, (1 + n) / (10 + n))$; the step counts up.

    Args:
        model_fn: per-sample model `model_fn(params, t, x, cond)`.
        loss: the regression, e.g. `FlowMatchingLoss(AffinePath(cond_ot()))`, or a
            `MultimarginalLoss`, whose batch stacks all `K + 1` marginals
            `(batch, K + 1, *event)` (then `source=None` and no coupling).
        optimizer: any optax transformation.
        source: sampler of `x0` (e.g. `data.Gaussian(dim)`); `None` for a loss
            that reads every marginal from the batch.
        batch_size: rows drawn per step when the batch is a sampler (the global
            batch: the same on 1 or 64 devices).
        coupling: optional `coupling(key, x0, (x1, cond)) -> (x0, (x1, cond))`.
            Under a `mesh` with more than one device on `data` it runs on each
            device's shard of the batch, as `couplings.sharded(coupling, mesh)`
            (a coupling that is already `Sharded` is used as it is; row-wise
            ones, independent and data-dependent, are never wrapped).
        global_coupling: under such a mesh, couple the whole gathered batch as
            one instead of each shard.
        ema_decay: EMA decay in $[0, 1)$.
        steps_per_call: `K`; with `K > 1` one call runs `K` steps in a `lax.scan`, so
            small models are not bound by dispatch. Metrics then have a leading
            axis of length `K`.
        micro_batches: gradient accumulation: the batch is regressed in this many
            equal slices whose gradients are averaged (same result as one batch).
        compute_dtype: e.g. `jnp.bfloat16`: the model runs in this dtype while the
            parameters, gradients and optimiser state stay in their own (fp32).
        skip_nonfinite: when the loss, gradient or update is not finite, keep the old
            parameters, optimiser and EMA state (the step still counts) and report
            `skipped = 1` in the metrics, instead of applying the update.
        mesh: a device mesh with a `data` axis: the drawn batch is constrained to be
            split along it.

    The batch is either an `AbstractSampler` (the step draws `batch_size` rows on
    device, e.g. `data.Empirical(points)` for a data set in device memory), or
    arrays `x1` / `(x1, cond)` with a leading batch axis, and with `K > 1` a further
    leading axis of length `K`. For a `MultimarginalLoss`, `x1` is the stack `xs`
    of all marginals.
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}.")
    _positive_int("steps_per_call", steps_per_call)
    _positive_int("micro_batches", micro_batches)
    if source is not None and not isinstance(source, AbstractSampler):
        raise TypeError("source must be a flowlab.data.AbstractSampler or None.")
    coupling = _mesh_coupling(coupling, mesh, global_coupling)
    n_devices = 1 if mesh is None else mesh.shape[DATA_AXIS]
    if batch_size is not None:
        _positive_int("batch_size", batch_size)
        if batch_size % (micro_batches * n_devices):
            raise ValueError(
                f"batch_size={batch_size} must divide by micro_batches "
                f"({micro_batches}) times the device count ({n_devices})."
            )

    def constrain(x, leading=0):
        if mesh is None or x is None:
            return x
        return jax.tree_util.tree_map(
            lambda a: jax.lax.with_sharding_constraint(
                a, batch_sharding(mesh, leading)
            ),
            x,
        )

    if compute_dtype is None:
        run_model = model_fn
    else:

        def run_model(params, t, x, cond):
            cast = lambda tree: _cast_floats(tree, compute_dtype)  # noqa: E731
            return model_fn(cast(params), cast(t), cast(x), cast(cond))

    def objective(params, t, xt, target, cond):
        value, _ = loss.regress(run_model, params, t, xt, target, cond)
        return value

    grad_fn = jax.value_and_grad(objective)

    def loss_and_grads(params, t, xt, target, cond):
        if micro_batches == 1:
            return grad_fn(params, t, xt, target, cond)
        n = t.shape[0]
        if n % micro_batches:
            raise ValueError(
                f"the batch of {n} rows does not divide into {micro_batches} "
                "micro-batches."
            )

        def split(x):  # (n, ...) -> (micro, n / micro, ...), each slice strided
            return x.reshape(n // micro_batches, micro_batches, *x.shape[1:]).swapaxes(
                0, 1
            )

        slices = constrain(jax.tree_util.tree_map(split, (t, xt, target, cond)), 1)

        def body(carry, piece):
            total, grads = carry
            value, g = grad_fn(params, *piece)
            return (total + value, jax.tree_util.tree_map(jnp.add, grads, g)), None

        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        (total, grads), _ = jax.lax.scan(body, (jnp.zeros((), t.dtype), zeros), slices)
        scale = 1.0 / micro_batches
        return total * scale, jax.tree_util.tree_map(lambda g: g * scale, grads)

    def one_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(state.key, state.step)
        k_data, k_source, k_couple, k_loss = jax.random.split(key, 4)
        if isinstance(batch, AbstractSampler):
            if batch_size is None:
                raise ValueError("batch_size is needed when the batch is a sampler.")
            x1, cond = batch.sample(k_data, batch_size), None
        else:
            x1, cond = split_batch(batch)
        cond = constrain(cond)
        # The loss reads its marginals from the batch and draws the rest: (x0, x1)
        # with x0 ~ source, or (xs,) for a multimarginal loss.
        marginals = constrain(loss.marginals(k_source, source, constrain(x1)))
        if coupling is not None:
            if len(marginals) != 2:
                raise ValueError(
                    f"a coupling re-pairs x0 and x1, but {type(loss).__name__} "
                    f"takes {len(marginals)} marginal batch(es); pass coupling=None."
                )
            x0, x1 = marginals
            x0, (x1, cond) = coupling(k_couple, x0, (x1, cond))
            marginals = (x0, x1)
        t, ps, target = loss.prepare(k_loss, *marginals)
        value, grads = loss_and_grads(state.params, t, ps.xt, target, cond)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # EMA warm-up: early on the average must not remember the initialisation.
        n = state.step.astype(jnp.float32)
        decay = jnp.minimum(ema_decay, (1.0 + n) / (10.0 + n))
        ema = optax.incremental_update(params, state.ema_params, 1.0 - decay)
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
        if skip_nonfinite:  # a finite gradient can still make a non-finite update
            finite = finite & jnp.isfinite(optax.tree.norm(updates))
        if skip_nonfinite:

            def keep(new, old):
                return jax.tree_util.tree_map(
                    lambda a, b: jnp.where(finite, a, b), new, old
                )

            params = keep(params, state.params)
            opt_state = keep(opt_state, state.opt_state)
            ema = keep(ema, state.ema_params)
        new_state = TrainState(params, opt_state, ema, state.step + 1, state.key)
        metrics = {
            "loss": value,
            "grad_norm": grad_norm,
            "skipped": (~finite).astype(jnp.int32),
        }
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
