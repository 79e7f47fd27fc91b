"""Registries of schedules, solvers, couplings and manifolds; closed forms; strategies.

Each registry entry carries what the invariant tests need to know about it, written
out independently of the library code (the closed forms below are the literature's,
typed in again, not imported from flowlab).
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flowlab import couplings, manifolds, schedules
from flowlab.sampling import ADAPTIVE, ODE_SOLVERS

# ---------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------

EXACT_ENDPOINTS = ((0.0, 1.0), (1.0, 0.0))
"""`((alpha_0, sigma_0), (alpha_1, sigma_1))` of a path from exactly x0 to x1."""


@dataclasses.dataclass(frozen=True)
class ScheduleCase:
    """One schedule and what the tests need to know about it.

    Attributes:
        name: test id.
        schedule: the flowlab schedule.
        alpha_fn, sigma_fn: the closed forms, written independently with jnp (so
            `jax.grad` of them is a reference for `d_alpha`, `d_sigma`).
        endpoints: `((alpha_0, sigma_0), (alpha_1, sigma_1))` in closed form.
        safe: closed time interval on which `d_alpha` and `d_sigma` are finite.
        well_conditioned: times at which the prediction conversions are well
            conditioned in float32 (alpha_t and sigma_t both well away from 0, so
            dividing by either loses no more than a few ulps).
    """

    name: str
    schedule: schedules.AbstractSchedule
    alpha_fn: Callable
    sigma_fn: Callable
    endpoints: tuple[tuple[float, float], tuple[float, float]]
    safe: tuple[float, float] = (0.0, 1.0)
    well_conditioned: tuple[float, float] = (0.1, 0.9)

    @property
    def exact_endpoints(self) -> bool:
        """Whether x_t(0) = x0 and x_t(1) = x1 exactly."""
        return self.endpoints == EXACT_ENDPOINTS

    def __str__(self) -> str:
        return self.name


def _smoothstep(t):
    return t * t * (3 - 2 * t)


def _one_minus(t):
    return 1 - t


# vp(): T(t) = 1/2 (1-t)^2 (B - b) + (1-t) b with b = 0.1, B = 20.
_VP_B, _VP_BB = 0.1, 20.0


def _vp_big_t(t):
    return 0.5 * (1 - t) ** 2 * (_VP_BB - _VP_B) + (1 - t) * _VP_B


_VP_T0 = 0.5 * (_VP_BB - _VP_B) + _VP_B  # T(0) = 10.05
_LIPMAN_SIGMA_MIN = 1e-2
_VE_MIN, _VE_MAX = 0.01, 5.0

# linear_vp and vp have sigma_t ~ sqrt(1 - t) near t = 1, so d_sigma -> -inf there:
# their derivatives are only finite on [0, 1 - 1e-3] (the tests' "safe" interval).
_SINGULAR_AT_ONE = (0.0, 1.0 - 1e-3)

ALL_SCHEDULES: list[ScheduleCase] = [
    ScheduleCase(
        "cond_ot",
        schedules.cond_ot(),
        lambda t: t,
        lambda t: 1 - t,
        EXACT_ENDPOINTS,
    ),
    ScheduleCase(
        "lipman_ot",
        schedules.lipman_ot(_LIPMAN_SIGMA_MIN),
        lambda t: t,
        lambda t: 1 - (1 - _LIPMAN_SIGMA_MIN) * t,
        ((0.0, 1.0), (1.0, _LIPMAN_SIGMA_MIN)),
    ),
    ScheduleCase(
        "polynomial2",
        schedules.polynomial(2),
        lambda t: t**2,
        lambda t: 1 - t**2,
        EXACT_ENDPOINTS,
        well_conditioned=(0.35, 0.9),  # alpha_t = t^2 >= 0.1 needs t >= 0.32
    ),
    ScheduleCase(
        "cosine",
        schedules.cosine(),
        lambda t: jnp.sin(0.5 * jnp.pi * t),
        lambda t: jnp.cos(0.5 * jnp.pi * t),
        EXACT_ENDPOINTS,
    ),
    ScheduleCase(
        "linear_vp",
        schedules.linear_vp(),
        lambda t: t,
        lambda t: jnp.sqrt(1 - t**2),
        EXACT_ENDPOINTS,
        safe=_SINGULAR_AT_ONE,
    ),
    ScheduleCase(
        "vp",
        schedules.vp(),
        lambda t: jnp.exp(-0.5 * _vp_big_t(t)),
        lambda t: jnp.sqrt(1 - jnp.exp(-_vp_big_t(t))),
        ((math.exp(-0.5 * _VP_T0), math.sqrt(1 - math.exp(-_VP_T0))), (1.0, 0.0)),
        safe=_SINGULAR_AT_ONE,
        # alpha_t >= 0.1 needs T <= 2 log 10, i.e. t >= 0.33; near t = 1 the large
        # d_sigma amplifies float32 rounding in velocity -> x1, so stop at 0.9.
        well_conditioned=(0.35, 0.9),
    ),
    ScheduleCase(
        "ve",
        schedules.ve(_VE_MIN, _VE_MAX),
        lambda t: jnp.ones_like(t),
        lambda t: _VE_MIN * (_VE_MAX / _VE_MIN) ** (1 - t),
        ((1.0, _VE_MAX), (1.0, _VE_MIN)),
        # sigma_t >= 0.1 for t <= 1 - log(10) / log(500) = 0.63.
        well_conditioned=(0.0, 0.6),
    ),
    ScheduleCase(
        "custom",
        schedules.Schedule(_smoothstep, _one_minus),
        lambda t: t * t * (3 - 2 * t),
        lambda t: 1 - t,
        EXACT_ENDPOINTS,
        well_conditioned=(0.2, 0.9),  # alpha_t >= 0.1 needs t >= 0.2
    ),
]


# ---------------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SolverCase:
    """A named ODE solver, its order of convergence and whether it is adaptive."""

    name: str
    order: int
    adaptive: bool

    def __str__(self) -> str:
        return self.name


_ORDERS = {
    "euler": 1,
    "heun": 2,
    "midpoint": 2,
    "rk4": 4,
    "tsit5": 5,
    "dopri5": 5,
    "dopri8": 8,
}

ALL_SOLVERS: list[SolverCase] = [
    SolverCase(name, _ORDERS[name], name in ADAPTIVE) for name in ODE_SOLVERS
]
FIXED_SOLVERS = [s for s in ALL_SOLVERS if not s.adaptive]
ADAPTIVE_SOLVERS = [s for s in ALL_SOLVERS if s.adaptive]


# ---------------------------------------------------------------------------------
# Couplings by name
# ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CouplingCase:
    """A name `flowlab.couplings.get` accepts, and how to build it with arguments.

    Attributes:
        name: the name (also `coupling=` in a config).
        kwargs: arguments, other than the defaults, that a config can set
            (`coupling_args.<key>`), each visible afterwards as an attribute of the
            same name (`base` as the type of `coupling.base`).
        cls: the class `get` returns.
    """

    name: str
    kwargs: dict
    cls: type

    def __str__(self) -> str:
        return self.name


ALL_COUPLINGS: list[CouplingCase] = [
    CouplingCase("independent", {}, couplings.Independent),
    CouplingCase("exact_ot", {}, couplings.ExactOT),
    CouplingCase(
        "sinkhorn",
        {"epsilon": 0.3, "hard": True, "threshold": 1e-4, "max_iterations": 500},
        couplings.EntropicOT,
    ),
    CouplingCase(
        "unbalanced",
        {"epsilon": 0.2, "tau_a": 0.9, "tau_b": 0.8, "max_iterations": 300},
        couplings.EntropicOT,
    ),
    CouplingCase("partial", {"mass": 0.7, "epsilon": 0.1}, couplings.EntropicOT),
    CouplingCase("stable_matching", {}, couplings.StableMatching),
    CouplingCase(
        "conditional", {"base": "sinkhorn", "weight": 2.0}, couplings.Conditional
    ),
]
"""Every name of `couplings.get` (a test checks that none is missing)."""


# ---------------------------------------------------------------------------------
# Manifolds
# ---------------------------------------------------------------------------------

ALL_MANIFOLDS: list[manifolds.AbstractManifold] = [
    manifolds.Euclidean(3),
    manifolds.Sphere(1),
    manifolds.Sphere(2),
    manifolds.Sphere(5),
    manifolds.FlatTorus(1),
    manifolds.FlatTorus(3),
    manifolds.Hyperbolic(2),
    manifolds.Hyperbolic(5),
    manifolds.SO3(),
    manifolds.Product(manifolds.Sphere(2), manifolds.FlatTorus(1)),
    manifolds.Product(
        manifolds.Euclidean(1), manifolds.Sphere(1), manifolds.FlatTorus(2)
    ),
    manifolds.SPD(2),
    manifolds.SPD(3),
    manifolds.SPDLogEuclidean(2),
]
"""Each manifold class in low and higher dimension (S^1 and T^1: both the circle)."""


def _manifold_id(m: manifolds.AbstractManifold) -> str:
    """`Sphere(dim=2)`, `SPD(n=3)`; a product by its factors, `Sphere(dim=2)xSO3()`."""
    if isinstance(m, manifolds.AbstractProduct):
        return "x".join(_manifold_id(f) for f in m.factors)
    return repr(m)


MANIFOLD_IDS = [_manifold_id(m) for m in ALL_MANIFOLDS]


def manifold_point(m: manifolds.AbstractManifold, key) -> jnp.ndarray:
    """A random point: uniform on a compact manifold; elsewhere the exponential map
    of a N(0, 4 I) ambient vector projected on the tangent space at the origin."""
    if isinstance(m, manifolds.AbstractCompactManifold):
        return m.random_uniform(key)
    o = m.origin()
    # SPD matrices exp(S): with S of N(0, 1/4) entries their condition numbers stay
    # near e^2, so the tests' N(0, I) ambient tangents (times up to 50) at them
    # remain representable after exp (with N(0, 4 I), e^{+-700} and overflow)
    scale = 0.5 if isinstance(m, manifolds.SPD | manifolds.SPDLogEuclidean) else 2
    # Hyperbolic: radius ~1.5 in any dimension. Coordinates grow like e^r, so at the
    # radius ~2 sqrt(d) of N(0, 4 I) rounding alone (eps x0 cosh d(x, y)) exceeds the
    # tests' absolute 1e-9, and most pairs fall outside their pi filter
    if isinstance(m, manifolds.Hyperbolic):
        scale = 1.5 / math.sqrt(m.dim)
    return m.expmap(o, m.proju(o, scale * jax.random.normal(key, m.shape)))


def manifold_pair(m: manifolds.AbstractManifold, seed: int):
    """Two independent random points of `m` from one integer seed."""
    k0, k1 = jax.random.split(jax.random.key(seed))
    return manifold_point(m, k0), manifold_point(m, k1)


# ---------------------------------------------------------------------------------
# Gaussian ground truth: data N(mu, std^2 I), standard normal source
# ---------------------------------------------------------------------------------


def gaussian_velocity(t, x, args):
    r"""The exact marginal field of an affine path for Gaussian data, one sample.

    `args = (schedule, mu, std)`;
    $v(t,x) = \dot\alpha\mu + (\alpha\dot\alpha s^2 + \sigma\dot\sigma)
    /(\alpha^2 s^2 + \sigma^2)\,(x - \alpha\mu)$ (DESIGN.md). A module-level function
    (passed its schedule through `args`), so repeated solves reuse the compiled code.
    """
    schedule, mu, std = args
    s = schedule(t)
    m2 = s.alpha**2 * std**2 + s.sigma**2
    coef = (s.alpha * s.d_alpha * std**2 + s.sigma * s.d_sigma) / m2
    return s.d_alpha * mu + coef * (x - s.alpha * mu)


def gaussian_flow_map(case: ScheduleCase, mu, std, t0, t1, x):
    r"""Closed-form flow of `gaussian_velocity` from `t0` to `t1`, batched `x`.

    With $m_t = \sqrt{\alpha_t^2 s^2 + \sigma_t^2}$ the field is
    $\dot\alpha\mu + (\dot m/m)(x - \alpha\mu)$, so $x - \alpha\mu$ scales by
    $m_{t_1}/m_{t_0}$. Uses the independent closed forms of `case`.
    """
    a0, s0 = case.alpha_fn(jnp.float64(t0)), case.sigma_fn(jnp.float64(t0))
    a1, s1 = case.alpha_fn(jnp.float64(t1)), case.sigma_fn(jnp.float64(t1))
    m0 = jnp.sqrt(a0**2 * std**2 + s0**2)
    m1 = jnp.sqrt(a1**2 * std**2 + s1**2)
    mu = jnp.broadcast_to(mu, x.shape)
    return a1 * mu + m1 / m0 * (x - a0 * mu)


# ---------------------------------------------------------------------------------
# Hypothesis strategies
# ---------------------------------------------------------------------------------

# A fixed menu of event shapes (ranks 1-3, with unit and non-unit axes) rather than
# every shape up to some size: each new shape recompiles every eager JAX operation
# (~1 s per test), and the identities under test are elementwise.
event_shapes = st.sampled_from([(1,), (3,), (2, 3), (2, 1, 2)])


def arrays(dtype, shape, bound=3.0):
    """Finite arrays of `shape` with entries in [-bound, bound]."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    return hnp.arrays(
        dtype,
        shape,
        elements=st.floats(-bound, bound, allow_nan=False, width=width),
    )


@st.composite
def pairs(draw, dtype=np.float64):
    """`(x0, x1)` of one random event shape."""
    shape = draw(event_shapes)
    return draw(arrays(dtype, shape)), draw(arrays(dtype, shape))


def times(interval):
    """Times in a closed interval."""
    lo, hi = interval
    return st.floats(lo, hi, allow_nan=False)


TINY_RUN = {
    "batch_size": 64,
    "model.width": 16,
    "model.depth": 2,
    "data.n_train": 500,
    "data.n_test": 200,
    "sample.solver": "euler",
    "sample.steps": 10,
}
"""A small moons run for the command-line tests: seconds to train and evaluate."""


def tiny_run(settings: dict | None = None) -> list[str]:
    """The `key=value` overrides of `TINY_RUN`, with `settings` replacing or added."""
    return [f"{k}={v}" for k, v in {**TINY_RUN, **(settings or {})}.items()]


# ---------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------


def load_example(filename: str):
    """The module of `examples/<filename>`, loaded by path (the names start with a
    digit, so they cannot be imported by name)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / filename
    spec = importlib.util.spec_from_file_location(path.stem.lstrip("0123456789_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
