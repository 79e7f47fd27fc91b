"""flowlab: generative transport models in JAX.

Probability paths, couplings, flow-matching training and diffrax sampling as pure
functions and immutable pytrees.
"""

from . import (
    couplings,
    data,
    losses,
    manifolds,
    metrics,
    models,
    paths,
    registry,
    sampling,
    schedules,
    time_samplers,
    training,
)
from .losses import FlowMatchingLoss, InterpolantLoss, MultimarginalLoss
from .paths import (
    AffinePath,
    MultimarginalInterpolant,
    PathSample,
    StochasticInterpolant,
)
from .sampling import ODESolution, SDESolution, log_likelihood, sample_ode, sample_sde
from .schedules import Schedule, ScheduleOutput
from .training import TrainState, fit, make_train_step

__version__ = "0.1.0"

__all__ = [
    "AffinePath",
    "FlowMatchingLoss",
    "InterpolantLoss",
    "MultimarginalInterpolant",
    "MultimarginalLoss",
    "ODESolution",
    "PathSample",
    "SDESolution",
    "Schedule",
    "ScheduleOutput",
    "StochasticInterpolant",
    "TrainState",
    "couplings",
    "data",
    "fit",
    "log_likelihood",
    "losses",
    "make_train_step",
    "manifolds",
    "metrics",
    "models",
    "paths",
    "registry",
    "sample_ode",
    "sample_sde",
    "sampling",
    "schedules",
    "time_samplers",
    "training",
]
