"""Orbax checkpoints of a whole `TrainState`."""

import os
from pathlib import Path

import orbax.checkpoint as ocp

from .state import TrainState

__all__ = ["Checkpointer", "restore_checkpoint"]


class Checkpointer:
    """Save `TrainState`s under `directory` with an `orbax` `CheckpointManager`.

    Saves are asynchronous; `close()` waits for the last one. Only complete
    checkpoints are ever listed by orbax, so an interrupted save is never restored.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, state: TrainState) -> None:
        """Save `state` under its step number (a no-op if that step is saved)."""
        step = int(state.step)
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or `None`."""
        return self._manager.latest_step()

    def restore(self, like: TrainState, step: int | None = None) -> TrainState:
        """Restore the checkpoint at `step` (default newest) shaped like `like`."""
        step = self._manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self.directory}.")
        return self._manager.restore(step, args=ocp.args.StandardRestore(like))

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def restore_checkpoint(
    directory: str | os.PathLike, like: TrainState, step: int | None = None
) -> TrainState:
    """Restore a `TrainState` saved by `Checkpointer` (newest step by default)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist.")
    ckpt = Checkpointer(directory, max_to_keep=None)
    try:
        return ckpt.restore(like, step)
    finally:
        ckpt.close()
