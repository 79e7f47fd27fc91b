"""The identities every manifold must satisfy, on random points (hypothesis), plus
closed forms and the points where naive formulas divide by zero."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from flowlab import manifolds, registry

SEEDS = st.integers(0, 2**31 - 1)
_point = helpers.manifold_point


def _tangent(m, key, x, scale=1.0):
    return m.proju(x, scale * jax.random.normal(key, m.shape))


def _keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)


def _inside(m, x, u, fraction):
    """`u` scaled to `fraction` of the injectivity radius (as it is, where that is
    infinite): the geodesic of `u` is then the shortest one."""
    if np.isinf(m.injectivity_radius):
        return u
    return fraction * m.injectivity_radius * u / m.norm(x, u)


every_manifold = pytest.mark.parametrize(
    "m", helpers.ALL_MANIFOLDS, ids=helpers.MANIFOLD_IDS
)


@every_manifold
@given(seed=SEEDS)
def test_projections_are_idempotent_and_orthogonal(m, seed):
    k0, k1 = _keys(seed, 2)
    a = 4 * jax.random.normal(k0, m.shape)
    x = m.projx(a)
    np.testing.assert_allclose(m.projx(x), x, atol=1e-12)
    assert m.is_point(x)
    b = 3 * jax.random.normal(k1, m.shape)
    u = m.proju(x, b)
    np.testing.assert_allclose(m.proju(x, u), u, atol=1e-12)
    assert m.is_tangent(x, u)
    # the removed part is orthogonal to the kept one (ambient inner product)
    np.testing.assert_allclose(jnp.sum(u * (b - u)), 0.0, atol=1e-11)


@every_manifold
@given(seed=SEEDS)
def test_inner_product_is_symmetric_and_positive(m, seed):
    k0, k1, k2 = _keys(seed, 3)
    x = _point(m, k0)
    u, v = _tangent(m, k1, x), _tangent(m, k2, x)
    np.testing.assert_allclose(m.inner(x, u, v), m.inner(x, v, u), rtol=1e-12)
    assert m.inner(x, u, u) > 0
    np.testing.assert_allclose(m.norm(x, u) ** 2, m.inner(x, u, u), rtol=1e-12)
    assert m.norm(x, jnp.zeros(m.shape)) == 0


@every_manifold
@given(seed=SEEDS)
def test_expmap_of_logmap_returns_the_point(m, seed):
    x, y = helpers.manifold_pair(m, seed)
    assume(m.dist(x, y) < m.injectivity_radius - 1e-3)
    u = m.logmap(x, y)
    assert m.is_tangent(x, u, atol=1e-10)
    assert m.dist(m.expmap(x, u), y) < 1e-9
    np.testing.assert_allclose(m.norm(x, u), m.dist(x, y), rtol=1e-9)
    np.testing.assert_allclose(m.dist(x, y), m.dist(y, x), rtol=1e-9)


@every_manifold
@given(seed=SEEDS, fraction=st.floats(0.0, 0.999))
def test_distance_along_a_geodesic_is_the_speed(m, seed, fraction):
    k0, k1 = _keys(seed, 2)
    x = _point(m, k0)
    u = _inside(m, x, _tangent(m, k1, x), fraction)
    y = m.expmap(x, u)
    assert m.is_point(y, atol=1e-12)
    np.testing.assert_allclose(m.dist(x, y), m.norm(x, u), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.logmap(x, y), u, atol=1e-8)


@every_manifold
@given(seed=SEEDS)
def test_the_derivative_of_expmap_at_zero_is_the_identity(m, seed):
    k0, k1 = _keys(seed, 2)
    x = _point(m, k0)
    u = _tangent(m, k1, x)
    y, dy = jax.jvp(lambda w: m.expmap(x, w), (jnp.zeros(m.shape),), (u,))
    np.testing.assert_allclose(y, x, atol=1e-12)
    np.testing.assert_allclose(dy, u, atol=1e-12)
    # and the derivative of logmap at y = x is the tangent projection (both as
    # matrices on the flattened ambient space, for points of any shape)
    size = x.size
    jac = jax.jacfwd(lambda z: m.logmap(x, z))(x).reshape(size, size)
    basis = jnp.eye(size).reshape(size, *m.shape)
    proj = jax.vmap(lambda e: m.proju(x, e).reshape(size), out_axes=1)(basis)
    np.testing.assert_allclose(jac, proj, atol=1e-10)


@every_manifold
@given(seed=SEEDS, scale=st.floats(0.0, 50.0))
def test_expmap_stays_on_the_manifold_for_long_steps(m, seed, scale):
    k0, k1 = _keys(seed, 2)
    x = _point(m, k0)
    y = m.expmap(x, _tangent(m, k1, x, scale))
    assert m.is_point(y, atol=1e-12)
    assert bool(jnp.all(jnp.isfinite(y)))


@every_manifold
def test_finite_values_and_gradients_where_formulas_divide_by_zero(m):
    x = _point(m, jax.random.key(3))
    zero = jnp.zeros(m.shape)
    points = [x]
    if isinstance(m, manifolds.Sphere):
        points.append(-x)  # the antipode
    for y in points:
        for fn in (m.logmap, m.dist):
            value = fn(x, y)
            jac = jax.jacfwd(lambda z, fn=fn: fn(x, z))(y)
            grad = jax.grad(lambda z, fn=fn: jnp.sum(fn(x, z)))(y)
            for a in (value, jac, grad):
                assert bool(jnp.all(jnp.isfinite(a))), (fn.__name__, y)
    grads = [
        jax.grad(lambda u: jnp.sum(m.expmap(x, u)))(zero),
        jax.grad(lambda u: m.norm(x, u))(zero),
        jax.grad(lambda z: m.dist(x, z))(x),
        jax.hessian(lambda u: jnp.sum(m.expmap(x, u)))(zero),
    ]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_sphere_matches_closed_forms():
    s2 = manifolds.Sphere(2)
    keys = _keys(7, 200)
    x = jax.vmap(s2.random_uniform)(keys[:100])
    y = jax.vmap(s2.random_uniform)(keys[100:])
    arccos = jnp.arccos(jnp.clip(jnp.sum(x * y, axis=1), -1, 1))
    np.testing.assert_allclose(jax.vmap(s2.dist)(x, y), arccos, atol=1e-7)
    np.testing.assert_allclose(s2.log_volume(), jnp.log(4 * jnp.pi), rtol=1e-14)
    np.testing.assert_allclose(
        manifolds.Sphere(1).log_volume(), jnp.log(2 * jnp.pi), rtol=1e-14
    )
    np.testing.assert_allclose(  # vol S^3 = 2 pi^2
        manifolds.Sphere(3).log_volume(), jnp.log(2 * jnp.pi**2), rtol=1e-14
    )
    # nearly antipodal and nearly equal points keep their digits (arccos does not)
    e = jnp.array([1.0, 0.0, 0.0])
    for delta in (1e-9, 1e-5):
        near = s2.expmap(e, jnp.array([0.0, delta, 0.0]))
        far = s2.expmap(e, jnp.array([0.0, jnp.pi - delta, 0.0]))
        np.testing.assert_allclose(s2.dist(e, near), delta, rtol=1e-9)
        np.testing.assert_allclose(s2.dist(e, far), jnp.pi - delta, rtol=1e-12)


@pytest.mark.parametrize("theta", [1e-4, 1e-3, 5e-3, 9.9e-3, 1.01e-2, 5e-2, 1.0])
@given(seed=SEEDS)
def test_sphere_expmap_is_the_closed_form_across_its_series_switch(theta, seed):
    # below theta = 1e-2 expmap uses Taylor series; in float64 the direct formula
    # is accurate to ~1e-13 here, so both sides of the switch are checked
    s = manifolds.Sphere(3)
    k0, k1 = _keys(seed, 2)
    x = s.random_uniform(k0)
    u = _tangent(s, k1, x)
    u = theta * u / s.norm(x, u)
    direct = jnp.cos(theta) * x + jnp.sin(theta) / theta * u
    np.testing.assert_allclose(s.expmap(x, u), direct, atol=1e-13)


@given(seed=SEEDS)
def test_the_circle_is_the_one_dimensional_torus(seed):
    a, b = 2 * jnp.pi * jax.random.uniform(jax.random.key(seed), (2,))
    circle, torus = manifolds.Sphere(1), manifolds.FlatTorus(1)
    on_circle = [jnp.array([jnp.cos(t), jnp.sin(t)]) for t in (a, b)]
    np.testing.assert_allclose(
        circle.dist(*on_circle), torus.dist(a[None], b[None]), atol=1e-10
    )


def test_torus_logmap_takes_the_short_way_round():
    t2 = manifolds.FlatTorus(2)
    x, y = jnp.array([0.1, 3.0]), jnp.array([2 * jnp.pi - 0.1, 3.5])
    np.testing.assert_allclose(t2.logmap(x, y), [-0.2, 0.5], atol=1e-12)
    np.testing.assert_allclose(t2.dist(x, y), jnp.hypot(0.2, 0.5), rtol=1e-12)
    np.testing.assert_allclose(t2.log_volume(), 2 * jnp.log(2 * jnp.pi), rtol=1e-14)
    assert not t2.is_point(jnp.array([0.1, 7.0]))
    assert not t2.is_point(jnp.array([0.1, 1.0, 2.0]))


@pytest.mark.parametrize("d", [1, 2, 4])
def test_uniform_sphere_has_the_moments_of_the_uniform_law(d):
    s = manifolds.Sphere(d)
    x = jax.vmap(s.random_uniform)(_keys(0, 20_000))
    assert bool(jax.vmap(s.is_point)(x).all())
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.03)  # 4 standard errors
    np.testing.assert_allclose(x.T @ x / len(x), jnp.eye(d + 1) / (d + 1), atol=0.02)


def test_uniform_torus_covers_the_square_evenly():
    t2 = manifolds.FlatTorus(2)
    x = jax.vmap(t2.random_uniform)(_keys(1, 20_000))
    assert bool(jax.vmap(t2.is_point)(x).all())
    counts, _ = np.histogramdd(np.asarray(x), bins=4, range=[(0, 2 * np.pi)] * 2)
    np.testing.assert_allclose(counts / len(x), 1 / 16, atol=0.006)  # ~4 s.e.
    np.testing.assert_allclose(t2.uniform_log_prob(x[0]), -t2.log_volume())


@every_manifold
def test_float32_in_float32_out(m):
    with jax.enable_x64(False):
        x = _point(m, jax.random.key(0)).astype(jnp.float32)
        u = _tangent(m, jax.random.key(1), x).astype(jnp.float32)
        y = m.expmap(x, u)
        for a in (y, m.logmap(x, y), m.dist(x, y), m.inner(x, u, u)):
            assert a.dtype == jnp.float32
            assert bool(jnp.all(jnp.isfinite(a)))
        tiny = 1e-6 * u / m.norm(x, u)
        np.testing.assert_allclose(m.expmap(x, tiny), m.projx(x + tiny), atol=1e-7)


@pytest.mark.parametrize(
    "cls", [manifolds.Euclidean, manifolds.Sphere, manifolds.FlatTorus]
)
@pytest.mark.parametrize("dim", [0, -1, 2.5, True])
def test_bad_dimension_is_refused_with_its_name(cls, dim):
    with pytest.raises(ValueError, match="dim must be a positive int"):
        cls(dim)


def test_random_uniform_wants_a_key():
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        manifolds.Sphere(2).random_uniform(0)


def test_manifolds_are_in_the_registry():
    assert {"euclidean", "sphere", "torus"} <= set(registry.names("manifold"))
    assert registry.build("manifold", "sphere", dim=2) == manifolds.Sphere(2)
    assert registry.build("manifold", "torus", dim=3) == manifolds.FlatTorus(3)


@every_manifold
def test_check_point_and_check_tangent_pass_good_input_and_stop_bad(m):
    x = _point(m, jax.random.key(5))
    u = _tangent(m, jax.random.key(6), x)
    check_point, check_tangent = jax.jit(m.check_point), jax.jit(m.check_tangent)
    np.testing.assert_array_equal(check_point(x), x)
    np.testing.assert_array_equal(check_tangent(x, u), u)
    off = x + 0.5  # off the curved manifolds (and not tangent to them)
    if not bool(m.is_point(off)):
        with pytest.raises(Exception, match="x is not a point of"):
            jax.block_until_ready(check_point(off))
    if not bool(m.is_tangent(x, u + off)):
        with pytest.raises(Exception, match="u is not a tangent vector of"):
            jax.block_until_ready(check_tangent(x, u + off))
    with pytest.raises(ValueError, match=r"x must be an array of .*, of shape"):
        m.check_point(jnp.zeros((*m.shape, 1)))
