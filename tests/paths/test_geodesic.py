"""Geodesic paths: endpoints, points on the manifold, targets by jvp against finite
differences and closed forms (slerp on the sphere, the affine path in flat space)."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from flowlab import manifolds, paths, schedules

SCHEDULES = {"cond_ot": schedules.cond_ot(), "cosine": schedules.cosine()}
every_manifold = pytest.mark.parametrize(
    "m", helpers.ALL_MANIFOLDS, ids=helpers.MANIFOLD_IDS
)
every_schedule = pytest.mark.parametrize("name", SCHEDULES)
SEEDS = st.integers(0, 2**31 - 1)


def _path_and_pair(m, name, seed):
    """The geodesic path of schedule `name` on `m`, and a random pair of points."""
    return (paths.GeodesicPath(SCHEDULES[name], m), *helpers.manifold_pair(m, seed))


def _far_from_the_cut_locus(m, x0, x1):
    if isinstance(m, manifolds.Sphere):
        return m.dist(x0, x1) < jnp.pi - 1e-2
    if isinstance(m, manifolds.FlatTorus):
        return jnp.max(jnp.abs(m.logmap(x0, x1))) < jnp.pi - 1e-2
    return True


@every_manifold
@every_schedule
@given(seed=SEEDS)
def test_endpoints(m, name, seed):
    path, x0, x1 = _path_and_pair(m, name, seed)
    assume(_far_from_the_cut_locus(m, x0, x1))
    assert m.dist(path.sample(None, x0, x1, 0.0).xt, x0) < 1e-12
    assert m.dist(path.sample(None, x0, x1, 1.0).xt, x1) < 1e-9


@every_manifold
@every_schedule
@given(seed=SEEDS, t=st.floats(0.0, 1.0))
def test_points_on_the_manifold_and_targets_tangent(m, name, seed, t):
    path, x0, x1 = _path_and_pair(m, name, seed)
    ps = path.sample(None, x0, x1, t)
    assert m.is_point(ps.xt, atol=1e-12)
    assert m.is_tangent(ps.xt, ps.ut, atol=1e-10)


@every_manifold
@every_schedule
@given(seed=SEEDS, t=st.floats(0.05, 0.95))
def test_target_is_the_time_derivative(m, name, seed, t):
    path, x0, x1 = _path_and_pair(m, name, seed)
    h = 1e-5
    before = path.sample(None, x0, x1, t - h).xt
    after = path.sample(None, x0, x1, t + h).xt
    ps = path.sample(None, x0, x1, t)
    # both displacements are tangent at x_t: a central difference, error O(h^2)
    fd = (m.logmap(ps.xt, after) - m.logmap(ps.xt, before)) / (2 * h)
    np.testing.assert_allclose(fd, ps.ut, atol=1e-6)


@every_manifold
@given(seed=SEEDS, t=st.floats(0.0, 1.0))
def test_cond_ot_moves_at_the_geodesic_distance(m, seed, t):
    path, x0, x1 = _path_and_pair(m, "cond_ot", seed)
    ps = path.sample(None, x0, x1, t)
    np.testing.assert_allclose(m.norm(ps.xt, ps.ut), m.dist(x0, x1), rtol=1e-9)
    # and x_t splits the distance in the ratio t : 1 - t
    assume(_far_from_the_cut_locus(m, x0, x1))
    np.testing.assert_allclose(m.dist(x0, ps.xt), t * m.dist(x0, x1), atol=1e-9)


@given(seed=SEEDS, t=st.floats(0.0, 1.0))
def test_sphere_cond_ot_is_slerp(seed, t):
    s2 = manifolds.Sphere(2)
    x0, x1 = helpers.manifold_pair(s2, seed)
    theta = s2.dist(x0, x1)
    assume(1e-3 < theta < jnp.pi - 1e-3)
    slerp = (jnp.sin((1 - t) * theta) * x0 + jnp.sin(t * theta) * x1) / jnp.sin(theta)
    ps = paths.GeodesicPath(schedules.cond_ot(), s2).sample(None, x0, x1, t)
    np.testing.assert_allclose(ps.xt, slerp, atol=1e-10)


@every_schedule
@given(seed=SEEDS, t=st.floats(0.0, 1.0))
def test_flat_space_is_the_affine_path_of_kappa(name, seed, t):
    m = manifolds.Euclidean(3)
    x0, x1 = helpers.manifold_pair(m, seed)
    s = SCHEDULES[name](t)
    ps = paths.GeodesicPath(SCHEDULES[name], m).sample(None, x0, x1, t)
    np.testing.assert_allclose(ps.xt, x0 + s.alpha * (x1 - x0), atol=1e-12)
    np.testing.assert_allclose(ps.ut, s.d_alpha * (x1 - x0), atol=1e-12)
    if name == "cond_ot":  # the same as flowlab's affine Cond-OT path
        affine = paths.AffinePath(schedules.cond_ot()).sample(None, x0, x1, t)
        np.testing.assert_allclose(ps.xt, affine.xt, atol=1e-12)
        np.testing.assert_allclose(ps.ut, affine.ut, atol=1e-12)


def test_antipodes_and_equal_points_give_finite_values_and_gradients():
    s2 = manifolds.Sphere(2)
    path = paths.GeodesicPath(schedules.cond_ot(), s2)
    x = jnp.array([0.0, 0.0, 1.0])
    for x1 in (x, -x):
        ps = path.sample(None, x, x1, 0.3)
        np.testing.assert_allclose(ps.xt, x)
        np.testing.assert_allclose(ps.ut, 0.0)
        grad = jax.grad(lambda y: jnp.sum(path.sample(None, x, y, 0.3).ut ** 2))(x1)
        assert bool(jnp.all(jnp.isfinite(grad)))


def test_batches_by_vmap_and_float32_stays_float32():
    t2 = manifolds.FlatTorus(2)
    path = paths.GeodesicPath(schedules.cond_ot(), t2)
    keys = jax.random.split(jax.random.key(0), 3)
    with jax.enable_x64(False):
        x0 = jax.vmap(t2.random_uniform)(jax.random.split(keys[0], 16))
        x1 = jax.vmap(t2.random_uniform)(jax.random.split(keys[1], 16))
        t = jax.random.uniform(keys[2], (16,))
        ps = jax.jit(jax.vmap(path.sample, in_axes=(None, 0, 0, 0)))(None, x0, x1, t)
        assert ps.xt.shape == ps.ut.shape == (16, 2)
        assert ps.xt.dtype == ps.ut.dtype == jnp.float32
        assert bool(jax.vmap(t2.is_point)(ps.xt).all())


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="manifold must be"):
        paths.GeodesicPath(schedules.cond_ot(), "sphere")
    with pytest.raises(TypeError, match="schedule must be"):
        paths.GeodesicPath(lambda t: t, manifolds.Sphere(2))
    path = paths.GeodesicPath(schedules.cond_ot(), manifolds.Sphere(2))
    with pytest.raises(ValueError, match=r"points of Sphere, of shape \(3,\)"):
        path.sample(None, jnp.zeros(2), jnp.zeros(2), 0.5)
    with pytest.raises(ValueError, match="t must be a scalar"):
        path.sample(None, jnp.ones(3), jnp.ones(3), jnp.ones(2))
