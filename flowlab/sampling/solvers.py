"""ODE and SDE solvers by name, and the exact count of vector-field evaluations.

A flowlab solver *is* a diffrax solver: pass any `diffrax.AbstractSolver` instance, or
one of the names in `ODE_SOLVERS` (`sample_ode`) or `SDE_SOLVERS` (`sample_sde`).
Classical fourth-order Runge-Kutta, which diffrax does not ship, is defined here as a
diffrax explicit RK method from its tableau.
"""

from collections.abc import Callable, Mapping
from typing import ClassVar

import diffrax
import numpy as np

from .. import registry
from . import _common

__all__ = [
    "ADAPTIVE",
    "ODE_SOLVERS",
    "RK4",
    "SDE_SOLVERS",
    "evaluations_per_step",
    "get_ode_solver",
    "get_sde_solver",
]


_rk4_tableau = diffrax.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]) - np.array([0.0, 0.0, 0.0, 1.0]),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class RK4(diffrax.AbstractERK):
    r"""The classical fourth-order Runge-Kutta method (4 stages).

    The embedded error estimate compares the RK4 step with $y_0 + h k_4$ (a step
    along the last stage's slope), which is only first order: use RK4 with a
    constant step size.
    """

    tableau: ClassVar[diffrax.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., diffrax.AbstractLocalInterpolation]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        """Order of convergence: 4."""
        return 4


for _kind, _classes in {
    "ode_solver": {
        "euler": diffrax.Euler,
        "heun": diffrax.Heun,
        "midpoint": diffrax.Midpoint,
        "rk4": RK4,
        "tsit5": diffrax.Tsit5,
        "dopri5": diffrax.Dopri5,
        "dopri8": diffrax.Dopri8,
    },
    "sde_solver": {
        "euler_maruyama": diffrax.Euler,
        "heun": diffrax.Heun,
        "sea": diffrax.SEA,
        "shark": diffrax.ShARK,
        "sra1": diffrax.SRA1,
    },
}.items():
    for _name, _cls in _classes.items():
        registry.register(_kind, _name, _cls)

ODE_SOLVERS: Mapping[str, Callable[[], diffrax.AbstractSolver]] = registry.table(
    "ode_solver"
)
"""ODE solver names and the diffrax solver classes they build (`flowlab.registry`)."""

SDE_SOLVERS: Mapping[str, Callable[[], diffrax.AbstractSolver]] = registry.table(
    "sde_solver"
)
"""SDE solver names and the diffrax solvers they build (`flowlab.registry`).

`"euler_maruyama"` (strong order 1/2, 1 for additive noise) solves any Itô SDE. The
others are Stratonovich solvers, which solve the Itô SDE only for additive noise
(a diffusion independent of `x`, where the two agree; `sample_sde` checks): diffrax's
additive-noise stochastic Runge-Kutta methods `"sea"` (1 drift evaluation per step,
strong order 1), `"shark"` and `"sra1"` (2, strong order 1.5), and `"heun"` (2).
"""

ADAPTIVE = frozenset({"tsit5", "dopri5", "dopri8"})
"""Names whose default is adaptive step-size control (the others take `steps`)."""


def get_ode_solver(solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver from a name in `ODE_SOLVERS`, or the solver itself."""
    return _solver("ode_solver", solver)


def get_sde_solver(solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver from a name in `SDE_SOLVERS`, or the solver itself."""
    return _solver("sde_solver", solver)


def _solver(kind: str, solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver object, or one built by name through the registry."""
    return _common.from_name(
        kind, "solver", solver, diffrax.AbstractSolver, "a diffrax solver"
    )


def evaluations_per_step(solver: diffrax.AbstractSolver) -> tuple[int, int] | None:
    """`(per_step, once)` vector-field evaluations of an explicit RK solver.

    First-same-as-last methods (Tsit5, Dopri5) reuse the last stage of one step as
    the first of the next: they cost one evaluation less per step and one extra at
    the start. Returns `None` for solvers without a Butcher tableau.
    """
    tableau = getattr(solver, "tableau", None)
    if not isinstance(tableau, diffrax.ButcherTableau):
        return None
    stages = len(tableau.c) + 1
    if tableau.fsal:
        return stages - 1, 1
    return stages, 0


def _ode_evaluations(solver: diffrax.AbstractSolver) -> tuple[int, int]:
    """`evaluations_per_step`, with Euler's `(1, 0)` and `(-1, 0)` where unknown.

    A solver that counts its own (a manifold solver's `evaluations`) says so.
    """
    counted = getattr(solver, "evaluations", None)
    if counted is not None:
        return counted
    per_step = evaluations_per_step(solver)
    if per_step is None:
        return (1, 0) if isinstance(solver, diffrax.Euler) else (-1, 0)
    return per_step


def _drift_evaluations(solver: diffrax.AbstractSolver) -> tuple[int, int]:
    """`(per_step, 0)` drift evaluations of an SDE solver; `(-1, 0)` where unknown."""
    if isinstance(solver, diffrax.Euler | diffrax.EulerHeun | diffrax.ItoMilstein):
        return 1, 0
    if isinstance(solver, diffrax.AbstractSRK):
        ignored = solver.tableau.ignore_stage_f
        skipped = 0 if ignored is None else int(ignored.sum())
        return len(solver.tableau.b_sol) - skipped, 0
    per_step = evaluations_per_step(solver)
    if per_step is None or per_step[1] != 0:
        return -1, 0
    return per_step
