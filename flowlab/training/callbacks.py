"""The optional work of a training run, as small objects `fit` calls at fixed points.

`fit` runs the compiled step over and over; everything else it does is a callback:
the progress bar, `metrics.jsonl`, TensorBoard, checkpoints and signal handling.
A user's own callback subclasses `Callback` and overrides any of its four hooks:

| hook | when |
| :--- | :--- |
| `on_start(run)` | before the first step (after every argument was checked) |
| `on_call(run, metrics)` | after each compiled call of `k` steps, its state accepted |
| `on_log(run, record)` | at each logged line (`log_every`), with that line |
| `on_end(run)` | once at the end, also when the run stops with an error |

`run` is the `Run` being trained: its `state`, `step`, `steps`, `history` and the
run's settings. Callbacks are host-side objects with state of their own (open files,
a progress bar), so, unlike the library's pytrees, they are plain Python classes.

```python
class PrintLoss(flowlab.training.Callback):
    def on_log(self, run, record):
        print(run.step, record["loss"])

flowlab.fit(..., callbacks=[PrintLoss()])
```
"""

import contextlib
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm.auto import tqdm

from .checkpoint import Checkpointer
from .state import TrainState

__all__ = [
    "Callback",
    "Checkpoints",
    "MetricsFile",
    "ProgressBar",
    "Run",
    "Signals",
    "TensorBoard",
    "TrainingInterrupted",
]


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


@dataclass
class Run:
    """A training run as the callbacks see it.

    Attributes:
        state: the latest accepted `TrainState` (after `on_call`'s call).
        step: its step.
        steps: the step the run trains to.
        batch_size: the global batch per step.
        history: the logged records so far (what `fit` returns).
        last_checkpoint: the step of the newest checkpoint, or `None`.
        stop_signal: a signal number once SIGINT/SIGTERM asked the run to stop.
        recent_loss: the mean loss of the steps since the last log line (or of
            the last logged window when none were run since).
    """

    state: TrainState
    step: int
    steps: int
    batch_size: int
    history: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: int | None = None
    stop_signal: int | None = None
    recent_loss: float | None = None


class Callback:
    """A hook into `fit`'s loop; override any of the four methods (module doc)."""

    def on_start(self, run: Run) -> None:
        """Before the first step."""

    def on_call(self, run: Run, metrics: dict[str, np.ndarray]) -> None:
        """After each compiled call; `metrics` holds one value per step run."""

    def on_log(self, run: Run, record: dict[str, float]) -> None:
        """At each logged line."""

    def on_end(self, run: Run) -> None:
        """Once at the end, also on errors (close what `on_start` opened)."""


def _in_notebook() -> bool:
    """Whether `tqdm.auto` chose its notebook widget (a Jupyter kernel)."""
    return any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)


class ProgressBar(Callback):
    """Training progress on stderr: a tqdm bar, or plain lines in a log.

    On a terminal (or in a notebook) it is a tqdm bar of steps with the loss and
    steps/s of the last logged line. When `stream` is not a terminal (a log file,
    a pipe, a batch job) it writes plain lines instead of carriage-return frames:
    one each `every` steps (a tenth of the steps left to train) or `seconds`
    (30 s), whichever comes first, and one at the end, e.g.
    `step 3000/10000 loss 2.810 412 steps/s eta 17 s`, with the mean loss since
    the last log line and the rate since the previous line.

    Args:
        stream: where to write (default `sys.stderr` when training starts).
        plain: force plain lines (`True`) or the bar (`False`); `None` decides
            from the stream.
        every: steps between plain lines (default a tenth of those to train).
        seconds: the longest time between plain lines.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        plain: bool | None = None,
        every: int | None = None,
        seconds: float = 30.0,
    ):
        self.stream = stream
        self.plain = plain
        self.every = every
        self.seconds = seconds
        self._bar = None
        self._stream = None
        self._every = 1
        self._last: tuple[int, float] | None = None  # (step, time) of the last line

    def on_start(self, run: Run) -> None:
        stream = sys.stderr if self.stream is None else self.stream
        self._stream = stream
        plain = self.plain
        if plain is None:
            plain = not (_in_notebook() or getattr(stream, "isatty", bool)())
        if plain:
            self._every = self.every or max(math.ceil((run.steps - run.step) / 10), 1)
            self._last = (run.step, time.perf_counter())
        else:
            self._bar = tqdm(
                total=run.steps,
                initial=run.step,
                unit="step",
                dynamic_ncols=True,
                file=stream,
            )

    def on_call(self, run: Run, metrics: dict[str, np.ndarray]) -> None:
        if self._bar is not None:
            self._bar.update(run.step - self._bar.n)
            return
        step, t = self._last
        due = run.step - step >= self._every
        if due or time.perf_counter() - t >= self.seconds:
            self._line(run)

    def on_log(self, run: Run, record: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{record['loss']:.4f}", sps=f"{record['steps_per_sec']:.0f}"
            )

    def on_end(self, run: Run) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._last is not None and self._last[0] != run.step:
            self._line(run)

    def _line(self, run: Run) -> None:
        step, t = self._last
        now = time.perf_counter()
        rate = (run.step - step) / max(now - t, 1e-9)
        loss = "nan" if run.recent_loss is None else f"{run.recent_loss:#.4g}"
        line = f"step {run.step}/{run.steps} loss {loss} {rate:.0f} steps/s"
        if run.step < run.steps and rate > 0:
            line += f" eta {(run.steps - run.step) / rate:.0f} s"
        self._stream.write(line + "\n")
        self._stream.flush()
        self._last = (run.step, now)


class MetricsFile(Callback):
    """Append each logged line to a JSON-lines file (`metrics.jsonl`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = None

    def on_start(self, run: Run) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")  # noqa: SIM115  (closed in on_end)

    def on_log(self, run: Run, record: dict[str, float]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def on_end(self, run: Run) -> None:
        if self._file is not None:
            self._file.close()


class TensorBoard(Callback):
    """TensorBoard event files of the logged scalars (needs `tensorboardX`)."""

    SCALARS = ("loss", "grad_norm", "lr", "steps_per_sec", "skipped_steps")

    def __init__(self, log_dir: str | Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ValueError(
                "tensorboard=True needs tensorboardX: pip install "
                "'flowlab[tensorboard]'."
            ) from err
        self._writer_cls = SummaryWriter
        self.log_dir = Path(log_dir)
        self._writer = None

    def on_start(self, run: Run) -> None:
        self._writer = self._writer_cls(str(self.log_dir))

    def on_log(self, run: Run, record: dict[str, float]) -> None:
        for name in self.SCALARS:
            self._writer.add_scalar(name, record[name], run.step)

    def on_end(self, run: Run) -> None:
        if self._writer is not None:
            self._writer.close()


class Checkpoints(Callback):
    """Orbax checkpoints every `every` steps, at the end, and when a signal stops.

    Each checkpoint holds the whole state, `meta` (JSON-able, e.g. the config) with
    the data position of an iterable target, and the recent loss (for
    `best_metric`).
    """

    def __init__(
        self,
        directory: str | Path,
        every: int,
        *,
        keep: int | None = 3,
        best_metric: str | None = None,
        meta: dict[str, Any] | None = None,
        track_data_position: bool = False,
    ):
        self.directory = Path(directory)
        self.every = every
        self.keep = keep
        self.best_metric = best_metric
        self.meta = dict(meta or {})
        self.track_data_position = track_data_position
        self._ckpt = None

    def on_start(self, run: Run) -> None:
        self._ckpt = Checkpointer(self.directory, self.keep, self.best_metric)
        run.last_checkpoint = self._ckpt.latest_step()

    def on_call(self, run: Run, metrics: dict[str, np.ndarray]) -> None:
        k = len(np.atleast_1d(metrics["loss"]))
        due = run.step // self.every != (run.step - k) // self.every
        if due or run.step == run.steps or run.stop_signal is not None:
            meta = dict(self.meta)
            meta["data_position"] = run.step if self.track_data_position else None
            scores = {} if run.recent_loss is None else {"loss": run.recent_loss}
            self._ckpt.save(run.state, meta, scores)
            run.last_checkpoint = run.step

    def on_end(self, run: Run) -> None:
        if self._ckpt is not None:
            self._ckpt.close()


class Signals(Callback):
    """On SIGINT/SIGTERM finish the current call, then stop (after a checkpoint).

    The signal is recorded, not acted on mid-step; `fit` raises
    `TrainingInterrupted` after the callbacks of that call ran (so `Checkpoints`
    saves first). A second signal gives up at once. Only the main thread can
    install handlers; elsewhere this does nothing.
    """

    def __init__(self):
        self._received: list[int] = []
        self._stack = contextlib.ExitStack()

    def on_start(self, run: Run) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        received = self._received
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            if received:  # a second signal: give up at once
                signal.signal(signum, previous[signum])
                signal.raise_signal(signum)
            received.append(signum)

        for s in previous:
            signal.signal(s, handler)

        def restore():
            for s, h in previous.items():
                signal.signal(s, h)

        self._stack.callback(restore)

    def on_call(self, run: Run, metrics: dict[str, np.ndarray]) -> None:
        if self._received and run.stop_signal is None:
            run.stop_signal = self._received[0]

    def on_end(self, run: Run) -> None:
        self._stack.close()
