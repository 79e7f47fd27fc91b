"""flowlab: generative transport models in JAX.

Probability paths, couplings, flow-matching training and diffrax sampling as pure
functions and immutable pytrees.

The subpackages and names below are imported on first use (`flowlab._lazy`), so
`import flowlab` and the command line's `--help` start without loading JAX.
"""

from . import _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=(
        "conditioning",
        "couplings",
        "data",
        "flowmaps",
        "losses",
        "manifolds",
        "metrics",
        "models",
        "paths",
        "registry",
        "sampling",
        "schedules",
        "time_samplers",
        "training",
    ),
    attributes={
        "FlowMatchingLoss": "losses",
        "InterpolantLoss": "losses",
        "MultimarginalLoss": "losses",
        "AffinePath": "paths",
        "MultimarginalInterpolant": "paths",
        "PathSample": "paths",
        "StochasticInterpolant": "paths",
        "Likelihood": "sampling",
        "ODESolution": "sampling",
        "SDESolution": "sampling",
        "change_schedule": "sampling",
        "log_likelihood": "sampling",
        "sample_and_log_prob": "sampling",
        "sample_ode": "sampling",
        "sample_sde": "sampling",
        "velocity_field": "sampling",
        "Schedule": "schedules",
        "ScheduleOutput": "schedules",
        "sample_flow_map": "flowmaps",
        "TrainState": "training",
        "fit": "training",
        "make_train_step": "training",
    },
)
