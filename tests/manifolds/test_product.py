"""Products of manifolds: every method is its factors' methods applied part by part,
distances add in squares, R^1 x R^2 is R^3, compact products draw uniformly from each
factor and add their log-volumes, and bad factors are refused by name.

The shared identities (exp/log round trips, projections, derivatives at 0, float32)
run on two products through `helpers.ALL_MANIFOLDS`."""

import math
from typing import ClassVar

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowlab import manifolds, paths, registry, schedules

SEEDS = st.integers(0, 2**31 - 1)
E1, E2, E3 = manifolds.Euclidean(1), manifolds.Euclidean(2), manifolds.Euclidean(3)
S1, S2 = manifolds.Sphere(1), manifolds.Sphere(2)
T1, T2 = manifolds.FlatTorus(1), manifolds.FlatTorus(2)


class _Matrices(manifolds.AbstractManifold):
    """R^{2x3} with the Frobenius metric: a factor whose points are matrices."""

    dim: int = eqx.field(static=True, default=6)
    shape: tuple[int, ...] = eqx.field(static=True, default=(2, 3))
    injectivity_radius: ClassVar[float] = math.inf

    def expmap(self, x, u):
        return x + u

    def logmap(self, x, y):
        return y - x

    def projx(self, x):
        return jnp.asarray(x)

    def proju(self, x, u):
        return jnp.asarray(u)

    def inner(self, x, u, v):
        return jnp.sum(u * v)

    def origin(self, dtype=float):
        return jnp.zeros(self.shape, dtype)


PRODUCTS = [
    manifolds.Product(S2, T1),
    manifolds.Product(E2, S1, T2),
    manifolds.Product(manifolds.Product(S2, T1), S1),  # products nest
    manifolds.Product(_Matrices(), S2),
]
PRODUCT_IDS = ["S2xT1", "E2xS1xT2", "(S2xT1)xS1", "R2x3xS2"]
every_product = pytest.mark.parametrize("m", PRODUCTS, ids=PRODUCT_IDS)


def _parts(m, seed):
    """Per factor: two random points, two tangent vectors at the first, an ambient
    array; joined into the product's arrays as the last element."""
    keys = jax.random.split(jax.random.key(seed), (len(m.factors), 5))
    parts = []
    for f, k in zip(m.factors, keys, strict=True):
        x, y = helpers.manifold_point(f, k[0]), helpers.manifold_point(f, k[1])
        u = f.proju(x, jax.random.normal(k[2], f.shape))
        v = f.proju(x, jax.random.normal(k[3], f.shape))
        a = 3 * jax.random.normal(k[4], f.shape)
        parts.append((x, y, u, v, a))
    joined = tuple(m.join(*column) for column in zip(*parts, strict=True))
    return parts, joined


def _close(actual, desired):
    # the same float64 operations part by part; sums may be reordered
    np.testing.assert_allclose(actual, desired, rtol=1e-12, atol=1e-14)


def test_the_factory_picks_the_class_from_the_factors():
    compact = manifolds.Product(S2, T1)
    assert type(compact) is manifolds.CompactProduct
    assert isinstance(compact, manifolds.AbstractCompactManifold)
    assert isinstance(compact, manifolds.AbstractProduct)
    assert (compact.dim, compact.shape) == (3, (4,))
    flat = manifolds.Product(E2, S1, T2)
    assert type(flat) is manifolds.ProductManifold
    assert not isinstance(flat, manifolds.AbstractCompactManifold)
    assert (flat.dim, flat.shape) == (5, (6,))
    assert isinstance(manifolds.Product(compact, S1), manifolds.AbstractCompactManifold)
    assert manifolds.Product(S2, T1) == compact  # equal factors, equal products
    assert manifolds.Product(_Matrices(), S2).shape == (9,)


X, Y, U, V, A = range(5)  # the columns of `_parts`


def _each(m, parts, method, *columns):
    """`method` of each factor on its own parts (`columns` of `_parts`)."""
    return [
        getattr(f, method)(*(p[c] for c in columns))
        for f, p in zip(m.factors, parts, strict=True)
    ]


@every_product
@given(seed=SEEDS)
def test_a_product_is_its_factors_applied_separately(m, seed):
    parts, (x, y, u, v, a) = _parts(m, seed)
    for got, want in zip(m.split(x), (p[X] for p in parts), strict=True):
        _close(got, want)
    _close(m.join(*m.split(u)), u)
    _close(m.expmap(x, u), m.join(*_each(m, parts, "expmap", X, U)))
    _close(m.logmap(x, y), m.join(*_each(m, parts, "logmap", X, Y)))
    _close(m.projx(a), m.join(*_each(m, parts, "projx", A)))
    _close(m.proju(x, a), m.join(*_each(m, parts, "proju", X, A)))
    _close(m.inner(x, u, v), sum(_each(m, parts, "inner", X, U, V)))
    norms = jnp.stack(_each(m, parts, "norm", X, U))
    _close(m.norm(x, u), jnp.sqrt(jnp.sum(norms**2)))
    _close(m.origin(), m.join(*(f.origin() for f in m.factors)))
    assert m.is_point(x)
    assert m.is_tangent(x, u)
    assert not m.is_point(x.at[-1].add(10.0))  # the last factor is curved or wraps
    # a geodesic path on the product runs along each factor's geodesic
    ps = paths.GeodesicPath(schedules.cond_ot(), m).sample(None, x, y, 0.3)
    rows = zip(m.factors, parts, m.split(ps.xt), m.split(ps.ut), strict=True)
    for f, p, xt, ut in rows:
        ps_f = paths.GeodesicPath(schedules.cond_ot(), f).sample(None, p[X], p[Y], 0.3)
        _close(xt, ps_f.xt)
        _close(ut, ps_f.ut)


@every_product
@given(seed=SEEDS)
def test_squared_distance_is_the_sum_of_squares(m, seed):
    parts, (x, y, *_) = _parts(m, seed)
    squares = sum(d**2 for d in _each(m, parts, "dist", X, Y))
    np.testing.assert_allclose(m.dist(x, y) ** 2, squares, rtol=1e-12)
    np.testing.assert_allclose(m.dist(x, y), m.dist(y, x), rtol=1e-12)
    assert m.dist(x, x) == 0
    grad = jax.grad(lambda z: m.dist(x, z))(x)  # the cone's tip: zero, not NaN
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_euclidean_1_times_euclidean_2_is_euclidean_3():
    m = manifolds.Product(E1, E2)
    assert (m.dim, m.shape) == (E3.dim, E3.shape)
    assert not isinstance(m, manifolds.AbstractCompactManifold)
    x, y, u, v = jax.random.normal(jax.random.key(0), (4, 3))
    for got, want in [
        (m.expmap(x, u), E3.expmap(x, u)),
        (m.logmap(x, y), E3.logmap(x, y)),
        (m.projx(x), E3.projx(x)),
        (m.proju(x, u), E3.proju(x, u)),
        (m.inner(x, u, v), E3.inner(x, u, v)),
        (m.norm(x, u), E3.norm(x, u)),
        (m.dist(x, y), jnp.linalg.norm(x - y)),
        (m.origin(), E3.origin()),
    ]:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # and its geodesic path is the affine path, as on R^3
    ps = paths.GeodesicPath(schedules.cond_ot(), m).sample(None, x, y, 0.25)
    np.testing.assert_allclose(ps.xt, x + 0.25 * (y - x), atol=1e-15)
    np.testing.assert_allclose(ps.ut, y - x, atol=1e-15)


def test_a_compact_products_log_volume_is_the_sum():
    m = manifolds.Product(S2, T1)
    np.testing.assert_allclose(  # vol S^2 = 4 pi, vol T^1 = 2 pi
        m.log_volume(), jnp.log(4 * jnp.pi) + jnp.log(2 * jnp.pi), rtol=1e-14
    )
    x = m.random_uniform(jax.random.key(0))
    np.testing.assert_allclose(m.uniform_log_prob(x), -m.log_volume(), rtol=1e-14)
    nested = manifolds.Product(m, S1, T2)  # (4 pi)(2 pi)(2 pi)(2 pi)^2
    np.testing.assert_allclose(
        nested.log_volume(), jnp.log(4 * jnp.pi) + 4 * jnp.log(2 * jnp.pi), rtol=1e-14
    )


def test_random_uniform_covers_each_factor_independently():
    m = manifolds.Product(S2, T1)
    n = 20_000
    x = jax.vmap(m.random_uniform)(jax.random.split(jax.random.key(1), n))
    assert x.shape == (n, 4)
    assert bool(jax.vmap(m.is_point)(x).all())
    sphere, angle = jax.vmap(m.split)(x)
    # the sphere's part: the moments of the uniform law on S^2 (mean 0, E xx^T = I/3;
    # one coordinate's standard error is sqrt(1/3 / n) = 0.004, so 0.02 is 5 s.e.)
    np.testing.assert_allclose(sphere.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(sphere.T @ sphere / n, jnp.eye(3) / 3, atol=0.02)
    # the torus's part: even on [0, 2 pi) (8 bins, s.e. 0.0023 each, 0.01 ~ 4 s.e.)
    counts, _ = np.histogram(np.asarray(angle[:, 0]), bins=8, range=(0, 2 * np.pi))
    np.testing.assert_allclose(counts / n, 1 / 8, atol=0.01)
    # the two are drawn with different keys: uncorrelated (s.e. ~ 1/sqrt(n) = 0.007)
    corr = np.corrcoef(np.asarray(sphere[:, 2]), np.cos(np.asarray(angle[:, 0])))
    assert abs(corr[0, 1]) < 0.03
    with jax.enable_x64(False):
        assert m.random_uniform(jax.random.key(2)).dtype == jnp.float32


def test_matrix_points_are_flattened_in_order():
    m = manifolds.Product(_Matrices(), S2)
    a = jnp.arange(6.0).reshape(2, 3)
    north = jnp.array([0.0, 0.0, 1.0])
    x = m.join(a, north)
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4, 5, 0, 0, 1])
    got_a, got_north = m.split(x)
    np.testing.assert_array_equal(got_a, a)
    np.testing.assert_array_equal(got_north, north)


def test_batches_by_vmap_under_jit_and_float32_stays_float32():
    m = manifolds.Product(E2, S1, T2)
    keys = jax.random.split(jax.random.key(3), 16)
    x = jax.vmap(lambda k: helpers.manifold_point(m, k))(keys)
    u = jax.vmap(m.proju)(x, jax.random.normal(jax.random.key(4), x.shape))
    eager = jnp.stack([m.expmap(xi, ui) for xi, ui in zip(x, u, strict=True)])
    np.testing.assert_allclose(jax.jit(jax.vmap(m.expmap))(x, u), eager, atol=1e-14)
    # the product is a pytree: it passes through jit as an argument
    step = jax.jit(lambda m, x, u: m.expmap(x, u))
    np.testing.assert_allclose(step(m, x[0], u[0]), eager[0], atol=1e-14)
    with jax.enable_x64(False):
        x32, u32 = x.astype(jnp.float32), u.astype(jnp.float32)
        y = jax.jit(jax.vmap(m.expmap))(x32, u32)
        assert y.dtype == jax.vmap(m.dist)(x32, y).dtype == jnp.float32
        assert m.origin().dtype == jnp.float32


def test_the_registry_builds_a_product_from_manifold_objects():
    assert "product" in registry.names("manifold")
    built = registry.build("manifold", "product", factors=[S2, T1])
    assert built == manifolds.Product(S2, T1)
    assert isinstance(built, manifolds.CompactProduct)
    assert isinstance(
        registry.build("manifold", "product", factors=(E1, S1)),
        manifolds.ProductManifold,
    )
    with pytest.raises(TypeError, match="names with dimensions"):
        registry.build("manifold", "product", factors=["sphere", "torus"])


@pytest.mark.parametrize(
    ("factors", "error", "match"),
    [
        ((), ValueError, "factors must hold at least two manifolds .* got 0"),
        ((S2,), ValueError, "at least two manifolds .* got 1"),
        ((S2, "torus"), TypeError, r"factors\[1\] must be a manifold object"),
        ((S2, 3), TypeError, r"factors\[1\] must be a flowlab.manifolds.Abstract"),
        (([S2, T1],), TypeError, r"factors\[0\] is a list; pass each manifold"),
    ],
    ids=["none", "one", "a-name", "a-number", "a-list"],
)
def test_bad_factors_are_refused_by_name(factors, error, match):
    with pytest.raises(error, match=match):
        manifolds.Product(*factors)


def test_the_final_classes_check_their_factors():
    with pytest.raises(TypeError, match=r"factors\[1\] must be compact"):
        manifolds.CompactProduct((S2, E1))
    with pytest.raises(TypeError, match="factors must be a sequence"):
        manifolds.ProductManifold(S2)
    assert manifolds.ProductManifold((S2, T1)).dim == 3  # allowed, just not compact


def test_wrong_shapes_name_the_argument():
    m = manifolds.Product(S2, T1)
    x = m.origin()
    with pytest.raises(ValueError, match=r"x must be one point .* shape \(4,\)"):
        m.split(jnp.zeros(3))
    with pytest.raises(ValueError, match="u must be one point"):
        m.expmap(x, jnp.zeros(5))
    with pytest.raises(ValueError, match="x must be one point .* jax.vmap"):
        m.projx(jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"one array per factor \(2\), got 1"):
        m.join(x)
    with pytest.raises(ValueError, match=r"parts\[0\] must be a point .* Sphere"):
        m.join(jnp.zeros(2), jnp.zeros(1))
    assert not m.is_point(jnp.zeros(3))
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        m.random_uniform(0)
