"""Training: the state, the pure step, `fit` and its callbacks, meshes, checkpoints."""

from .._allocator import retain_freed_memory
from .callbacks import (
    Callback,
    Checkpoints,
    MetricsFile,
    ProgressBar,
    Run,
    Signals,
    TensorBoard,
    TrainingInterrupted,
)
from .checkpoint import (
    CheckpointCorruptError,
    CheckpointCorruptWarning,
    Checkpointer,
    Quarantined,
    Restored,
    restore_checkpoint,
)
from .loop import FitResult, fit
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
from .nonfinite import (
    AbstractNonFinitePolicy,
    NonFiniteLossError,
    SkipNonFinite,
    StopOnNonFinite,
)
from .optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from .state import TrainState, init_state
from .step import Coupling, make_train_step, split_batch

__all__ = [
    "DATA_AXIS",
    "OPTIMIZERS",
    "SCHEDULES",
    "AbstractNonFinitePolicy",
    "Callback",
    "CheckpointCorruptError",
    "CheckpointCorruptWarning",
    "Checkpointer",
    "Checkpoints",
    "Coupling",
    "FitResult",
    "MetricsFile",
    "NonFiniteLossError",
    "ProgressBar",
    "Quarantined",
    "Restored",
    "Run",
    "Signals",
    "SkipNonFinite",
    "StopOnNonFinite",
    "TensorBoard",
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
