"""ODE solvers by name, and the exact count of vector-field evaluations.

A flowlab solver *is* a diffrax solver: pass any `diffrax.AbstractSolver` instance, or
one of the names in `ODE_SOLVERS`. Classical fourth-order Runge-Kutta, which diffrax
does not ship, is defined here as a diffrax explicit RK method from its tableau.
"""

from collections.abc import Callable, Mapping
from typing import ClassVar

import diffrax
import numpy as np

from .. import registry

__all__ = ["ADAPTIVE", "ODE_SOLVERS", "RK4", "evaluations_per_step", "get_ode_solver"]


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


for _name, _cls in {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "rk4": RK4,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
}.items():
    registry.register("ode_solver", _name, _cls)

ODE_SOLVERS: Mapping[str, Callable[[], diffrax.AbstractSolver]] = registry.table(
    "ode_solver"
)
"""ODE solver names and the diffrax solver classes they build (`flowlab.registry`)."""

ADAPTIVE = frozenset({"tsit5", "dopri5", "dopri8"})
"""Names whose default is adaptive step-size control (the others take `steps`)."""


def get_ode_solver(solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver from a name in `ODE_SOLVERS`, or the solver itself."""
    return _solver("ode_solver", solver)


def _solver(kind: str, solver: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """A diffrax solver object, or one built by name through the registry."""
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    if isinstance(solver, str) and solver in registry.table(kind):
        return registry.build(kind, solver)
    raise ValueError(
        f"unknown {registry.KINDS[kind]} {solver!r}; pass a diffrax solver or one of "
        f"{list(registry.names(kind))}."
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
