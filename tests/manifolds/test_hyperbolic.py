"""Hyperbolic space: closed forms, the Poincaré ball, and accuracy where the naive
formulas cancel (nearby points, points far from the origin, tiny and long steps).

The reference distances are computed with 120-digit `decimal` arithmetic from the
points' spatial parts (the hyperboloid's `projx` convention), independently of
flowlab; float64 identities are then held to a few ulps.
"""

import math
from decimal import Decimal, localcontext

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowlab import manifolds, paths, registry, schedules

SEEDS = st.integers(0, 2**31 - 1)
EPS = float(np.finfo(np.float64).eps)


def _exact(x, y):
    """`(d(x, y), log_x(y))` to float64 precision, from 120-digit arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 120
        xs = [Decimal(float(v)) for v in np.asarray(x)[1:]]
        ys = [Decimal(float(v)) for v in np.asarray(y)[1:]]
        x0 = (1 + sum(v * v for v in xs)).sqrt()
        y0 = (1 + sum(v * v for v in ys)).sqrt()
        cosh = x0 * y0 - sum(a * b for a, b in zip(xs, ys, strict=True))
        if cosh - 1 < Decimal(10) ** -100:  # the same point
            return 0.0, np.zeros(len(xs) + 1)
        sinh = (cosh * cosh - 1).sqrt()
        theta = (cosh + sinh).ln()
        log = [
            (theta / sinh) * (b - cosh * a)
            for a, b in zip([x0, *xs], [y0, *ys], strict=True)
        ]
        return float(theta), np.array([float(v) for v in log])


def _unit(key, d):
    n = jax.random.normal(key, (d,))
    return n / jnp.linalg.norm(n)


def _point(r, n):
    """The point at distance `r` from the origin in the unit direction `n`."""
    return jnp.concatenate([jnp.array([math.cosh(r)]), math.sinh(r) * n])


def _unit_tangent(m, key, x):
    u = m.proju(x, jax.random.normal(key, m.shape))
    return u / m.norm(x, u)


def _minkowski(u, v):
    return jnp.sum(u[1:] * v[1:]) - u[0] * v[0]


@pytest.mark.parametrize("d", [1, 3])
def test_closed_forms_on_a_geodesic_through_the_origin(d):
    # x_a = (cosh a, sinh a n): d(x_a, x_b) = |a - b|, log_{x_a} x_b = (b - a) e_a with
    # e_a = (sinh a, cosh a n); the stored points carry relative rounding eps, which
    # moves them by about eps along the geodesic, hence the 1e-14 absolute slack
    m = manifolds.Hyperbolic(d)
    n = _unit(jax.random.key(d), d)
    grid = [-15.0, -1.0, -1e-3, 0.0, 1e-9, 0.5, 3.0, 19.9, 20.0]
    for a in grid:
        for b in grid:
            xa, xb = _point(a, n), _point(b, n)
            e_a = jnp.concatenate([jnp.array([math.sinh(a)]), math.cosh(a) * n])
            np.testing.assert_allclose(
                m.dist(xa, xb), abs(a - b), rtol=1e-14, atol=2e-14
            )
            np.testing.assert_allclose(
                m.logmap(xa, xb),
                (b - a) * e_a,
                rtol=1e-13,
                atol=1e-14 * float(jnp.max(jnp.abs(xa))),
            )
    # the Cond-OT geodesic path runs along the same curve at constant speed
    path = paths.GeodesicPath(schedules.cond_ot(), m)
    a, b = -1.0, 2.5
    for t in (0.0, 0.3, 1.0):
        ps = path.sample(None, _point(a, n), _point(b, n), t)
        s = a + t * (b - a)
        np.testing.assert_allclose(ps.xt, _point(s, n), rtol=1e-13, atol=1e-14)
        e_s = jnp.concatenate([jnp.array([math.sinh(s)]), math.cosh(s) * n])
        np.testing.assert_allclose(ps.ut, (b - a) * e_s, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("theta", [1e-8, 1e-4, 5e-3, 9.9e-3, 1.01e-2, 5e-2, 1.0, 20.0])
@given(seed=SEEDS)
def test_expmap_is_the_closed_form_across_its_series_switch(theta, seed):
    # below theta = 1e-2 expmap uses Taylor series; the direct formula is accurate to
    # a few ulps in float64 for these theta, so both sides of the switch are checked
    m = manifolds.Hyperbolic(3)
    k0, k1 = jax.random.split(jax.random.key(seed))
    x = helpers.manifold_point(m, k0)
    u = theta * _unit_tangent(m, k1, x)
    direct = math.cosh(theta) * x + math.sinh(theta) / theta * u
    # (a component may cancel: the tolerance is relative to the largest one)
    scale = float(jnp.max(jnp.abs(direct)))
    np.testing.assert_allclose(m.expmap(x, u), direct, rtol=1e-14, atol=1e-14 * scale)


@pytest.mark.parametrize("size", [1e-12, 1e-8, 1e-2, 1.0, 20.0, 300.0])
def test_small_and_long_steps_from_the_origin(size):
    # at the origin exp(u) = (cosh|u|, sinh|u| u/|u|): dist and logmap must return
    # |u| and u to a few ulps, for tiny steps (no sqrt(eps) loss of arccosh near 1)
    # and long ones (y_0 = cosh 300 ~ 1e130, no overflow). XLA's cosh and sinh
    # differ from Python's by up to ~8 ulps at large arguments, hence 1e-14 on y
    m = manifolds.Hyperbolic(4)
    o = m.origin()
    n = _unit(jax.random.key(0), 4)
    u = jnp.concatenate([jnp.zeros(1), size * n])
    y = m.expmap(o, u)
    np.testing.assert_allclose(y, _point(size, n), rtol=1e-14)
    np.testing.assert_allclose(m.dist(o, y), size, rtol=4 * EPS)
    np.testing.assert_allclose(m.dist(y, o), size, rtol=4 * EPS)
    np.testing.assert_allclose(m.logmap(o, y), u, rtol=8 * EPS, atol=1e-300)
    # the distance grows at unit speed along the geodesic, also in autodiff
    speed = jax.grad(lambda s: m.dist(o, m.expmap(o, s * u / size)))(size)
    np.testing.assert_allclose(speed, 1.0, rtol=1e-12)


@pytest.mark.parametrize("r", [0.0, 0.5, 3.0, 10.0])
@pytest.mark.parametrize("delta", [1e-12, 1e-8, 1e-4, 1.0, 20.0])
def test_distance_keeps_its_digits_for_nearby_and_far_points(r, delta):
    # y = exp_x(delta v) for x at distance r from the origin. The reference is the
    # exact distance of the stored (rounded) points. The worst case of the formula is
    # a relative eps sinh(r) (rounding the coordinates moves a point that far); for
    # these random directions: <= 3 eps for steps up to 1e-4 at any r, and up to
    # 1e-13 (r = 10) for long steps
    m = manifolds.Hyperbolic(3)
    keys = jax.random.split(jax.random.key(int(10 * r + 1e3 * delta) % 2**31), 16)
    dist = jax.jit(m.dist)
    worst = 0.0
    for k0, k1 in zip(keys[:8], keys[8:], strict=True):
        x = _point(r, _unit(k0, 3))
        y = m.expmap(x, delta * _unit_tangent(m, k1, x))
        exact, _ = _exact(x, y)
        if exact > 0:  # (at r = 10 a 1e-12 step can round to y = x)
            worst = max(worst, abs(float(dist(x, y)) - exact) / exact)
    assert worst < 8 * EPS * (1 + math.sinh(r) * min(delta, 1.0)), worst


def test_the_naive_formulas_lose_what_the_reference_catches():
    # the reference of the test above would catch a regression to arccosh(-<x, y>),
    # which returns 0 (or garbage) for these nearby points
    m = manifolds.Hyperbolic(3)
    x = _point(3.0, _unit(jax.random.key(0), 3))
    y = m.expmap(x, 1e-8 * _unit_tangent(m, jax.random.key(1), x))
    exact, _ = _exact(x, y)
    naive = jnp.arccosh(jnp.maximum(-_minkowski(x, y), 1.0))
    assert abs(float(naive) - exact) / exact > 1e-3
    np.testing.assert_allclose(m.dist(x, y), exact, rtol=4 * EPS)


@pytest.mark.parametrize(
    ("r1", "r2"), [(0.1, 0.1), (1.0, 1.0), (5.0, 5.0), (1.0, 15.0), (15.0, 15.0)]
)
def test_random_pairs_match_the_exact_distance_and_logmap(r1, r2):
    # independent directions: both branches (same side / opposite sides of the
    # origin). Measured: dist within 3 eps, logmap within 2 eps |log| + eps x_0 in
    # the metric (eps x_0 is the rounding of x's coordinates, in distance)
    m = manifolds.Hyperbolic(3)
    keys = jax.random.split(jax.random.key(int(r1 * 7 + r2)), 24)
    dist, logmap = jax.jit(m.dist), jax.jit(m.logmap)
    for k0, k1 in zip(keys[:12], keys[12:], strict=True):
        x, y = _point(r1, _unit(k0, 3)), _point(r2, _unit(k1, 3))
        exact, exact_log = _exact(x, y)
        np.testing.assert_allclose(dist(x, y), exact, rtol=8 * EPS)
        err = m.norm(x, logmap(x, y) - exact_log)
        assert err < 8 * EPS * (exact + float(x[0])), (err, exact)


def test_poincare_ball_round_trips_and_distance():
    m = manifolds.Hyperbolic(3)
    keys = jax.random.split(jax.random.key(0), 3)
    radius = 0.99 * jax.random.uniform(keys[0], (64, 1)) ** 0.5
    p = radius * jax.vmap(lambda k: _unit(k, 3))(jax.random.split(keys[1], 64))
    x = jax.vmap(m.from_poincare)(p)
    assert bool(jax.vmap(m.is_point)(x).all())
    np.testing.assert_allclose(jax.vmap(m.to_poincare)(x), p, atol=1e-15)
    # x_0 <= 200 here: the round trip through 1 - |p|^2 = 2 / (1 + x_0) costs eps x_0
    back = jax.vmap(m.from_poincare)(jax.vmap(m.to_poincare)(x))
    np.testing.assert_allclose(back, x, rtol=1e-13)
    np.testing.assert_allclose(m.from_poincare(jnp.zeros(3)), m.origin())
    np.testing.assert_allclose(m.to_poincare(m.origin()), jnp.zeros(3))
    # the ball's own distance formula; arccosh(1 + z) is ill-conditioned near 1,
    # so only pairs at least 0.1 apart are compared
    q = jnp.roll(p, 1, axis=0)
    sq = lambda v: jnp.sum(v * v, axis=-1)  # noqa: E731
    ball = jnp.arccosh(1 + 2 * sq(p - q) / ((1 - sq(p)) * (1 - sq(q))))
    hyperboloid = jax.vmap(m.dist)(x, jnp.roll(x, 1, axis=0))
    apart = ball > 0.1
    assert int(apart.sum()) > 50
    np.testing.assert_allclose(hyperboloid[apart], ball[apart], rtol=1e-12)
    # the geodesic from the origin is a straight ray in the ball: |p| = tanh(r / 2)
    n = _unit(keys[2], 3)
    for r in (1e-6, 0.5, 5.0, 30.0):
        np.testing.assert_allclose(
            m.to_poincare(_point(r, n)), math.tanh(r / 2) * n, rtol=4 * EPS
        )


def test_poincare_conversions_check_shapes_and_keep_float32():
    m = manifolds.Hyperbolic(2)
    with pytest.raises(ValueError, match=r"p must be a point of the Poincaré ball"):
        m.from_poincare(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"x must be a point of the hyperboloid"):
        m.to_poincare(jnp.zeros(2))
    with jax.enable_x64(False):
        p = jnp.array([0.3, -0.5], jnp.float32)
        x = m.from_poincare(p)
        assert x.dtype == m.to_poincare(x).dtype == jnp.float32
        np.testing.assert_allclose(m.to_poincare(x), p, atol=1e-7)


def test_inner_is_the_minkowski_form_and_stays_accurate_far_out():
    m = manifolds.Hyperbolic(3)
    keys = jax.random.split(jax.random.key(0), 3)
    x = helpers.manifold_point(m, keys[0])  # near the origin: the form is accurate
    u, v = _unit_tangent(m, keys[1], x), 2.0 * _unit_tangent(m, keys[2], x)
    np.testing.assert_allclose(m.inner(x, u, v), _minkowski(u, v), rtol=1e-12)
    # at r = 15 (x_0 ~ 1.6e6) the radial unit vector (sinh r, cosh r n): the
    # Minkowski form cosh^2 - sinh^2 cancels to ~eps x_0^2 ~ 1e-4; inner does not
    r, n = 15.0, _unit(keys[0], 3)
    x = _point(r, n)
    radial = jnp.concatenate([jnp.array([math.sinh(r)]), math.cosh(r) * n])
    assert abs(float(_minkowski(radial, radial)) - 1) > 1e-6
    np.testing.assert_allclose(m.norm(x, radial), 1.0, rtol=4 * EPS)
    np.testing.assert_allclose(m.expmap(x, 2.0 * radial), _point(r + 2, n), rtol=1e-14)
    # inwards, cosh(3) x - sinh(3) radial cancels to ~ e^-6 of its terms: 1e-13
    np.testing.assert_allclose(m.dist(x, m.expmap(x, -3.0 * radial)), 3.0, rtol=1e-13)


@given(seed=SEEDS)
def test_proju_is_the_euclidean_orthogonal_projection(seed):
    m = manifolds.Hyperbolic(4)
    k0, k1 = jax.random.split(jax.random.key(seed))
    x = _point(10.0, _unit(k0, 4))  # far out: x_0 ~ 1.1e4
    b = jax.random.normal(k1, m.shape)
    u = m.proju(x, b)
    # tangent (relative to the sizes involved), removed part along J x = (-x0, xs)
    assert abs(float(_minkowski(x, u))) < 8 * EPS * float(jnp.linalg.norm(x))
    jx = x.at[0].multiply(-1)
    removed = b - u
    np.testing.assert_allclose(
        removed, jnp.sum(removed * jx) / jnp.sum(jx * jx) * jx, atol=1e-14
    )
    # never longer than its input (u + <x, u>_L x would be ~ |x|^2 = 2.4e8 times)
    assert float(jnp.linalg.norm(u)) <= float(jnp.linalg.norm(b)) * (1 + 1e-15)
    np.testing.assert_allclose(m.proju(x, u), u, atol=1e-15)


@pytest.mark.parametrize("r", [0.0, 2.0, 10.0])
def test_finite_values_and_gradients_at_and_near_y_equals_x(r):
    m = manifolds.Hyperbolic(3)
    x = _point(r, _unit(jax.random.key(0), 3))
    x = m.projx(x)
    v = _unit_tangent(m, jax.random.key(1), x)
    for y in (x, m.expmap(x, 1e-10 * v), m.expmap(x, 1e-3 * v)):
        for fn in (m.logmap, m.dist):
            for a in (
                fn(x, y),
                jax.jacfwd(lambda z, fn=fn: fn(x, z))(y),
                jax.grad(lambda z, fn=fn: jnp.sum(fn(x, z)))(y),
                jax.grad(lambda z, fn=fn, y=y: jnp.sum(fn(z, y)))(x),
            ):
                assert bool(jnp.all(jnp.isfinite(a))), (fn.__name__, y)
    assert float(m.dist(x, x)) == 0.0
    assert bool(jnp.all(m.logmap(x, x) == 0))
    # the derivative of logmap at y = x is the tangent projection (also far out)
    jac = jax.jacfwd(lambda z: m.logmap(x, z))(x)
    proj = jax.vmap(lambda e: m.proju(x, e), out_axes=1)(jnp.eye(4))
    np.testing.assert_allclose(jac, proj, atol=1e-12)
    # expmap at u = 0: first and second derivatives finite, first the identity
    zero = jnp.zeros(4)
    _, dy = jax.jvp(lambda w: m.expmap(x, w), (zero,), (v,))
    np.testing.assert_allclose(dy, v, rtol=1e-14, atol=1e-14)
    hess = jax.hessian(lambda w: jnp.sum(m.expmap(x, w)))(zero)
    assert bool(jnp.all(jnp.isfinite(hess)))


@given(seed=SEEDS)
def test_gradients_match_finite_differences_on_both_branches(seed):
    # dist switches formula on the sign of <x_s, y_s>: the gradient is right on
    # both sides and the value continuous across (pairs straddling the switch)
    m = manifolds.Hyperbolic(2)
    keys = jax.random.split(jax.random.key(seed), 3)
    x = helpers.manifold_point(m, keys[0])
    for y in (helpers.manifold_point(m, keys[1]), m.projx(-x), m.projx(x * 0.5)):
        e = m.proju(y, jax.random.normal(keys[2], m.shape))
        h = 1e-6
        fd = (m.dist(x, y + h * e) - m.dist(x, y - h * e)) / (2 * h)
        grad = jax.grad(lambda z, x=x: m.dist(x, z))(y)
        np.testing.assert_allclose(jnp.sum(grad * e), fd, rtol=1e-6, atol=1e-8)
    xs = x[1:]
    perp = jnp.array([-xs[1], xs[0]])  # <x_s, perp> = 0 exactly
    for tilt in (-1e-12, 0.0, 1e-12):
        y = m.projx(jnp.concatenate([jnp.zeros(1), perp + tilt * xs]))
        exact, _ = _exact(x, y)
        np.testing.assert_allclose(m.dist(x, y), exact, rtol=4 * EPS)


def test_float32_in_float32_out_and_accuracy():
    m = manifolds.Hyperbolic(3)
    with jax.enable_x64(False):
        o = m.origin()
        assert o.dtype == jnp.float32
        n = _unit(jax.random.key(0), 3)
        for size in (1e-6, 1e-2, 5.0):
            u = jnp.concatenate([jnp.zeros(1, jnp.float32), size * n])
            y = m.expmap(o, u)
            assert y.dtype == m.dist(o, y).dtype == m.logmap(o, y).dtype == jnp.float32
            np.testing.assert_allclose(m.dist(o, y), size, rtol=1e-6)
            np.testing.assert_allclose(m.logmap(o, y), u, rtol=1e-6, atol=1e-12)
        # nearby points away from the origin: relative 1e-4 at 1e-3 apart (the
        # float32 rounding of x itself moves it by ~eps32 x_0 ~ 5e-7)
        x = m.expmap(o, 2.0 * jnp.concatenate([jnp.zeros(1, jnp.float32), n]))
        v = _unit_tangent(m, jax.random.key(1), x)
        y = m.expmap(x, 1e-3 * v)
        np.testing.assert_allclose(m.dist(x, y), 1e-3, rtol=1e-3)


def test_registry_dimension_and_no_uniform_law():
    assert "hyperbolic" in registry.names("manifold")
    assert registry.build("manifold", "hyperbolic", dim=3) == manifolds.Hyperbolic(3)
    assert manifolds.Hyperbolic(2).shape == (3,)
    assert not isinstance(manifolds.Hyperbolic(2), manifolds.AbstractCompactManifold)
    for dim in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="dim must be a positive int"):
            manifolds.Hyperbolic(dim)
