"""Training: the state, the pure jitted step, meshes, optimisers, checkpoints, `fit`."""

from .allocator import retain_freed_memory
from .checkpoint import (
    CheckpointCorruptWarning,
    Checkpointer,
    Restored,
    restore_checkpoint,
)
from .loop import FitResult, NonFiniteLossError, TrainingInterrupted, fit
from .mesh import (
    DATA_AXIS,
    batch_sharding,
    initialize_distributed,
    make_mesh,
    put_global,
    replicated,
    state_sharding,
    to_local,
)
from .optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from .state import TrainState, init_state
from .step import Coupling, make_train_step, split_batch

__all__ = [
    "DATA_AXIS",
    "OPTIMIZERS",
    "SCHEDULES",
    "CheckpointCorruptWarning",
    "Checkpointer",
    "Coupling",
    "FitResult",
    "NonFiniteLossError",
    "Restored",
    "TrainState",
    "TrainingInterrupted",
    "batch_sharding",
    "fit",
    "init_state",
    "initialize_distributed",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "put_global",
    "replicated",
    "restore_checkpoint",
    "retain_freed_memory",
    "split_batch",
    "state_sharding",
    "to_local",
]
