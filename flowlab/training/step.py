r"""The pure training step: draw, couple, regress, update, average.

`make_train_step` validates its arguments once and returns a pure
`train_step(state, batch) -> (state, metrics)` to `jax.jit`:

```
key              = fold_in(state.key, state.step)       # never reused
x1, cond         = batch (or batch.sample(k_data, batch_size) for a sampler)
x0, x1           = loss.marginals(k_source, source, x1)  # x0 ~ source
x0, (x1, cond)   = coupling.couple(k_couple, x0, (x1, cond))
t, sample, y     = loss.prepare(k_loss, x0, x1)          # times, x_t, targets
loss, grads      = value_and_grad(loss.regress)(params, t, sample.xt, y, cond)
params, opt      = optimizer update; EMA update; step + 1 (unless the policy skips)
```

Why the step keeps three pieces of its own rather than optax's:

- *EMA.* `optax.ema` averages the updates a transformation emits (a momentum-like
  smoothing of the gradient direction), not the parameters; the sampling
  parameters are a Polyak average of the parameters, kept with
  `optax.incremental_update` and a warm-up of the decay.
- *Micro-batches.* `optax.MultiSteps` accumulates gradients across `k` optimiser
  calls (one update per `k` train steps, each drawing its own batch and key, with
  a running state) and runs the inner update on every call; here one step is one
  update on one batch regressed in equal slices, so the step counter, the keys and
  the EMA advance once. The two give the same parameters to float32 round-off, not
  bitwise (the sums associate differently; tested).
- *Non-finite steps.* See `flowlab.training.nonfinite` for why not
  `optax.apply_if_finite`.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jaxtyping import Array

from .. import _checks, registry
from .._checks import positive_int
from ..conditioning import AbstractCondition, check_dropout
from ..couplings import AbstractCoupling, Sharded, as_coupling, sharded
from ..data import AbstractSampler
from ..losses import AbstractLoss, ModelFn
from .mesh import DATA_AXIS, batch_sharding
from .nonfinite import AbstractNonFinitePolicy, resolve_policy
from .state import TrainState

__all__ = ["Coupling", "make_train_step", "split_batch"]

Coupling = Callable[[Array, Any, Any], tuple[Any, Any]]
"""`coupling(key, x0, x1) -> (x0, x1)`, a re-pairing of a minibatch."""

StepFn = Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]


def split_batch(batch: Any) -> tuple[Array, Any]:
    """`x1` and `cond` from a batch given as `x1` or `(x1, cond)`."""
    if isinstance(batch, tuple | list):
        if len(batch) != 2:
            raise ValueError("a batch is x1 or a pair (x1, cond).")
        return batch[0], batch[1]
    return batch, None


def _mesh_coupling(
    coupling: AbstractCoupling | Coupling | None,
    mesh: Mesh | None,
    global_coupling: bool = False,
) -> AbstractCoupling | None:
    """The coupling the step runs under `mesh`: per device shard unless global.

    With more than one device on the mesh's `data` axis, a coupling that re-pairs
    rows (`coupling.repairs_rows`) becomes `couplings.sharded(coupling, mesh,
    global_batch=global_coupling)`: each device couples its own rows (exact OT is
    then exact within each shard, as for a batch of `batch_size / devices`), or
    with `global_coupling=True` the whole batch is gathered and coupled as one. On
    one device and without a mesh it is returned as it is, and so are `None`, a
    coupling the caller already wrapped in `couplings.sharded`, and the row-wise
    couplings (independent, data-dependent), which pair no rows with each other:
    sharding them would only change their keys. A plain function becomes a
    `couplings.FunctionCoupling`.
    """
    if not isinstance(global_coupling, bool):
        raise TypeError(f"global_coupling must be a bool, got {global_coupling!r}.")
    if coupling is None:
        return None
    coupling = as_coupling(coupling)
    if isinstance(coupling, Sharded):  # placed by the caller
        if global_coupling and not coupling.global_batch:
            raise ValueError(
                "global_coupling=True, but the coupling is already a per-shard "
                "couplings.Sharded; pass the unwrapped coupling, or "
                "sharded(..., global_batch=True)."
            )
        return coupling
    if not coupling.repairs_rows or mesh is None or mesh.shape[DATA_AXIS] == 1:
        return coupling
    return sharded(coupling, mesh, global_batch=global_coupling, axis=DATA_AXIS)


def _cast_floats(tree: Any, dtype) -> Any:
    def cast(x):
        if isinstance(x, jax.Array | float) and jnp.issubdtype(
            jnp.result_type(x), jnp.floating
        ):
            return jnp.asarray(x).astype(dtype)
        return x

    return jax.tree_util.tree_map(cast, tree)


registry.register("precision", "fp32", lambda: None)
registry.register("precision", "bf16", lambda: jnp.bfloat16)


def _mixed_precision(model_fn: ModelFn, compute_dtype: Any) -> ModelFn:
    if compute_dtype is None:
        return model_fn

    def run_model(params, t, x, cond):
        cast = lambda tree: _cast_floats(tree, compute_dtype)  # noqa: E731
        return model_fn(cast(params), cast(t), cast(x), cast(cond))

    return run_model


def _accumulated(grad_fn, micro_batches: int, constrain):
    """`(loss, grads)` of a prepared batch regressed in `micro_batches` slices."""
    if micro_batches == 1:
        return grad_fn

    def loss_and_grads(params, t, xt, target, cond):
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

    return loss_and_grads


def make_train_step(
    model_fn: ModelFn,
    loss: AbstractLoss,
    optimizer: optax.GradientTransformation,
    *,
    source: AbstractSampler | None,
    batch_size: int | None = None,
    coupling: AbstractCoupling | Coupling | None = None,
    global_coupling: bool = False,
    ema_decay: float = 0.999,
    steps_per_call: int = 1,
    micro_batches: int = 1,
    compute_dtype: Any = None,
    on_nonfinite: str | AbstractNonFinitePolicy = "stop",
    mesh: Mesh | None = None,
    condition: AbstractCondition | None = None,
    cond_dropout: float = 0.0,
) -> StepFn:
    r"""A pure `train_step(state, batch) -> (state, metrics)` to `jax.jit`.

    One step (module docstring): `key = fold_in(state.key, state.step)` is split
    for the data, the source, the coupling and the loss; the coupling re-pairs rows;
    the loss draws times and path samples for the whole batch, and its gradient
    (accumulated over `micro_batches` equal slices) updates the parameters with
    `optimizer`; the EMA parameters move by $1 - d_n$ with the warmed-up decay
    $d_n = \min(\text{ema\_decay}, (1 + n) / (10 + n))$; the step counts up.

    Args:
        model_fn: per-sample model `model_fn(params, t, x, cond)`.
        loss: any `flowlab.losses.AbstractLoss`, e.g.
            `FlowMatchingLoss(AffinePath(cond_ot()))`, a user's own, or a
            `MultimarginalLoss`, whose batch stacks all `K + 1` marginals
            `(batch, K + 1, *event)` (then `source=None` and no coupling).
        optimizer: any optax transformation.
        source: sampler of `x0` (e.g. `data.Gaussian(dim)`); `None` for a loss
            that reads every marginal from the batch.
        batch_size: rows drawn per step when the batch is a sampler (the global
            batch: the same on 1 or 64 devices).
        coupling: optional coupling (a `flowlab.couplings.AbstractCoupling`, or a
            function `coupling(key, x0, (x1, cond)) -> (x0, (x1, cond))`). Under a
            `mesh` with more than one device on `data` a coupling that re-pairs
            rows runs on each device's shard of the batch, as
            `couplings.sharded(coupling, mesh)`. Its stats (e.g. whether Sinkhorn
            converged) join the metrics as `coupling_<name>`.
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
        on_nonfinite: `"stop"`, `"skip"` or an `AbstractNonFinitePolicy`
            (`flowlab.training.nonfinite`): with `"skip"` a step whose loss,
            gradient or update is not finite keeps the old parameters, optimiser
            and EMA state (the step still counts); `skipped` in the metrics is 1
            for a step that was not finite.
        mesh: a device mesh with a `data` axis: the drawn batch is constrained to be
            split along it.
        condition: the batch's `flowlab.conditioning.AbstractCondition` (e.g.
            `Labels(K)`, or a labelled sampler's `condition`): after the coupling
            each `cond` is checked and encoded (`condition.encode`) for the model.
            `None` passes `cond` to the model as it is.
        cond_dropout: $p$ in $[0, 1)$: after the coupling each row's condition is
            replaced by `condition.null` with probability $p$ (classifier-free
            guidance's training, `flowlab.sampling.guided_field`), with a key
            split from the loss's key (`k_loss, k_drop = split(k_loss)`; only when
            $p > 0$, so unconditional runs keep their keys). Needs a `condition`.

    The batch is either an `AbstractSampler` (the step draws `batch_size` rows on
    device, e.g. `data.Empirical(points)` for a data set in device memory), or
    arrays `x1` / `(x1, cond)` with a leading batch axis, and with `K > 1` a further
    leading axis of length `K`. For a `MultimarginalLoss`, `x1` is the stack `xs`
    of all marginals.
    """
    if not isinstance(loss, AbstractLoss):
        raise TypeError(
            "loss must be a flowlab.losses.AbstractLoss (FlowMatchingLoss, "
            "InterpolantLoss, MultimarginalLoss or your own), got "
            f"{type(loss).__name__}."
        )
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}.")
    positive_int("steps_per_call", steps_per_call)
    positive_int("micro_batches", micro_batches)
    _checks.sampler("source", source, AbstractSampler, none=True)
    policy = resolve_policy(on_nonfinite)
    cond_dropout = check_dropout(cond_dropout)
    if condition is not None:
        _checks.instance_of(
            "condition",
            condition,
            AbstractCondition,
            "flowlab.conditioning.AbstractCondition",
            "conditioning.Labels(10)",
        )
    elif cond_dropout > 0:
        raise ValueError(
            f"cond_dropout={cond_dropout} drops conditions to the null one, but no "
            "condition was given; pass condition= (e.g. conditioning.Labels(K), or "
            "the labelled sampler's .condition), or cond_dropout=0."
        )
    coupling = _mesh_coupling(coupling, mesh, global_coupling)
    n_devices = 1 if mesh is None else mesh.shape[DATA_AXIS]
    if batch_size is not None:
        positive_int("batch_size", batch_size)
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

    run_model = _mixed_precision(model_fn, compute_dtype)

    def objective(params, t, xt, target, cond):
        value, _ = loss.regress(run_model, params, t, xt, target, cond)
        return value

    loss_and_grads = _accumulated(
        jax.value_and_grad(objective), micro_batches, constrain
    )

    def one_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(state.key, state.step)
        k_data, k_source, k_couple, k_loss = jax.random.split(key, 4)
        if isinstance(batch, AbstractSampler):
            if batch_size is None:
                raise ValueError("batch_size is needed when the batch is a sampler.")
            x1, cond = batch.sample_batch(k_data, batch_size)
        else:
            x1, cond = split_batch(batch)
        cond = constrain(cond)
        # The loss reads its marginals from the batch and draws the rest: (x0, x1)
        # with x0 ~ source, or (xs,) for a multimarginal loss.
        marginals = constrain(loss.marginals(k_source, source, constrain(x1)))
        stats = {}
        if coupling is not None:
            if len(marginals) != 2:
                raise ValueError(
                    f"a coupling re-pairs x0 and x1, but {type(loss).__name__} "
                    f"takes {len(marginals)} marginal batch(es); pass coupling=None."
                )
            x0, (x1, cond), stats = coupling.couple(k_couple, marginals[0], (x1, cond))
            marginals = (x0, x1)
        if condition is not None:
            if cond is None:
                raise ValueError(
                    f"condition={condition!r} was given but the batch has no cond; "
                    "give batches (x1, cond) or a labelled sampler."
                )
            cond = condition.encode(condition.check("cond", cond, x1.shape[0]))
            if cond_dropout > 0:
                k_loss, k_drop = jax.random.split(k_loss)
                cond = condition.drop(k_drop, cond, cond_dropout)
        t, sample, target = loss.prepare(k_loss, *marginals)
        value, grads = loss_and_grads(state.params, t, sample.xt, target, cond)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # EMA warm-up: early on the average must not remember the initialisation.
        n = state.step.astype(jnp.float32)
        decay = jnp.minimum(ema_decay, (1.0 + n) / (10.0 + n))
        ema = optax.incremental_update(params, state.ema_params, 1.0 - decay)
        finite = policy.finite(value, grad_norm, updates)
        params, opt_state, ema = policy.guard(
            finite,
            (params, opt_state, ema),
            (state.params, state.opt_state, state.ema_params),
        )
        new_state = TrainState(params, opt_state, ema, state.step + 1, state.key)
        metrics = {
            "loss": value,
            "grad_norm": grad_norm,
            "skipped": (~finite).astype(jnp.int32),
            **{f"coupling_{name}": value for name, value in stats.items()},
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
