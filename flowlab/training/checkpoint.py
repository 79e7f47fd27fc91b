"""Orbax checkpoints of a whole `TrainState`, with metadata and safe restore.

A checkpoint holds the `TrainState` (parameters, optimiser state, EMA, step and
root key) and a JSON item with the resolved config, the data-stream position and the
metrics at that step. Saves are asynchronous; orbax only lists a step once it is
fully written, so an interrupted save is never restored. A checkpoint that fails to
restore (truncated or corrupted files) is reported with a warning and the previous
one is used.
"""

import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from .state import TrainState

__all__ = ["Checkpointer", "CheckpointCorruptWarning", "Restored", "restore_checkpoint"]


class CheckpointCorruptWarning(UserWarning):
    """A checkpoint could not be read; an older one was used."""


class Restored(NamedTuple):
    """A restored state, its metadata and the step it came from."""

    state: TrainState
    meta: dict[str, Any]
    step: int


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

    def restore(self, like: TrainState, step: int | None = None) -> Restored:
        """Restore the checkpoint at `step`, shaped and sharded like `like`.

        With `step=None`, the newest checkpoint that reads back is used: each one
        that fails is reported with a `CheckpointCorruptWarning`.
        """
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint under {self.directory}.")
        if step is not None:
            return self._restore(like, step)
        for candidate in reversed(steps):
            try:
                return self._restore(like, candidate)
            except Exception as err:  # noqa: BLE001 - any read failure means corrupt
                older = [s for s in steps if s < candidate]
                fallback = f"using step {older[-1]}" if older else "no older one"
                warnings.warn(
                    f"checkpoint at step {candidate} in {self.directory} is unreadable "
                    f"({type(err).__name__}: {str(err)[:200]}); {fallback}.",
                    CheckpointCorruptWarning,
                    stacklevel=2,
                )
        raise FileNotFoundError(f"no readable checkpoint under {self.directory}.")

    def _restore(self, like: TrainState, step: int) -> Restored:
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return Restored(out.state, out.meta, step)

    def wait(self) -> None:
        """Block until pending asynchronous saves are written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def restore_checkpoint(
    directory: str | os.PathLike, like: TrainState, step: int | None = None
) -> TrainState:
    """Restore a `TrainState` saved by `Checkpointer` (newest readable by default)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist.")
    ckpt = Checkpointer(directory, keep=None)
    try:
        return ckpt.restore(like, step).state
    finally:
        ckpt.close()
