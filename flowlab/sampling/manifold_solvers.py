r"""Solvers that step along a manifold, as diffrax solvers.

`sample_ode(v, x0, manifold=m)` and `log_likelihood(v, x1, manifold=m)` integrate
with these; any of them also goes straight to `diffrax.diffeqsolve`. Two ways of
keeping an explicit Runge-Kutta method on the manifold:

- **Geodesic** (`GeodesicRK`, the default): each step is the Runge-Kutta method in
  the normal coordinates centred at the step's start $x$. A point there is a tangent
  vector $\xi \in T_x M$, mapped to the manifold by $\exp_x$, and the field pulls back
  to $w(\xi) = d(\log_x)_{y}\,[v(t, y)]$ with $y = \exp_x \xi$ (one `jax.jvp` of
  `logmap`). Starting from $\xi = 0$ the stages and the step are the method's own,
  in a chart, and the step ends at $\exp_x(\xi_1)$. A method of order $p$ keeps its
  order $p$ on any manifold, and every point it visits is an `expmap` image, on the
  manifold to rounding. Euler is $x_{n+1} = \exp_{x_n}(h\,v(t_n, x_n))$.
- **Projected** (`ProjectedRK`): the method in the ambient coordinates on the
  extended field $y \mapsto \mathrm{proju}_{\bar y}\, v(t, \bar y)$,
  $\bar y = \mathrm{projx}(y)$, with each stage point and each step's end
  projected back by `projx` (the projection methods of Hairer, Lubich and Wanner,
  *Geometric Numerical Integration*, IV.4). It keeps the order too; a step costs no
  `jvp` and no `logmap`, but it needs a `projx` that is a smooth retraction.

The method is a Butcher tableau (`RKTableau`): `EULER`, `MIDPOINT`, `RK4` for fixed
steps, and `DOPRI5`, `TSIT5` with their embedded error estimates, which makes the
solver adaptive (the error is measured in the chart: tangent vectors at $x$, or the
ambient step of the projected method). First-same-as-last tableaus reuse the last
stage's field value as the next step's first.

The state is the batch of points `(batch, *manifold.shape)`, or a pytree whose first
leaf is; any other leaves (the log-density of `log_likelihood`) are Euclidean and
step with the same tableau. Between steps a saved trajectory follows the geodesic
between the two step ends (`GeodesicInterpolation`), so it stays on the manifold too.

Names (`"euler"`, `"midpoint"`, `"rk4"`, `"dopri5"`, `"tsit5"` for the geodesic
methods; `"projected_euler"` and so on for the projected ones) are the registry's
`"manifold_solver"` entries; `get_manifold_solver(name, manifold)` builds one.
"""

import abc
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, PyTree

from .. import registry
from ..manifolds import AbstractManifold
from .solvers import _rk4_tableau

__all__ = [
    "DOPRI5",
    "EULER",
    "MIDPOINT",
    "RK4_TABLEAU",
    "TSIT5",
    "AbstractManifoldSolver",
    "GeodesicInterpolation",
    "GeodesicRK",
    "ProjectedRK",
    "RKTableau",
    "get_manifold_solver",
]


class RKTableau(NamedTuple):
    """An explicit Runge-Kutta method: its Butcher tableau and order.

    Attributes:
        c: the times of stages 2..s, as fractions of the step.
        a: the rows of the strictly lower triangle, one per stage 2..s.
        b: the weights of the s stages in the step.
        b_error: the weights of the embedded error estimate, or `None` for a
            fixed-step method.
        order: the order of convergence.
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None
    order: int

    @property
    def stages(self) -> int:
        """The number of field evaluations of a step (before reuse)."""
        return len(self.b)

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is the step's end, at time 1."""
        return (
            bool(self.c)
            and self.c[-1] == 1.0
            and self.a[-1] == self.b[:-1]
            and (self.b[-1] == 0.0)
        )

    @classmethod
    def from_diffrax(
        cls, tableau: diffrax.ButcherTableau, order: int, adaptive: bool
    ) -> "RKTableau":
        """The tableau of a diffrax explicit Runge-Kutta method."""
        as_tuple = lambda a: tuple(float(v) for v in np.asarray(a))  # noqa: E731
        return cls(
            c=as_tuple(tableau.c),
            a=tuple(as_tuple(row) for row in tableau.a_lower),
            b=as_tuple(tableau.b_sol),
            b_error=as_tuple(tableau.b_error) if adaptive else None,
            order=order,
        )


EULER = RKTableau(c=(), a=(), b=(1.0,), b_error=None, order=1)
"""Euler's method (one stage, order 1)."""
MIDPOINT = RKTableau.from_diffrax(diffrax.Midpoint.tableau, 2, adaptive=False)
"""The explicit midpoint method (two stages, order 2)."""
RK4_TABLEAU = RKTableau.from_diffrax(_rk4_tableau, 4, adaptive=False)
"""Classical fourth-order Runge-Kutta (four stages)."""
DOPRI5 = RKTableau.from_diffrax(diffrax.Dopri5.tableau, 5, adaptive=True)
"""Dormand-Prince 5(4): seven stages, first same as last, adaptive."""
TSIT5 = RKTableau.from_diffrax(diffrax.Tsit5.tableau, 5, adaptive=True)
"""Tsitouras 5(4): seven stages, first same as last, adaptive."""


def _split(y: PyTree[Array]) -> tuple[Array, list[Array], Callable[..., PyTree]]:
    """The points (first leaf), the Euclidean leaves, and how to rebuild `y`."""
    leaves, treedef = jtu.tree_flatten(y)
    return leaves[0], leaves[1:], lambda x, rest: treedef.unflatten([x, *rest])


def _combine(weights, ks):
    """`sum_j weights[j] * ks[j]` over the nonzero weights (zeros if none)."""
    terms = [w * k for w, k in zip(weights, ks, strict=False) if w != 0.0]
    if not terms:
        return jnp.zeros_like(ks[0])
    return functools.reduce(jnp.add, terms)


class GeodesicInterpolation(diffrax.AbstractLocalInterpolation):
    """Between two step ends: the geodesic for the points, a line for the rest."""

    t0: Any
    t1: Any
    y0: PyTree[Array]
    y1: PyTree[Array]
    manifold: AbstractManifold

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return jtu.tree_map(jnp.subtract, self.evaluate(t1), self.evaluate(t0))
        x0, rest0, rebuild = _split(self.y0)
        s = jnp.asarray((t0 - self.t0) / (self.t1 - self.t0), x0.dtype)
        x1, rest1, _ = _split(self.y1)
        m = self.manifold
        x = jax.vmap(lambda a, b: m.expmap(a, s * m.logmap(a, b)))(x0, x1)
        rest = [a + s * (b - a) for a, b in zip(rest0, rest1, strict=True)]
        return rebuild(x, rest)


class AbstractManifoldSolver(diffrax.AbstractSolver):
    """An explicit Runge-Kutta method kept on a manifold (module docstring).

    Subclasses say how a stage point is reached from the step's start (`_stage`),
    how a field value becomes that stage's slope (`_slope`) and where the step
    ends (`_end`).

    Attributes:
        manifold: the manifold the first leaf of the state lives on.
        tableau: the Runge-Kutta method (`RK4_TABLEAU`, `DOPRI5`, ...).
    """

    manifold: eqx.AbstractVar[AbstractManifold]
    tableau: eqx.AbstractVar[RKTableau]

    term_structure = diffrax.AbstractTerm

    @property
    def interpolation_cls(self):
        return functools.partial(GeodesicInterpolation, manifold=self.manifold)

    @property
    def adaptive(self) -> bool:
        """Whether the tableau has an error estimate (for step-size control)."""
        return self.tableau.b_error is not None

    @property
    def evaluations(self) -> tuple[int, int]:
        """`(per_step, once)` field evaluations: first-same-as-last saves one."""
        if self.tableau.fsal:
            return self.tableau.stages - 1, 1
        return self.tableau.stages, 0

    def order(self, terms):
        """The tableau's order of convergence."""
        return self.tableau.order

    @abc.abstractmethod
    def _stage(self, x: Array, step: Array) -> Array:
        """The stage point (one sample) for a combination `step` of slopes."""

    @abc.abstractmethod
    def _slope(self, x: Array, y: Array, v: Array) -> Array:
        """The chart's increment for the field's increment `v` at the stage point `y`.

        `v` is the field times the step; the result is linear in it (one sample).
        """

    def _first_slope(self, x: Array, v: Array) -> Array:
        """`_slope` at the step's start `x` itself."""
        return self.manifold.proju(x, v)

    def _end(self, x: Array, step: Array) -> Array:
        """The step's end from its combination of slopes (as a stage point)."""
        return self._stage(x, step)

    def init(self, terms, t0, t1, y0, args):
        if self.tableau.fsal:
            return terms.vf(t0, y0, args)
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        # Increments are the field times diffrax's control (`terms.prod`), which
        # carries the direction of a backward solve; slopes are linear in them.
        tab = self.tableau
        control = terms.contr(t0, t1)
        x0, rest0, rebuild = _split(y0)

        def increments(f, x, first=False):
            # In the state's dtype (float32 points stay float32 under x64 times).
            inc = jtu.tree_map(
                lambda a, y: a.astype(y.dtype), terms.prod(f, control), y0
            )
            fx, frest, _ = _split(inc)
            if first:
                return jax.vmap(self._first_slope)(x0, fx), frest
            return jax.vmap(self._slope)(x0, x, fx), frest

        if tab.fsal:
            f0 = jax.lax.cond(
                made_jump, lambda: terms.vf(t0, y0, args), lambda: solver_state
            )
        else:
            f0 = terms.vf(t0, y0, args)
        k, krest = increments(f0, x0, first=True)
        kx, krest = [k], [[r] for r in krest]
        f = f0
        for c, row in zip(tab.c, tab.a, strict=True):
            xi = jax.vmap(self._stage)(x0, _combine(row, kx))
            rest = [r + _combine(row, ks) for r, ks in zip(rest0, krest, strict=True)]
            f = terms.vf(t0 + c * (t1 - t0), rebuild(xi, rest), args)
            k, kr = increments(f, xi)
            kx.append(k)
            for ks, r in zip(krest, kr, strict=True):
                ks.append(r)
        x1 = jax.vmap(self._end)(x0, _combine(tab.b, kx))
        rest1 = [r + _combine(tab.b, ks) for r, ks in zip(rest0, krest, strict=True)]
        y1 = rebuild(x1, rest1)
        error = None
        if tab.b_error is not None:
            error = rebuild(
                _combine(tab.b_error, kx),
                [_combine(tab.b_error, ks) for ks in krest],
            )
        state = f if tab.fsal else None
        dense_info = dict(y0=y0, y1=y1)
        return y1, error, dense_info, state, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


class GeodesicRK(AbstractManifoldSolver):
    r"""A Runge-Kutta method in the normal coordinates of each step's start.

    Stage points are $\exp_x(\xi)$, slopes the field pulled back by
    $d(\log_x)$, and a step ends at $\exp_x(h \sum_i b_i k_i)$ (module docstring).

    Attributes:
        manifold: the manifold.
        tableau: the method, default `RK4_TABLEAU`.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds, sample_ode
        >>> s2 = manifolds.Sphere(2)
        >>> spin = lambda t, x, a: jnp.cross(jnp.array([0.0, 0.0, 1.0]), x)
        >>> x0 = jnp.array([[1.0, 0.0, 0.0]])
        >>> out = sample_ode(spin, x0, manifold=s2, solver="rk4", steps=20,
        ...                  t1=jnp.pi / 2)
        >>> [round(v, 5) + 0.0 for v in out.x[0].tolist()]  # a quarter turn
        [0.0, 1.0, 0.0]
    """

    manifold: AbstractManifold
    tableau: RKTableau = eqx.field(static=True, default=RK4_TABLEAU)

    def _stage(self, x, step):
        return self.manifold.expmap(x, self.manifold.proju(x, step))

    def _slope(self, x, y, v):
        _, pulled = jax.jvp(lambda z: self.manifold.logmap(x, z), (y,), (v,))
        return self.manifold.proju(x, pulled)


class ProjectedRK(AbstractManifoldSolver):
    """A Runge-Kutta method in ambient coordinates, projected back at every stage.

    Attributes:
        manifold: the manifold.
        tableau: the method, default `RK4_TABLEAU`.
    """

    manifold: AbstractManifold
    tableau: RKTableau = eqx.field(static=True, default=RK4_TABLEAU)

    def _stage(self, x, step):
        return self.manifold.projx(x + step)

    def _slope(self, x, y, v):
        return self.manifold.proju(y, v)


def get_manifold_solver(
    solver: str | diffrax.AbstractSolver, manifold: AbstractManifold
) -> AbstractManifoldSolver:
    """The manifold solver `solver` names, on `manifold`; or the solver itself.

    A solver object must be an `AbstractManifoldSolver` on the same manifold: a
    Euclidean diffrax solver would step off the manifold.
    """
    if isinstance(solver, str):
        known = registry.names("manifold_solver")
        if solver not in known and ":" not in solver:
            raise ValueError(
                f"unknown manifold solver {solver!r}: with manifold=, solver must be "
                f"one of {', '.join(map(repr, known))}, or an AbstractManifoldSolver."
            )
        return registry.build("manifold_solver", solver, manifold=manifold)
    if not isinstance(solver, AbstractManifoldSolver):
        raise ValueError(
            f"solver {type(solver).__name__} is a Euclidean solver: its steps leave "
            f"{manifold!r}. With manifold=, pass a name ('rk4', 'dopri5', "
            "'projected_rk4', ...) or a flowlab.sampling.GeodesicRK/ProjectedRK."
        )
    if solver.manifold != manifold:
        raise ValueError(
            f"solver steps on {solver.manifold!r} but manifold= is {manifold!r}."
        )
    return solver


for _name, _tableau in {
    "euler": EULER,
    "midpoint": MIDPOINT,
    "rk4": RK4_TABLEAU,
    "dopri5": DOPRI5,
    "tsit5": TSIT5,
}.items():
    registry.register(
        "manifold_solver", _name, functools.partial(GeodesicRK, tableau=_tableau)
    )
    registry.register(
        "manifold_solver",
        f"projected_{_name}",
        functools.partial(ProjectedRK, tableau=_tableau),
    )
