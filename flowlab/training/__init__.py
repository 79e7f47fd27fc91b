"""Training: the state, the pure jitted step, optimisers, checkpoints and `fit`."""

from .checkpoint import Checkpointer, restore_checkpoint
from .loop import FitResult, NonFiniteLossError, fit
from .optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from .state import TrainState, init_state
from .step import Coupling, make_train_step, split_batch

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Checkpointer",
    "Coupling",
    "FitResult",
    "NonFiniteLossError",
    "TrainState",
    "fit",
    "init_state",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "restore_checkpoint",
    "split_batch",
]
