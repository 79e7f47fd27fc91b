"""Sampling and scoring with diffrax: ODE integration and log-likelihoods."""

from .likelihood import log_likelihood, standard_normal_log_prob
from .ode import ODESolution, sample_ode
from .solvers import ADAPTIVE, ODE_SOLVERS, RK4, evaluations_per_step, get_ode_solver

__all__ = [
    "ADAPTIVE",
    "ODE_SOLVERS",
    "RK4",
    "ODESolution",
    "evaluations_per_step",
    "get_ode_solver",
    "log_likelihood",
    "sample_ode",
    "standard_normal_log_prob",
]
