"""Sampling and scoring with diffrax: ODE and SDE integration and log-likelihoods."""

from ._brownian import AbstractBrownian, BrownianIncrements, BrownianTree
from ._divergence import AbstractDivergence, ExactDivergence, HutchinsonDivergence
from .conditioned import conditioned_field
from .guidance import GuidedField, guided_field
from .likelihood import (
    Likelihood,
    log_likelihood,
    sample_and_log_prob,
    standard_normal_log_prob,
)
from .manifold_solvers import (
    AbstractManifoldSolver,
    GeodesicRK,
    ProjectedRK,
    RKTableau,
    get_manifold_solver,
)
from .marginal_sdes import interpolant_sde, reverse_diffusion_sde
from .ode import ODESolution, sample_ode
from .prediction import velocity_field
from .schedule_change import (
    ScheduleChangeTimes,
    change_schedule,
    schedule_change_times,
)
from .sde import SDE, SDESolution, sample_sde
from .solvers import (
    ADAPTIVE,
    ODE_SOLVERS,
    RK4,
    SDE_SOLVERS,
    evaluations_per_step,
    get_ode_solver,
    get_sde_solver,
)

__all__ = [
    "ADAPTIVE",
    "ODE_SOLVERS",
    "RK4",
    "SDE",
    "SDE_SOLVERS",
    "AbstractBrownian",
    "AbstractDivergence",
    "AbstractManifoldSolver",
    "BrownianIncrements",
    "BrownianTree",
    "ExactDivergence",
    "GeodesicRK",
    "GuidedField",
    "HutchinsonDivergence",
    "Likelihood",
    "ODESolution",
    "ProjectedRK",
    "RKTableau",
    "SDESolution",
    "ScheduleChangeTimes",
    "change_schedule",
    "conditioned_field",
    "evaluations_per_step",
    "get_manifold_solver",
    "get_ode_solver",
    "get_sde_solver",
    "guided_field",
    "interpolant_sde",
    "log_likelihood",
    "reverse_diffusion_sde",
    "sample_and_log_prob",
    "sample_ode",
    "sample_sde",
    "schedule_change_times",
    "standard_normal_log_prob",
    "velocity_field",
]
