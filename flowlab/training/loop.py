"""`fit`: run the jitted train step, log, checkpoint, stop on a non-finite loss."""

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from ..data import AbstractSampler
from ..losses import FlowMatchingLoss, ModelFn
from .checkpoint import Checkpointer
from .optim import make_optimizer
from .state import TrainState, init_state
from .step import Coupling, make_train_step

__all__ = ["FitResult", "NonFiniteLossError", "fit"]


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


class FitResult(NamedTuple):
    """The final state and the logged metrics (one dict per log line)."""

    state: TrainState
    history: list[dict[str, float]]


def _stack_batches(batches: Iterator[Any], k: int) -> Any:
    chunk = [next(batches) for _ in range(k)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *chunk)


def fit(
    model_fn: ModelFn,
    params: PyTree,
    loss: FlowMatchingLoss,
    *,
    source: AbstractSampler,
    target: AbstractSampler | Iterable[Any],
    key: PRNGKeyArray,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation | None = None,
    lr_fn: Callable[[Any], Any] | None = None,
    coupling: Coupling | None = None,
    ema_decay: float = 0.999,
    steps_per_call: int = 10,
    log_every: int = 100,
    out_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    state: TrainState | None = None,
    progress: bool = True,
) -> FitResult:
    """Train `model_fn` by flow matching for `steps` steps.

    Args:
        model_fn, params: the per-sample model and its initial parameters.
        loss: the regression (path, prediction, time sampling).
        source: sampler of `x0`.
        target: a sampler of `x1` (drawn on device each step; `data.Empirical`
            holds a data set), or an iterable of host batches `x1` / `(x1, cond)`.
        key: root PRNG key of the run (ignored when `state` is given).
        steps: total number of steps (a resumed `state` continues up to it).
        batch_size: rows per step.
        optimizer: an optax transformation (default AdamW, lr 1e-3).
        lr_fn: the learning-rate schedule, only for logging.
        coupling: optional minibatch coupling.
        ema_decay: EMA decay of the sampling parameters.
        steps_per_call: steps fused into one compiled call (`lax.scan`).
        log_every: steps between metric lines (rounded up to whole calls).
        out_dir: where `metrics.jsonl` and `checkpoints/` go (nothing written if
            `None`).
        checkpoint_every: steps between checkpoints (needs `out_dir`); a
            checkpoint is also written at the end.
        state: a `TrainState` to continue from.
        progress: show a progress bar.

    Raises:
        NonFiniteLossError: the loss or gradient norm became non-finite; the state
            of that step is not saved, and the message names the last checkpoint.
    """
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("log_every", log_every),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if checkpoint_every is not None and out_dir is None:
        raise ValueError("checkpoint_every needs out_dir to write checkpoints to.")
    if optimizer is None:
        optimizer, lr_fn = make_optimizer("adamw", 1e-3, total_steps=steps)
    if state is None:
        state = init_state(key, params, optimizer)
    is_sampler = isinstance(target, AbstractSampler)
    batches = None if is_sampler else iter(target)

    def build(k: int):
        step_fn = make_train_step(
            model_fn,
            loss,
            optimizer,
            source=source,
            batch_size=batch_size,
            coupling=coupling,
            ema_decay=ema_decay,
            steps_per_call=k,
        )
        return jax.jit(step_fn, donate_argnums=0)

    compiled: dict[int, Any] = {}
    history: list[dict[str, float]] = []
    ckpt = metrics_file = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics_file = open(out_dir / "metrics.jsonl", "a")  # noqa: SIM115
        if checkpoint_every is not None:
            ckpt = Checkpointer(out_dir / "checkpoints")
    last_saved = None if ckpt is None else ckpt.latest_step()

    start = int(state.step)
    bar = tqdm(
        total=steps,
        initial=start,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
    )
    window_t0, window_steps, window_loss, window_gnorm = time.perf_counter(), 0, [], []
    step = start
    try:
        while step < steps:
            k = min(steps_per_call, steps - step)
            if k not in compiled:
                compiled[k] = build(k)
            if is_sampler:
                batch = target
            elif k == 1:
                batch = next(batches)
            else:
                batch = _stack_batches(batches, k)
            new_state, metrics = compiled[k](state, batch)
            metrics = jax.device_get(metrics)
            losses = np.atleast_1d(metrics["loss"])
            gnorms = np.atleast_1d(metrics["grad_norm"])
            for quantity, values in (("loss", losses), ("gradient norm", gnorms)):
                bad = np.flatnonzero(~np.isfinite(values))
                if bad.size:
                    raise NonFiniteLossError(
                        step + int(bad[0]) + 1, quantity, last_saved
                    )
            state, step = new_state, step + k
            bar.update(k)
            window_steps += k
            window_loss.extend(losses.tolist())
            window_gnorm.extend(gnorms.tolist())
            if step // log_every != (step - k) // log_every or step == steps:
                elapsed = time.perf_counter() - window_t0
                record = {
                    "step": step,
                    "loss": float(np.mean(window_loss)),
                    "grad_norm": float(np.mean(window_gnorm)),
                    "lr": float(lr_fn(step)) if lr_fn is not None else math.nan,
                    "steps_per_sec": window_steps / elapsed,
                    "examples_per_sec": window_steps * batch_size / elapsed,
                    "wall_time": time.time(),
                }
                history.append(record)
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}", sps=f"{record['steps_per_sec']:.0f}"
                )
                if metrics_file is not None:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                window_t0, window_steps, window_loss, window_gnorm = (
                    time.perf_counter(),
                    0,
                    [],
                    [],
                )
            if ckpt is not None and (
                step // checkpoint_every != (step - k) // checkpoint_every
                or step == steps
            ):
                ckpt.save(state)
                last_saved = step
    finally:
        bar.close()
        if metrics_file is not None:
            metrics_file.close()
        if ckpt is not None:
            ckpt.close()
    return FitResult(state, history)
