"""Models on manifolds and the metric loss of the geodesic path."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowlab as fl
from flowlab import manifolds, models, paths, schedules

NET = models.MLP(width=16, depth=2)


@pytest.mark.parametrize("m", helpers.ALL_MANIFOLDS, ids=helpers.MANIFOLD_IDS)
def test_the_model_output_is_tangent_at_its_input(m):
    model_fn, params = models.init_tangent_model(NET, m, jax.random.key(0), m.origin())
    x0, x1 = helpers.manifold_pair(m, 3)
    for x in (x0, x1):
        v = model_fn(params, jnp.asarray(0.3), x)
        assert v.shape == m.shape
        assert bool(m.is_tangent(x, v, atol=1e-9))


@given(st.floats(-20.0, 20.0), st.floats(-20.0, 20.0))
def test_a_torus_model_is_periodic(a, b):
    t2 = manifolds.FlatTorus(2)
    model_fn, params = models.init_tangent_model(
        NET, t2, jax.random.key(1), t2.origin()
    )
    x = jnp.array([a, b])
    wrapped = t2.projx(x)
    np.testing.assert_allclose(
        model_fn(params, 0.5, x), model_fn(params, 0.5, wrapped), atol=1e-9
    )


def test_a_network_of_the_wrong_output_shape_is_named():
    s2 = manifolds.Sphere(2)
    model = models.TangentModel(lambda p, t, x, c: jnp.zeros(4), s2)
    with pytest.raises(ValueError, match=r"features' shape \(3,\) on Sphere"):
        model(None, 0.0, s2.origin())


def test_the_geodesic_loss_is_the_metric_norm_per_dimension():
    so3 = manifolds.SO3()  # metric 0.5 tr(u^T v): not the ambient mean of squares
    path = paths.GeodesicPath(schedules.cond_ot(), so3)
    x = so3.random_uniform(jax.random.key(0))
    u = so3.proju(x, jax.random.normal(jax.random.key(1), (3, 3)))
    w = so3.proju(x, jax.random.normal(jax.random.key(2), (3, 3)))
    normal = jax.random.normal(jax.random.key(3), (3, 3))
    off = normal - so3.proju(x, normal)  # not tangent: the loss ignores it
    err = path.squared_error(x, u + off, w)
    np.testing.assert_allclose(err, 0.5 * jnp.sum((u - w) ** 2) / 3, rtol=1e-10)


def test_on_euclidean_space_the_geodesic_loss_is_the_affine_loss():
    e2 = manifolds.Euclidean(2)
    geo = fl.FlowMatchingLoss(paths.GeodesicPath(schedules.cond_ot(), e2))
    affine = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    model_fn, params = models.init_model(NET, jax.random.key(0), jnp.zeros(2))
    x0 = jax.random.normal(jax.random.key(1), (64, 2))
    x1 = jax.random.normal(jax.random.key(2), (64, 2)) + 3.0
    key = jax.random.key(3)
    np.testing.assert_allclose(
        geo(model_fn, params, key, x0, x1)[0],
        affine(model_fn, params, key, x0, x1)[0],
        rtol=1e-10,
    )
