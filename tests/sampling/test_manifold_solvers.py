"""Manifold solvers: orders of convergence, no drift, round trips, counts and errors.

The reference flow on S^2 is a rotation about the z axis at the rate 1 + t, so the
solution at time 1 is the rotation by 1.5 rad, in closed form. Started off the
equator the orbits are latitude circles, which are not geodesics, so no method is
exact on them (on the equator geodesic Euler would be).
"""

import math

import chex
import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlab import manifolds, sample_ode
from flowlab.sampling import GeodesicRK, ProjectedRK, manifold_solvers

S2 = manifolds.Sphere(2)
Z = np.array([0.0, 0.0, 1.0])


def spin(t, x, args):
    return (1 + t) * jnp.cross(jnp.asarray(Z, x.dtype), x)


def spun(x0, angle=1.5):
    c, s = math.cos(angle), math.sin(angle)
    r = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(x0) @ r.T


X0 = np.array([[math.sqrt(0.5), 0.0, math.sqrt(0.5)], [0.6, 0.0, -0.8], [0, 0.8, 0.6]])


def _orders(name, field, x0, exact, steps=(16, 32, 64), manifold=S2):
    errors = []
    for n in steps:
        out = sample_ode(field, x0, manifold=manifold, solver=name, steps=n)
        errors.append(float(np.max(np.abs(np.asarray(out.x) - exact))))
    errors = np.array(errors)
    return np.log2(errors[:-1] / errors[1:]), errors


@pytest.mark.parametrize("family", ["", "projected_"])
@pytest.mark.parametrize(
    ("method", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)]
)
def test_orders_on_a_rotation_of_the_sphere(family, method, order):
    orders, errors = _orders(family + method, spin, X0, spun(X0))
    assert errors[-1] < 0.01
    np.testing.assert_allclose(orders, order, atol=0.2)


def _gradient_field(a):
    def field(t, x, args):
        m = args
        return (1 + t) * m.proju(x, jnp.asarray(a, x.dtype))

    return field


@pytest.mark.parametrize(
    "manifold",
    [manifolds.SO3(), manifolds.Hyperbolic(2), manifolds.SPD(2)],
    ids=repr,
)
def test_geodesic_rk4_is_fourth_order_on_other_manifolds(manifold):
    """Against a reference solve of 2048 steps (no closed form for these flows)."""
    key = jax.random.key(0)
    a = jax.random.normal(key, manifold.shape)
    a = 0.5 * (a + a.T) if isinstance(manifold, manifolds.SPD) else a
    x0 = manifold.expmap(
        manifold.origin(), manifold.proju(manifold.origin(), 0.3 * a[::-1])
    )[None]
    field = _gradient_field(a)
    ref = sample_ode(field, x0, manifold, manifold=manifold, solver="rk4", steps=2048)
    errors = []
    for n in (16, 32, 64):
        out = sample_ode(field, x0, manifold, manifold=manifold, solver="rk4", steps=n)
        errors.append(float(jnp.max(jnp.abs(out.x - ref.x))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    np.testing.assert_allclose(orders, 4, atol=0.35)
    assert bool(jax.vmap(manifold.is_point)(ref.x).all())


DRIFT_CASES = [
    (manifolds.Sphere(2), "euler"),
    (manifolds.Sphere(2), "rk4"),
    (manifolds.Sphere(2), "projected_rk4"),
    (manifolds.SO3(), "rk4"),
    (manifolds.SO3(), "projected_midpoint"),
    (manifolds.Hyperbolic(2), "rk4"),
    (manifolds.FlatTorus(2), "midpoint"),
]


@pytest.fixture
def float32():
    """Solves in float32 throughout, times too (the conftest enables x64)."""
    with jax.enable_x64(False):
        yield


@pytest.mark.parametrize(("manifold", "solver"), DRIFT_CASES, ids=str)
def test_a_thousand_float32_steps_stay_on_the_manifold(manifold, solver, float32):
    keys = jax.random.split(jax.random.key(1), 16)
    x0 = jax.vmap(
        lambda k: manifold.expmap(
            manifold.origin(jnp.float32),
            manifold.proju(
                manifold.origin(jnp.float32),
                jax.random.normal(k, manifold.shape, jnp.float32),
            ),
        )
    )(keys)
    a = jax.random.normal(jax.random.key(2), manifold.shape, jnp.float32)

    def field(t, x, args):  # turns and drifts: neither a Killing field nor constant
        wave = jnp.sin(3 * t).astype(x.dtype) * a
        return manifold.proju(x, 0.3 * (wave + jnp.roll(x, 1)))

    out = sample_ode(
        field,
        x0,
        manifold=manifold,
        solver=solver,
        steps=1000,
        t1=5.0,
        save_trajectory=11,
    )
    assert out.x.dtype == jnp.float32
    flat = out.trajectory.reshape((-1, *manifold.shape))
    assert bool(jax.vmap(lambda x: manifold.is_point(x, 1e-5))(flat).all())
    assert int(out.nfe) == 1000 * {"euler": 1, "midpoint": 2}.get(
        solver.removeprefix("projected_"), 4
    )


@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "projected_dopri5"])
def test_adaptive_solvers_agree_with_the_closed_form(solver):
    out = sample_ode(spin, X0, manifold=S2, solver=solver, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(out.x, spun(X0), atol=1e-6)
    per_step, once = manifold_solvers.GeodesicRK(
        S2, manifold_solvers.DOPRI5
    ).evaluations
    assert (per_step, once) == (6, 1)
    assert int(out.nfe) == int(out.num_steps) * 6 + 1


def test_an_adaptive_trajectory_follows_geodesics_between_steps():
    out = sample_ode(spin, X0, manifold=S2, solver="dopri5", save_trajectory=57)
    norms = jnp.linalg.norm(out.trajectory, axis=-1)
    chex.assert_trees_all_close(norms, jnp.ones_like(norms), atol=1e-12)
    # Between the (few, long) adaptive steps the dense output is the geodesic chord
    # of the step, first order: about 1e-2 from the latitude circle here.
    for i in (14, 28, 42):
        t = float(out.ts[i])
        np.testing.assert_allclose(
            out.trajectory[i], spun(X0, t + t * t / 2), atol=2e-2
        )
    np.testing.assert_allclose(out.trajectory[-1], spun(X0), atol=1e-4)


@pytest.mark.slow  # 13 s; the orders and on-manifold checks run by default
@settings(max_examples=4)
@given(st.floats(0.1, 3.0), st.integers(0, 2**31 - 1))
def test_backward_integration_undoes_forward(t1, seed):
    so3 = manifolds.SO3()
    x0 = jax.vmap(so3.random_uniform)(jax.random.split(jax.random.key(seed), 4))
    a = jax.random.normal(jax.random.key(seed + 1), (3, 3))
    field = _gradient_field(a)
    fwd = sample_ode(field, x0, so3, manifold=so3, solver="rk4", steps=256, t1=t1)
    back = sample_ode(
        field, fwd.x, so3, manifold=so3, solver="rk4", steps=256, t0=t1, t1=0.0
    )
    np.testing.assert_allclose(back.x, x0, atol=1e-6)


def test_the_solvers_are_diffrax_solvers():
    solver = GeodesicRK(S2)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: jax.vmap(lambda x: spin(t, x, None))(y)),
        solver,
        0.0,
        1.0,
        1 / 32,
        jnp.asarray(X0),
    )
    np.testing.assert_allclose(sol.ys[-1], spun(X0), atol=1e-5)
    assert isinstance(ProjectedRK(S2), diffrax.AbstractSolver)


def test_extra_euclidean_leaves_step_with_the_points():
    """A pytree state: the points on S^2 and the arc length travelled, in R."""

    def field(t, state, args):
        x, _ = state
        v = spin(t, x, None)
        return v, jnp.linalg.norm(v)

    x0 = (jnp.asarray(X0), jnp.zeros(3))
    out = sample_ode(field, x0, manifold=S2, solver="rk4", steps=64)
    np.testing.assert_allclose(out.x[0], spun(X0), atol=1e-6)
    radius = np.linalg.norm(X0[:, :2], axis=1)
    np.testing.assert_allclose(out.x[1], 1.5 * radius, atol=1e-8)


def test_a_euclidean_solver_is_refused_on_a_manifold():
    with pytest.raises(ValueError, match="Euclidean solver.*leave"):
        sample_ode(spin, X0, manifold=S2, solver=diffrax.Tsit5())
    with pytest.raises(ValueError, match="unknown manifold solver 'heun'.*'rk4'"):
        sample_ode(spin, X0, manifold=S2, solver="heun")
    with pytest.raises(ValueError, match="steps on SO3"):
        sample_ode(spin, X0, manifold=S2, solver=GeodesicRK(manifolds.SO3()))


def test_points_off_the_manifold_are_refused_with_the_distance():
    x0 = jnp.asarray(X0).at[1].multiply(1.5)
    with pytest.raises(
        ValueError, match=r"x0: 1 of 3 points are off Sphere.*0\.5 from"
    ):
        sample_ode(spin, x0, manifold=S2, solver="rk4")
    out = sample_ode(spin, x0, manifold=S2, solver="rk4", project=True, steps=64)
    np.testing.assert_allclose(out.x, spun(X0), atol=1e-6)


def test_a_point_of_the_wrong_shape_names_the_manifold():
    with pytest.raises(
        ValueError,
        match=r"x0 must be a batch of points of SO3.*\(batch, 3, 3\).*\(4, 9\)",
    ):
        sample_ode(spin, jnp.zeros((4, 9)), manifold=manifolds.SO3())
