"""`fit`: run the jitted train step over a device mesh, log, checkpoint, stop safely."""

import contextlib
import itertools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from ..data import AbstractSampler
from ..losses import FlowMatchingLoss, InterpolantLoss, ModelFn, MultimarginalLoss
from .allocator import retain_freed_memory
from .checkpoint import Checkpointer
from .mesh import (
    DATA_AXIS,
    batch_sharding,
    make_mesh,
    put_global,
    replicated,
    state_sharding,
)
from .optim import make_optimizer
from .state import TrainState, init_state
from .step import Coupling, make_train_step

__all__ = ["FitResult", "NonFiniteLossError", "TrainingInterrupted", "fit"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a non-finite loss or gradient norm."""

    def __init__(self, step: int, quantity: str, last_checkpoint: int | None):
        self.step = step
        self.quantity = quantity
        self.last_checkpoint = last_checkpoint
        kept = (
            f"the last good checkpoint is step {last_checkpoint}"
            if last_checkpoint is not None
            else "no checkpoint was written"
        )
        super().__init__(f"non-finite {quantity} at step {step}; {kept}.")


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved."""

    def __init__(self, signum: int, step: int, saved: bool):
        self.signum = signum
        self.step = step
        name = signal.Signals(signum).name
        what = (
            f"checkpoint saved at step {step}" if saved else f"stopped at step {step}"
        )
        super().__init__(f"{name} received: {what}.")


class FitResult(NamedTuple):
    """The final state and the logged metrics (one dict per log line)."""

    state: TrainState
    history: list[dict[str, float]]


@contextlib.contextmanager
def _catch_signals(enabled: bool):
    """Record SIGINT/SIGTERM instead of dying mid-step (main thread only)."""
    received: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if received:  # a second signal: give up at once
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
        received.append(signum)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _stack_batches(batches: Iterator[Any], k: int) -> Any:
    chunk = [next(batches) for _ in range(k)]
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *chunk)


def _tensorboard_writer(out_dir: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError as err:
        raise ValueError(
            "tensorboard=True needs tensorboardX: pip install 'flowlab[tensorboard]'."
        ) from err
    return SummaryWriter(str(out_dir / "tensorboard"))


def fit(
    model_fn: ModelFn,
    params: PyTree,
    loss: FlowMatchingLoss | InterpolantLoss | MultimarginalLoss,
    *,
    source: AbstractSampler | None,
    target: AbstractSampler | Iterable[Any],
    key: PRNGKeyArray,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation | None = None,
    lr_fn: Callable[[Any], Any] | None = None,
    coupling: Coupling | None = None,
    global_coupling: bool = False,
    ema_decay: float = 0.999,
    steps_per_call: int = 10,
    micro_batches: int = 1,
    compute_dtype: Any = None,
    on_nonfinite: str = "stop",
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
) -> FitResult:
    """Train `model_fn` by flow matching for `steps` steps on a device mesh.

    Args:
        model_fn: the per-sample model `model_fn(params, t, x, cond)`.
        params: its initial parameters.
        loss: the regression (path, prediction, time sampling); a
            `MultimarginalLoss` trains on batches that stack all `K + 1`
            marginals, `(batch, K + 1, *event)`, with `source=None`.
        source: sampler of `x0`, or `None` for a loss that reads every marginal
            from the batch.
        target: a sampler of `x1` (drawn on device each step; `data.Empirical`
            holds a data set), or an iterable of host batches `x1` / `(x1, cond)`
            of this process's rows of the global batch.
        key: root PRNG key of the run (ignored when `state` is given).
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
        on_nonfinite: `"stop"` raises `NonFiniteLossError` (the state of that step
            is not saved); `"skip"` drops that update and counts it in `skipped`.
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

    On a CPU backend `fit` first calls `retain_freed_memory()`, so that the
    step's temporaries are reused rather than page-faulted in on every call.

    Raises:
        NonFiniteLossError: with `on_nonfinite="stop"`, the loss or gradient norm
            became non-finite; the message names the step, the quantity and the
            last good checkpoint.
        TrainingInterrupted: SIGINT/SIGTERM arrived; a checkpoint was saved.
    """
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("log_every", log_every),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if on_nonfinite not in ("stop", "skip"):
        raise ValueError(
            f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}."
        )
    if checkpoint_every is not None and out_dir is None:
        raise ValueError("checkpoint_every needs out_dir to write checkpoints to.")
    if mesh is None:
        mesh = make_mesh(devices)
    n_devices = mesh.shape[DATA_AXIS]
    if batch_size % (n_devices * micro_batches):
        raise ValueError(
            f"batch_size={batch_size} must divide by the device count ({n_devices}) "
            f"times micro_batches ({micro_batches})."
        )
    if optimizer is None:
        optimizer, lr_fn = make_optimizer("adamw", 1e-3, total_steps=steps)
    if mesh.devices.flat[0].platform == "cpu":
        retain_freed_memory()
    if state is None:
        state = init_state(key, params, optimizer)
    state_sh = state_sharding(state, mesh, shard_params)
    # Copies: the compiled step donates its state, and must not consume the
    # caller's arrays (initial parameters or a restored state).
    state = put_global(state, state_sh)
    is_sampler = isinstance(target, AbstractSampler)
    if is_sampler:
        target = put_global(
            target, jax.tree_util.tree_map(lambda _: replicated(mesh), target)
        )
        batches = None
    else:
        position = int(state.step) if data_position is None else data_position
        batches = itertools.islice(iter(target), position, None)
    process_zero = jax.process_index() == 0
    metric_sh = replicated(mesh)

    def to_global(batch, leading):
        sharding = batch_sharding(mesh, leading)
        return jax.tree_util.tree_map(
            lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
            batch,
        )

    def build(k: int):
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
            skip_nonfinite=on_nonfinite == "skip",
            mesh=mesh,
        )
        return jax.jit(step_fn, out_shardings=(state_sh, metric_sh), donate_argnums=0)

    compiled: dict[int, Any] = {}
    history: list[dict[str, float]] = []
    ckpt = metrics_file = writer = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        if process_zero:
            out_dir.mkdir(parents=True, exist_ok=True)
            metrics_file = open(out_dir / "metrics.jsonl", "a")  # noqa: SIM115
            writer = _tensorboard_writer(out_dir) if tensorboard else None
        if checkpoint_every is not None:
            ckpt = Checkpointer(out_dir / "checkpoints", keep_checkpoints, best_metric)
    last_saved = None if ckpt is None else ckpt.latest_step()

    def save(step, window_loss):
        nonlocal last_saved
        meta = dict(checkpoint_meta or {})
        meta["data_position"] = step if batches is not None else None
        metrics = {"loss": float(np.mean(window_loss))} if window_loss else {}
        ckpt.save(state, meta, metrics)
        last_saved = step

    start = int(state.step)
    bar = tqdm(
        total=steps,
        initial=start,
        disable=not (progress and process_zero),
        unit="step",
        dynamic_ncols=True,
    )
    window_t0, window_steps = time.perf_counter(), 0
    window_loss, window_gnorm, window_skipped, last_loss = [], [], 0, []
    step = start
    try:
        with _catch_signals(handle_signals) as received:
            while step < steps:
                k = min(steps_per_call, steps - step)
                if k not in compiled:
                    compiled[k] = build(k)
                if is_sampler:
                    batch = target
                elif k == 1:
                    batch = to_global(next(batches), 0)
                else:
                    batch = to_global(_stack_batches(batches, k), 1)
                new_state, metrics = compiled[k](state, batch)
                metrics = jax.device_get(metrics)
                losses = np.atleast_1d(metrics["loss"])
                gnorms = np.atleast_1d(metrics["grad_norm"])
                skipped = np.atleast_1d(metrics["skipped"])
                if on_nonfinite == "stop":
                    for quantity, values in (
                        ("loss", losses),
                        ("gradient norm", gnorms),
                    ):
                        bad = np.flatnonzero(~np.isfinite(values))
                        if bad.size:
                            raise NonFiniteLossError(
                                step + int(bad[0]) + 1, quantity, last_saved
                            )
                state, step = new_state, step + k
                bar.update(k)
                window_steps += k
                good = skipped == 0
                window_loss.extend(losses[good].tolist())
                window_gnorm.extend(gnorms[good].tolist())
                window_skipped += int(skipped.sum())
                if step // log_every != (step - k) // log_every or step == steps:
                    elapsed = time.perf_counter() - window_t0
                    record = {
                        "step": step,
                        "loss": float(np.mean(window_loss))
                        if window_loss
                        else math.nan,
                        "grad_norm": float(np.mean(window_gnorm))
                        if window_gnorm
                        else math.nan,
                        "lr": float(lr_fn(step)) if lr_fn is not None else math.nan,
                        "steps_per_sec": window_steps / elapsed,
                        "examples_per_sec": window_steps * batch_size / elapsed,
                        "skipped_steps": window_skipped,
                        "wall_time": time.time(),
                    }
                    history.append(record)
                    bar.set_postfix(
                        loss=f"{record['loss']:.4f}",
                        sps=f"{record['steps_per_sec']:.0f}",
                    )
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                    if writer is not None:
                        for name in (
                            "loss",
                            "grad_norm",
                            "lr",
                            "steps_per_sec",
                            "skipped_steps",
                        ):
                            writer.add_scalar(name, record[name], step)
                    last_loss = window_loss
                    window_t0, window_steps = time.perf_counter(), 0
                    window_loss, window_gnorm, window_skipped = [], [], 0
                if ckpt is not None and (
                    step // checkpoint_every != (step - k) // checkpoint_every
                    or step == steps
                ):
                    save(step, window_loss or last_loss)
                if received:
                    if ckpt is not None:
                        save(step, window_loss or last_loss)
                    raise TrainingInterrupted(received[0], step, ckpt is not None)
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
        if writer is not None:
            writer.close()
        if ckpt is not None:
            ckpt.close()
    return FitResult(state, history)
