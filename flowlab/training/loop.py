"""`fit`: run the jitted train step over a device mesh; callbacks do the rest.

The loop is short on purpose: it feeds batches to the compiled step, lets the
non-finite policy check each call, and calls the callbacks
(`flowlab.training.callbacks`) at their fixed points. Logging, checkpoints,
signals, TensorBoard and the progress bar are callbacks built from `fit`'s
arguments; `callbacks=` adds a user's own.
"""

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import PRNGKeyArray, PyTree

from .. import _checks
from .._allocator import retain_freed_memory
from .._checks import positive_int
from ..conditioning import AbstractCondition
from ..couplings import AbstractCoupling
from ..data import AbstractSampler
from ..losses import AbstractLoss, ModelFn
from . import callbacks as cb
from .callbacks import Callback, TrainingInterrupted
from .mesh import (
    batch_sharding,
    make_mesh,
    put_global,
    replicated,
    state_sharding,
)
from .nonfinite import AbstractNonFinitePolicy, NonFiniteLossError, resolve_policy
from .optim import make_optimizer
from .state import TrainState, init_state
from .step import Coupling, make_train_step

__all__ = ["FitResult", "NonFiniteLossError", "TrainingInterrupted", "fit"]


class FitResult(NamedTuple):
    """The final state and the logged metrics (one dict per log line)."""

    state: TrainState
    history: list[dict[str, float]]


class _Window:
    """The metrics of the steps since the last log line, and their record."""

    def __init__(self, batch_size: int, lr_fn: Callable[[Any], Any] | None):
        self.batch_size, self.lr_fn = batch_size, lr_fn
        self.last_loss: list[float] = []
        self._reset()

    def _reset(self):
        self.t0, self.steps, self.skipped = time.perf_counter(), 0, 0
        self.values: dict[str, list[float]] = {"loss": [], "grad_norm": []}

    def add(self, metrics: dict[str, np.ndarray]) -> None:
        good = np.atleast_1d(metrics["skipped"]) == 0
        self.steps += good.size
        self.skipped += int((~good).sum())
        for name, value in metrics.items():
            value = np.atleast_1d(value)
            if name in ("loss", "grad_norm"):  # the steps that were applied
                value = value[good]
            if name != "skipped":
                self.values.setdefault(name, []).extend(value.tolist())

    def recent_loss(self) -> float | None:
        losses = self.values["loss"] or self.last_loss
        return float(np.mean(losses)) if losses else None

    def record(self, step: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.t0
        mean = {k: float(np.mean(v)) if v else math.nan for k, v in self.values.items()}
        record = {
            "step": step,
            "loss": mean.pop("loss"),
            "grad_norm": mean.pop("grad_norm"),
            "lr": float(self.lr_fn(step)) if self.lr_fn is not None else math.nan,
            "steps_per_sec": self.steps / elapsed,
            "examples_per_sec": self.steps * self.batch_size / elapsed,
            "skipped_steps": self.skipped,
            "wall_time": time.time(),
            **mean,  # coupling stats, e.g. coupling_unconverged
        }
        self.last_loss = self.values["loss"]
        self._reset()
        return record


def _feed(target: Any, mesh: Mesh, position: int) -> Callable[[int], Any]:
    """`k -> batch` for one call: the sampler itself, or `k` host batches."""
    if isinstance(target, AbstractSampler):  # drawn on device by the step
        target = put_global(
            target, jax.tree_util.tree_map(lambda _: replicated(mesh), target)
        )
        return lambda k: target
    batches: Iterator[Any] = itertools.islice(iter(target), position, None)

    def to_global(batch, leading):
        sharding = batch_sharding(mesh, leading)
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
            batch,
        )

    def next_batches(k: int):
        if k == 1:
            return to_global(next(batches), 0)
        chunk = [next(batches) for _ in range(k)]
        return to_global(jax.tree_util.tree_map(lambda *xs: np.stack(xs), *chunk), 1)

    return next_batches


def fit(
    model_fn: ModelFn,
    params: PyTree,
    loss: AbstractLoss,
    *,
    source: AbstractSampler | None,
    target: AbstractSampler | Iterable[Any],
    key: PRNGKeyArray,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation | None = None,
    lr_fn: Callable[[Any], Any] | None = None,
    coupling: AbstractCoupling | Coupling | None = None,
    global_coupling: bool = False,
    ema_decay: float = 0.999,
    steps_per_call: int = 10,
    micro_batches: int = 1,
    compute_dtype: Any = None,
    on_nonfinite: str | AbstractNonFinitePolicy = "stop",
    mesh: Mesh | None = None,
    devices: int | None = None,
    shard_params: bool = False,
    log_every: int = 100,
    out_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int | None = 3,
    best_metric: str | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    state: TrainState | None = None,
    data_position: int | None = None,
    tensorboard: bool = False,
    handle_signals: bool = True,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    condition: AbstractCondition | None = None,
    cond_dropout: float = 0.0,
) -> FitResult:
    """Train `model_fn` on `loss` for `steps` steps on a device mesh.

    Args:
        model_fn: the per-sample model `model_fn(params, t, x, cond)`.
        params: its initial parameters.
        loss: any `flowlab.losses.AbstractLoss`; a `MultimarginalLoss` trains on
            batches that stack all `K + 1` marginals, `(batch, K + 1, *event)`,
            with `source=None`.
        source: sampler of `x0`, or `None` for a loss that reads every marginal
            from the batch.
        target: a sampler of `x1` (drawn on device each step; `data.Empirical`
            holds a data set), or an iterable of host batches `x1` / `(x1, cond)`
            of this process's rows of the global batch. An array is refused
            rather than guessed at (a data set, or a stack of batches?): pass
            `data.Empirical(points)` to draw from its rows.
        key: root PRNG key of the run, `jax.random.key(seed)` (ignored when
            `state` is given).
        steps: total number of steps (a resumed `state` continues up to it).
        batch_size: the global batch per step (the same on 1 or 64 devices).
        optimizer: an optax transformation (default AdamW, lr 1e-3).
        lr_fn: the learning-rate schedule, only for logging.
        coupling: optional minibatch coupling. On a mesh of more than one device
            each device couples its own shard of the batch (wrapped in
            `couplings.sharded`, unless it already is).
        global_coupling: couple the whole global batch as one instead (an
            all-gather, and the coupling's work on every device).
        ema_decay: EMA decay of the sampling parameters.
        steps_per_call: steps fused into one compiled call (`lax.scan`).
        micro_batches: gradient accumulation slices per step.
        compute_dtype: e.g. `jnp.bfloat16` for mixed precision (fp32 parameters).
        on_nonfinite: `"stop"` raises `NonFiniteLossError` (the state of that call
            is not kept); `"skip"` drops that update and counts it in
            `skipped_steps`; or an `AbstractNonFinitePolicy`.
        mesh: a mesh with a `data` axis; default: `make_mesh(devices)`.
        devices: how many devices the default mesh spans (default all).
        shard_params: split parameters and optimiser state over the `data` axis
            (FSDP-style) instead of replicating them.
        log_every: steps between metric lines (rounded up to whole calls).
        out_dir: where `metrics.jsonl` and `checkpoints/` go (nothing written if
            `None`); only process 0 writes logs.
        checkpoint_every: steps between checkpoints (needs `out_dir`); a
            checkpoint is also written at the end and on SIGINT/SIGTERM.
        keep_checkpoints: the newest checkpoints kept.
        best_metric: also keep the best checkpoint by this metric (e.g. `"loss"`).
        checkpoint_meta: JSON-able data stored with every checkpoint (the config).
        state: a `TrainState` to continue from.
        data_position: batches already consumed from an iterable `target`
            (skipped on resume; default `state.step`).
        tensorboard: also write TensorBoard event files (needs `tensorboardX`).
        handle_signals: on SIGINT/SIGTERM finish the current call, save a
            checkpoint and raise `TrainingInterrupted`.
        progress: show a progress bar (steps/s, loss, ETA) on process 0.
        callbacks: more `flowlab.training.Callback`s, called after the built-in
            ones at each fixed point.
        condition: the conditions' `flowlab.conditioning.AbstractCondition`
            (default: `target.condition` of a sampler, e.g. `Labels(K)` of a
            labelled one); see `make_train_step`.
        cond_dropout: the share of rows trained on the null condition (see
            `make_train_step`).

    On a CPU backend `fit` first calls `retain_freed_memory()`, so that the
    step's temporaries are reused rather than page-faulted in on every call.

    Raises:
        NonFiniteLossError: with `on_nonfinite="stop"`, the loss or gradient norm
            became non-finite; the message names the step, the quantity and the
            last good checkpoint.
        TrainingInterrupted: SIGINT/SIGTERM arrived; a checkpoint was saved.
    """
    positive_int("steps", steps)
    positive_int("log_every", log_every)
    _checks.sampler("source", source, AbstractSampler, none=True)
    _checks.sampler("target", target, AbstractSampler, batches=True)
    if isinstance(target, AbstractSampler):
        loss.check_event_shape(target.event_shape)
    if state is None:
        _checks.key(key)  # validated; a legacy uint32 key stays as given
    if checkpoint_every is not None and out_dir is None:
        raise ValueError("checkpoint_every needs out_dir to write checkpoints to.")
    policy = resolve_policy(on_nonfinite)
    if condition is None and isinstance(target, AbstractSampler):
        condition = target.condition
    mesh = make_mesh(devices) if mesh is None else mesh
    if optimizer is None:
        optimizer, lr_fn = make_optimizer("adamw", 1e-3, total_steps=steps)

    def build(k: int):  # checks every argument of the step (the first call does)
        step_fn = make_train_step(
            model_fn,
            loss,
            optimizer,
            source=source,
            batch_size=batch_size,
            coupling=coupling,
            global_coupling=global_coupling,
            ema_decay=ema_decay,
            steps_per_call=k,
            micro_batches=micro_batches,
            compute_dtype=compute_dtype,
            on_nonfinite=policy,
            mesh=mesh,
            condition=condition,
            cond_dropout=cond_dropout,
        )
        return jax.jit(step_fn, out_shardings=(state_sh, metric_sh), donate_argnums=0)

    state = init_state(key, params, optimizer) if state is None else state
    state_sh, metric_sh = state_sharding(state, mesh, shard_params), replicated(mesh)
    compiled = {steps_per_call: build(steps_per_call)}
    if mesh.devices.flat[0].platform == "cpu":
        retain_freed_memory()
    # A copy: the compiled step donates its state and must not consume the
    # caller's arrays (initial parameters or a restored state).
    state = put_global(state, state_sh)
    position = int(state.step) if data_position is None else data_position
    feed = _feed(target, mesh, position)
    process_zero = jax.process_index() == 0
    hooks = [cb.Signals()] if handle_signals else []
    hooks += [cb.ProgressBar()] if progress and process_zero else []
    if out_dir is not None and process_zero:
        hooks.append(cb.MetricsFile(Path(out_dir) / "metrics.jsonl"))
        hooks += [cb.TensorBoard(Path(out_dir) / "tensorboard")] if tensorboard else []
    if checkpoint_every is not None:
        hooks.append(
            cb.Checkpoints(
                Path(out_dir) / "checkpoints",
                checkpoint_every,
                keep=keep_checkpoints,
                best_metric=best_metric,
                meta=checkpoint_meta,
                track_data_position=not isinstance(target, AbstractSampler),
            )
        )
    hooks += list(callbacks)
    run = cb.Run(state, int(state.step), steps, batch_size)
    window = _Window(batch_size, lr_fn)
    try:
        for hook in hooks:
            hook.on_start(run)
        while run.step < steps:
            k = min(steps_per_call, steps - run.step)
            if k not in compiled:
                compiled[k] = build(k)
            new_state, metrics = compiled[k](run.state, feed(k))
            metrics = jax.device_get(metrics)
            policy.check(run.step, metrics, run.last_checkpoint)
            run.state, run.step = new_state, run.step + k
            window.add(metrics)
            run.recent_loss = window.recent_loss()
            for hook in hooks:
                hook.on_call(run, metrics)
            if (
                run.step // log_every != (run.step - k) // log_every
                or run.step == steps
            ):
                run.history.append(window.record(run.step))
                for hook in hooks:
                    hook.on_log(run, run.history[-1])
            if run.stop_signal is not None:
                saved = run.last_checkpoint == run.step
                raise TrainingInterrupted(run.stop_signal, run.step, saved)
    finally:
        for hook in reversed(hooks):
            hook.on_end(run)
    return FitResult(run.state, run.history)
