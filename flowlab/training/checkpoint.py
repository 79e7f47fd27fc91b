"""Orbax checkpoints of a whole `TrainState`, with metadata and safe restore.

A checkpoint holds the `TrainState` (parameters, optimiser state, EMA, step and
root key) and a JSON item with the resolved config, the data-stream position and the
metrics at that step. Saves are asynchronous; orbax only lists a step once it is
fully written, so an interrupted save is never restored.

A checkpoint that fails to restore (truncated or corrupted files) while an older one
reads back is *quarantined*: its step folder moves to `corrupt/<step>` beside the
others, so orbax no longer lists it and a later save of that step is not skipped,
and the older one is used. `Restored.skipped` lists what was moved and
`Restored.fallback_lines()` says so in one line each, e.g.
`checkpoint at step 3000 is unreadable: moved to checkpoints/corrupt/3000; using
step 2000`. `on_corrupt="raise"` makes any fallback a `CheckpointCorruptError`
instead (nothing is moved).
"""

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from .state import TrainState

__all__ = [
    "CheckpointCorruptError",
    "CheckpointCorruptWarning",
    "Checkpointer",
    "Quarantined",
    "Restored",
    "restore_checkpoint",
]

_ON_CORRUPT = ("warn", "record", "raise")


class CheckpointCorruptWarning(UserWarning):
    """A checkpoint could not be read and was quarantined; an older one was used."""


class CheckpointCorruptError(RuntimeError):
    """The newest checkpoint could not be read and falling back was not allowed.

    Attributes:
        step: the unreadable checkpoint's step.
        older: the newest older step (the one a fallback would try), or `None`.
    """

    def __init__(self, message: str, step: int, older: int | None):
        super().__init__(message)
        self.step = step
        self.older = older


class Quarantined(NamedTuple):
    """An unreadable checkpoint and where its step folder was moved.

    `path` is `None` on processes other than process 0, which leave the move to it;
    `reason` is the read error (kept for debugging, not in the one-line report).
    """

    step: int
    path: Path | None
    reason: str


class Restored(NamedTuple):
    """A restored state, its metadata, the step and folder it came from.

    `skipped` lists the newer checkpoints that did not read back and were
    quarantined (newest first); empty when the newest one was used.
    """

    state: TrainState
    meta: dict[str, Any]
    step: int
    path: Path
    skipped: tuple[Quarantined, ...] = ()

    def fallback_lines(self) -> list[str]:
        """One line per skipped checkpoint: its step, where it went, the step used."""
        lines = []
        for q in self.skipped:
            moved = (
                f"moved to {q.path.relative_to(self.path.parent.parent)}"
                if q.path is not None
                else "moved aside by process 0"
            )
            lines.append(
                f"checkpoint at step {q.step} is unreadable: {moved}; "
                f"using step {self.step}"
            )
        return lines


class _StepLogs(logging.Filter):
    """Holds back orbax's warnings about files in `directory`'s step folders.

    orbax logs (through absl) what it fails to read, e.g. a corrupted
    `_CHECKPOINT_METADATA`, when its manager starts and when it restores. Those
    records are kept per step: a step that is then quarantined is reported by one
    line of ours instead, and the others are logged again afterwards.
    """

    def __init__(self, directory: Path):
        super().__init__()
        self.prefix = str(directory) + os.sep
        self.held: dict[int, list[logging.LogRecord]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        at = text.find(self.prefix)
        step = text[at + len(self.prefix) :].split(os.sep, 1)[0] if at >= 0 else ""
        if not step.isdigit():
            return True
        self.held.setdefault(int(step), []).append(record)
        return False

    @contextlib.contextmanager
    def hold(self):
        logger = logging.getLogger("absl")
        logger.addFilter(self)
        try:
            yield
        finally:
            logger.removeFilter(self)

    def release(self) -> None:
        """Log the records still held (of steps that were not quarantined)."""
        for _, records in sorted(self.held.items()):
            for record in records:
                logging.getLogger(record.name).handle(record)
        self.held.clear()


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())[:limit]
    return "".join(c if c.isprintable() else "?" for c in text)


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {_one_line(str(err))}"


class Checkpointer:
    """Save and restore `TrainState`s under `directory` (an orbax manager).

    Args:
        directory: the checkpoint directory.
        keep: the newest checkpoints to keep (`None` keeps all).
        best_metric: also keep the best checkpoint by this logged metric.
        best_mode: `"min"` or `"max"` for `best_metric`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep: int | None = 3,
        best_metric: str | None = None,
        best_mode: str = "min",
    ):
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be >= 1 or None, got {keep}.")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}.")
        self.directory = Path(directory).absolute()
        self.best_metric = best_metric
        policies = [pp.LatestN(keep)] if keep is not None else [pp.LatestN(None)]
        if best_metric is not None:
            policies.append(
                pp.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    # BestN keeps the end of the sorted order.
                    reverse=best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            create=True,
            cleanup_tmp_directories=True,
            preservation_policy=pp.AnyPreservationPolicy(policies),
        )
        self._logs = _StepLogs(self.directory)
        with self._logs.hold():
            self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(
        self,
        state: TrainState,
        meta: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> bool:
        """Save `state` under its step (asynchronously); `False` if already saved."""
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return False
        meta = dict(meta or {})
        meta["metrics"] = metrics or {}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
        )
        if self.best_metric is not None and self.best_metric not in meta["metrics"]:
            metrics = None
        return self._manager.save(step, args=args, metrics=metrics)

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or `None`."""
        return self._manager.latest_step()

    def restore(
        self, like: TrainState, step: int | None = None, *, on_corrupt: str = "warn"
    ) -> Restored:
        """Restore the checkpoint at `step`, shaped and sharded like `like`.

        With `step=None`, the newest checkpoint that reads back is used. What
        happens to newer ones that do not read back depends on `on_corrupt`:

        - `"warn"`: each is quarantined (moved to `corrupt/<step>`), listed in
          `Restored.skipped`, and reported by a `CheckpointCorruptWarning` whose
          message is its line of `Restored.fallback_lines()`;
        - `"record"`: the same without the warning (the caller reports);
        - `"raise"`: a `CheckpointCorruptError` at the first one; nothing moves.

        Nothing is moved unless an older checkpoint does read back: when none does
        (e.g. `like` has another structure than the run), `FileNotFoundError`
        names the newest one's read error and every folder stays where it is.
        """
        if on_corrupt not in _ON_CORRUPT:
            raise ValueError(
                f"on_corrupt must be one of {list(_ON_CORRUPT)}, got {on_corrupt!r}."
            )
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint under {self.directory}.")
        if step is not None:
            return self._restore(like, step)
        failed: list[tuple[int, str]] = []
        for candidate in reversed(steps):
            try:
                with self._logs.hold():
                    restored = self._restore(like, candidate)
            except Exception as err:  # noqa: BLE001 - any read failure means corrupt
                if on_corrupt == "raise":
                    reason = "; ".join([_reason(err), *self._logs_of(candidate)])
                    self._logs.release()
                    older = [s for s in steps if s < candidate]
                    raise CheckpointCorruptError(
                        f"checkpoint at step {candidate} in {self.directory} is "
                        f"unreadable ({reason}).",
                        candidate,
                        older[-1] if older else None,
                    ) from err
                failed.append((candidate, _reason(err)))
                continue
            skipped = tuple(
                Quarantined(s, self._quarantine(s), "; ".join([r, *self._logs_of(s)]))
                for s, r in failed
            )
            self._logs.release()
            if skipped:
                self._manager.reload()
                restored = restored._replace(skipped=skipped)
                if on_corrupt == "warn":
                    for line in restored.fallback_lines():
                        warnings.warn(line, CheckpointCorruptWarning, stacklevel=2)
            return restored
        self._logs.release()
        newest, reason = failed[0]
        raise FileNotFoundError(
            f"no checkpoint under {self.directory} reads back as this state "
            f"(steps {', '.join(str(s) for s, _ in failed)}); the newest, step "
            f"{newest}: {reason}"
        )

    def _logs_of(self, step: int) -> list[str]:
        """The held-back orbax messages about `step` (no longer logged)."""
        return [_one_line(r.getMessage()) for r in self._logs.held.pop(step, [])]

    def _quarantine(self, step: int) -> Path | None:
        """Move step `step`'s folder to `corrupt/<step>` (`-2`, ... if taken)."""
        if jax.process_index() != 0:
            return None
        corrupt = self.directory / "corrupt"
        target, k = corrupt / str(step), 1
        while target.exists():
            k += 1
            target = corrupt / f"{step}-{k}"
        corrupt.mkdir(exist_ok=True)
        os.replace(self.directory / str(step), target)
        return target

    def _restore(self, like: TrainState, step: int) -> Restored:
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return Restored(out.state, out.meta, step, self.directory / str(step))

    def wait(self) -> None:
        """Block until pending asynchronous saves are written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
        self._logs.release()


def restore_checkpoint(
    directory: str | os.PathLike, like: TrainState, step: int | None = None
) -> TrainState:
    """Restore a `TrainState` saved by `Checkpointer` (newest readable by default).

    Unreadable newer checkpoints are quarantined, each with a
    `CheckpointCorruptWarning` (see `Checkpointer.restore`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist.")
    ckpt = Checkpointer(directory, keep=None)
    try:
        return ckpt.restore(like, step).state
    finally:
        ckpt.close()
