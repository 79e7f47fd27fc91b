"""Sampling and scoring with diffrax: ODE integration and log-likelihoods."""

from .conditioned import conditioned_field
from .likelihood import log_likelihood, standard_normal_log_prob
from .marginal_sdes import interpolant_sde, reverse_diffusion_sde
from .ode import ODESolution, sample_ode
from .sde import SDE, SDE_SOLVERS, SDESolution, get_sde_solver, sample_sde
from .solvers import ADAPTIVE, ODE_SOLVERS, RK4, evaluations_per_step, get_ode_solver

__all__ = [
    "ADAPTIVE",
    "ODE_SOLVERS",
    "RK4",
    "SDE",
    "SDE_SOLVERS",
    "ODESolution",
    "SDESolution",
    "conditioned_field",
    "evaluations_per_step",
    "get_ode_solver",
    "get_sde_solver",
    "interpolant_sde",
    "log_likelihood",
    "reverse_diffusion_sde",
    "sample_ode",
    "sample_sde",
    "standard_normal_log_prob",
]
