"""SO(3): closed forms, the Haar law and the volume, conversions, and accuracy and
finite derivatives at the identity and at half turns (the cut locus).

Reference formulas (rotations about coordinate axes, Rodrigues, the angle law
(1 - cos t)/pi) are typed in here, not imported from flowlab.
"""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowlab import manifolds, paths, registry, schedules

SO3 = manifolds.SO3()
SEEDS = st.integers(0, 2**31 - 1)
EYE = jnp.eye(3)


def _keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)


def _hat(w):
    return jnp.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _about(axis, theta):
    """The rotation by `theta` about the coordinate axis `axis`, in closed form."""
    c, s = np.cos(theta), np.sin(theta)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return jnp.asarray(r)


def _unit(key, dtype=jnp.float64):
    n = jax.random.normal(key, (3,), dtype)
    return n / jnp.linalg.norm(n)


def _half_turn(n):
    """The rotation by pi about the unit vector `n`: 2 n n^T - I."""
    n = jnp.asarray(n)
    return 2 * n[:, None] * n[None, :] - jnp.eye(3, dtype=n.dtype)


AXES = [0, 1, 2]
ANGLES = [0.0, 1e-8, 0.3, 1.0, 2.5, np.pi - 1e-3, np.pi - 1e-9]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("theta", ANGLES)
def test_rotations_about_coordinate_axes_match_closed_forms(axis, theta):
    r = _about(axis, theta)
    omega = theta * jnp.eye(3)[axis]
    np.testing.assert_allclose(manifolds.axis_angle_to_matrix(omega), r, atol=1e-15)
    # the angle keeps its digits at both ends (4 ulps of pi at a half turn)
    np.testing.assert_allclose(manifolds.matrix_to_axis_angle(r), omega, atol=1e-15)
    np.testing.assert_allclose(SO3.dist(EYE, r), theta, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(SO3.logmap(EYE, r), _hat(omega), atol=1e-15)
    # bi-invariance: the same angle between B R and B, and between R B and B
    b = SO3.random_uniform(jax.random.key(axis))
    np.testing.assert_allclose(SO3.dist(b, b @ r), theta, atol=1e-14)
    np.testing.assert_allclose(SO3.dist(b, r @ b), theta, atol=1e-14)


def test_two_turns_about_one_axis_are_the_difference_of_angles():
    for a, b in [(0.2, 1.7), (-1.5, 1.5), (3.0, -0.1)]:
        d = abs(a - b)
        d = min(d, 2 * np.pi - d)  # the short way round
        np.testing.assert_allclose(SO3.dist(_about(2, a), _about(2, b)), d, atol=1e-14)


@pytest.mark.parametrize("theta", [1e-4, 1e-2, 1.9e-2, 2.1e-2, 5e-2, 1.0, 3.0])
@given(seed=SEEDS)
def test_exp_is_rodrigues_across_its_series_switch(theta, seed):
    # below theta = 2e-2 the half-angle functions use Taylor series; in float64 the
    # direct Rodrigues formula is accurate to ~1e-15 here, so both sides are checked
    n = _unit(jax.random.key(seed))
    k = _hat(n)
    direct = EYE + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k
    np.testing.assert_allclose(
        manifolds.axis_angle_to_matrix(theta * n), direct, atol=1e-15
    )
    omega = manifolds.matrix_to_axis_angle(direct)
    np.testing.assert_allclose(omega, theta * n, rtol=1e-13, atol=2e-15)


NEAR_IDENTITY = [0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1.9e-2, 2.1e-2]
NEAR_HALF_TURN = [np.pi - d for d in (1e-3, 1e-6, 1e-9, 1e-12)]
# worst absolute errors of the angle and the rotation vector, measured on 500 axes:
# ~9e-16 in float64 and ~5e-7 in float32 (a few ulps of pi)
TOL = {jnp.float64: 4e-15, jnp.float32: 2e-6}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("theta", NEAR_IDENTITY + NEAR_HALF_TURN)
def test_log_of_exp_is_accurate_near_the_identity_and_the_half_turn(dtype, theta):
    if dtype == jnp.float32:  # closer to pi, float32 angles round up to pi or past it
        theta = min(theta, np.pi - 1e-6)
    n = jax.vmap(lambda k: _unit(k, dtype))(_keys(1, 200))
    omega = (jnp.asarray(theta, dtype) * n).astype(dtype)
    r = jax.vmap(manifolds.axis_angle_to_matrix)(omega)
    back = jax.vmap(manifolds.matrix_to_axis_angle)(r)
    assert r.dtype == back.dtype == dtype
    np.testing.assert_allclose(back, omega, rtol=0, atol=TOL[dtype])
    eye = jnp.broadcast_to(jnp.eye(3, dtype=dtype)[None], r.shape)
    angle = jax.vmap(SO3.dist)(eye, r)
    np.testing.assert_allclose(angle, jnp.linalg.norm(omega, axis=1), atol=TOL[dtype])
    if theta < 1e-2:  # at the identity the small angle keeps its relative digits
        rel = jnp.linalg.norm(back - omega, axis=1) / jnp.linalg.norm(omega, axis=1)
        assert theta == 0 or float(rel.max()) < 10 * jnp.finfo(dtype).eps
    # and exp of log gives the rotation back, on and off the identity
    base = jax.vmap(lambda k: SO3.random_uniform(k, dtype))(_keys(2, 200))
    s = base @ r
    u = jax.vmap(SO3.logmap)(base, s)
    err = jax.vmap(SO3.dist)(jax.vmap(SO3.expmap)(base, u), s)
    assert float(err.max()) < 4 * TOL[dtype]


@pytest.mark.parametrize(
    "n",
    [(1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (2 / 7, -3 / 7, 6 / 7), (2 / 7, 3 / 7, -6 / 7)],
)
def test_an_exact_half_turn_takes_the_documented_axis(n):
    n = jnp.asarray(n)
    r = _half_turn(n)
    # of +-pi n, the one whose largest-magnitude component is positive
    expected = np.pi * n * jnp.sign(n[jnp.argmax(jnp.abs(n))])
    np.testing.assert_allclose(manifolds.matrix_to_axis_angle(r), expected, atol=1e-15)
    q = manifolds.matrix_to_quaternion(r)
    np.testing.assert_allclose(q, jnp.concatenate([jnp.zeros(1), expected / np.pi]))
    np.testing.assert_allclose(SO3.dist(EYE, r), np.pi, rtol=1e-15)
    b = SO3.random_uniform(jax.random.key(0))
    u = SO3.logmap(b, b @ r)
    np.testing.assert_allclose(SO3.norm(b, u), np.pi, rtol=1e-14)
    np.testing.assert_allclose(SO3.expmap(b, u), b @ r, atol=1e-14)


def _finite(*arrays):
    return all(bool(jnp.all(jnp.isfinite(a))) for a in arrays)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
def test_finite_values_and_gradients_at_the_identity_and_half_turns(dtype):
    x = SO3.random_uniform(jax.random.key(3), dtype)
    n = _unit(jax.random.key(4), dtype)
    targets = {
        "equal": x,
        "half turn": x @ _half_turn(jnp.array([2 / 7, -3 / 7, 6 / 7], dtype)),
        "axis half turn": x @ jnp.diag(jnp.array([1.0, -1.0, -1.0], dtype)),
        "near half turn": x @ manifolds.axis_angle_to_matrix((np.pi - 1e-6) * n),
    }
    for name, y in targets.items():
        for fn in (SO3.logmap, SO3.dist):
            jac = jax.jacfwd(lambda z, fn=fn: fn(x, z))(y)
            grad = jax.grad(lambda z, fn=fn: jnp.sum(fn(x, z)))(y)
            assert _finite(fn(x, y), jac, grad), (fn.__name__, name)
        rel = x.T @ y
        for fn in (manifolds.matrix_to_axis_angle, manifolds.matrix_to_quaternion):
            assert _finite(fn(rel), jax.jacfwd(fn)(rel)), (fn.__name__, name)
    zero = jnp.zeros((3, 3), dtype)
    for u in (zero, x @ _hat(np.pi * n).astype(dtype)):
        assert _finite(
            jax.jacfwd(lambda w: SO3.expmap(x, w))(u),
            jax.hessian(lambda w: jnp.sum(SO3.expmap(x, w)))(u),
            jax.grad(lambda w: SO3.norm(x, w))(u),
        )
    assert _finite(
        jax.hessian(lambda w: jnp.sum(manifolds.axis_angle_to_matrix(w)))(n * 0)
    )
    assert _finite(
        jax.jacfwd(SO3.projx)(x), jax.hessian(lambda a: SO3.projx(a)[0, 1])(x)
    )


@pytest.mark.parametrize("theta", [0.0, 1e-8, 1e-3, 1.0, 3.0, np.pi - 1e-6])
def test_the_derivative_of_log_inverts_that_of_exp(theta):
    # Log(Exp(w)) = w near w for |w| < pi, so its Jacobian is the identity; this
    # checks the derivatives of both maps, through both series, up to a half turn
    w = theta * _unit(jax.random.key(5))
    jac = jax.jacfwd(
        lambda v: manifolds.matrix_to_axis_angle(SO3.expmap(EYE, _hat(v)))
    )(w)
    np.testing.assert_allclose(jac, np.eye(3), atol=1e-9)


def _flat_jacobian(fn, x):
    return jax.jacfwd(fn)(x).reshape(9, 9)


def _flat_proju(x):
    return jax.vmap(lambda e: SO3.proju(x, e.reshape(3, 3)).reshape(9), out_axes=1)(
        jnp.eye(9)
    )


@given(seed=SEEDS)
def test_derivatives_of_exp_and_log_at_the_base_point(seed):
    # the shared identity test, with matrices flattened (it builds its projection
    # from jnp.eye(m.shape[0]), which presumes vector points)
    k0, k1 = _keys(seed, 2)
    x = SO3.random_uniform(k0)
    u = SO3.proju(x, jax.random.normal(k1, (3, 3)))
    y, dy = jax.jvp(lambda w: SO3.expmap(x, w), (jnp.zeros((3, 3)),), (u,))
    np.testing.assert_allclose(y, x, atol=1e-15)
    np.testing.assert_allclose(dy, u, atol=1e-14)
    proj = _flat_proju(x)
    np.testing.assert_allclose(
        _flat_jacobian(lambda z: SO3.logmap(x, z), x), proj, atol=1e-14
    )
    np.testing.assert_allclose(_flat_jacobian(SO3.projx, x), proj, atol=1e-14)


def test_uniform_rotations_have_the_haar_angle_law():
    n = 20_000
    r = jax.vmap(SO3.random_uniform)(_keys(0, n))
    assert bool(jax.vmap(SO3.is_point)(r).all())
    eye = jnp.broadcast_to(EYE[None], r.shape)
    b = SO3.random_uniform(jax.random.key(1))
    for angle in (
        jax.vmap(SO3.dist)(eye, r),
        jax.vmap(lambda s: SO3.dist(b.T, s @ b))(r),  # the angle of b R b: Haar too
    ):
        grid = np.linspace(0.25, 3.0, 12)
        cdf = (angle[:, None] <= grid[None, :]).mean(0)
        # F(t) = (t - sin t) / pi, the integral of (1 - cos t) / pi; the standard
        # error of an empirical CDF is at most 0.5 / sqrt(n) = 0.0035: 4.3 s.e.
        np.testing.assert_allclose(cdf, (grid - np.sin(grid)) / np.pi, atol=0.015)
        # E[t] = pi / 2 + 2 / pi, Var[t] = pi^2 / 3 + 2 - E[t]^2 = 0.417: 4.4 s.e.
        np.testing.assert_allclose(angle.mean(), np.pi / 2 + 2 / np.pi, atol=0.02)
    flat = r.reshape(n, 9)
    np.testing.assert_allclose(flat.mean(0), 0.0, atol=0.017)  # s.e. 0.0041
    # E[R_ij R_kl] = delta_ik delta_jl / 3; s.e. of the diagonal 0.0021
    np.testing.assert_allclose(flat.T @ flat / n, np.eye(9) / 3, atol=0.01)


def test_log_volume_is_the_integral_of_the_volume_form():
    np.testing.assert_allclose(SO3.log_volume(), np.log(8 * np.pi**2), rtol=1e-15)
    np.testing.assert_allclose(SO3.uniform_log_prob(EYE), -np.log(8 * np.pi**2))

    # sqrt(det G) of the metric pulled back by w -> Exp(hat w), from jax.jacfwd of
    # the library's expmap: integrated over the ball of radius pi (the injectivity
    # radius), in polar coordinates with Gauss-Legendre nodes on [0, pi]
    def volume_density(w):
        jac = jax.jacfwd(lambda v: SO3.expmap(EYE, _hat(v)))(w)  # (3, 3, 3)
        cols = jnp.moveaxis(jac, -1, 0)  # d exp / d w_k, tangent at y
        y = SO3.expmap(EYE, _hat(w))
        g = jax.vmap(lambda a: jax.vmap(lambda b: SO3.inner(y, a, b))(cols))(cols)
        return jnp.sqrt(jnp.linalg.det(g))

    nodes, weights = np.polynomial.legendre.leggauss(24)
    theta = np.pi / 2 * (nodes + 1)
    for seed in (6, 7):  # bi-invariance: the density depends on the angle only
        n = _unit(jax.random.key(seed))
        density = jax.vmap(lambda t, n=n: volume_density(t * n))(jnp.asarray(theta))
        # and it is 2 (1 - cos t) / t^2 = (sin(t/2) / (t/2))^2 (without cancellation),
        # the Jacobian determinant of the exponential map
        np.testing.assert_allclose(
            density, (np.sin(theta / 2) / (theta / 2)) ** 2, rtol=1e-12
        )
        volume = np.pi / 2 * np.sum(weights * 4 * np.pi * theta**2 * density)
        np.testing.assert_allclose(np.log(volume), SO3.log_volume(), rtol=1e-12)
    # so the law of the angle, 4 pi t^2 density / volume, is (1 - cos t) / pi
    np.testing.assert_allclose(
        4 * np.pi * theta**2 * density / np.exp(SO3.log_volume()),
        2 * np.sin(theta / 2) ** 2 / np.pi,  # = (1 - cos t) / pi, no cancellation
        rtol=1e-12,
    )


@given(seed=SEEDS)
def test_quaternion_round_trips(seed):
    q = jax.random.normal(jax.random.key(seed), (4,))
    r = manifolds.quaternion_to_matrix(q)
    assert SO3.is_point(r, atol=1e-14)
    np.testing.assert_allclose(manifolds.quaternion_to_matrix(-q), r, atol=1e-15)
    np.testing.assert_allclose(manifolds.quaternion_to_matrix(3 * q), r, atol=1e-15)
    unit = jnp.sign(q[0]) * q / jnp.linalg.norm(q)  # the representative with w >= 0
    np.testing.assert_allclose(manifolds.matrix_to_quaternion(r), unit, atol=1e-15)
    np.testing.assert_allclose(
        manifolds.quaternion_to_matrix(manifolds.matrix_to_quaternion(r)), r, atol=1e-15
    )


@given(seed=SEEDS)
def test_axis_angle_round_trips(seed):
    k0, k1, k2 = _keys(seed, 3)
    theta = np.pi * jax.random.uniform(k0, maxval=0.999)
    n = _unit(k1)
    omega = theta * n
    r = manifolds.axis_angle_to_matrix(omega)
    np.testing.assert_allclose(manifolds.matrix_to_axis_angle(r), omega, atol=4e-15)
    # the quaternion of a turn by theta about n is (cos theta/2, sin theta/2 n)
    q = jnp.concatenate([jnp.cos(theta / 2)[None], jnp.sin(theta / 2) * n])
    np.testing.assert_allclose(manifolds.matrix_to_quaternion(r), q, atol=1e-15)
    s = SO3.random_uniform(k2)
    np.testing.assert_allclose(
        manifolds.axis_angle_to_matrix(manifolds.matrix_to_axis_angle(s)), s, atol=4e-15
    )


def test_quaternions_of_turns_about_coordinate_axes_are_the_closed_form():
    theta = 0.7
    for axis in AXES:
        q = (
            jnp.zeros(4)
            .at[0]
            .set(np.cos(theta / 2))
            .at[axis + 1]
            .set(np.sin(theta / 2))
        )
        np.testing.assert_allclose(
            manifolds.quaternion_to_matrix(q), _about(axis, theta), atol=1e-15
        )


@given(seed=SEEDS)
def test_projx_is_the_nearest_rotation(seed):
    k0, k1 = _keys(seed, 2)
    a = 2 * jax.random.normal(k0, (3, 3))
    for b in (a, a.at[0].multiply(-1)):  # both signs of the determinant
        r = SO3.projx(b)
        assert SO3.is_point(r, atol=1e-14)
        np.testing.assert_allclose(jnp.linalg.det(r), 1.0, atol=1e-14)
        u, _, vt = np.linalg.svd(np.asarray(b))
        d = np.sign(np.linalg.det(u @ vt))
        np.testing.assert_allclose(r, u @ np.diag([1, 1, d]) @ vt, atol=1e-13)
        # ||b - R||^2 = const - 2 tr(R^T b): no uniform rotation does better
        others = jax.vmap(SO3.random_uniform)(_keys(seed + 1, 500))
        assert float(jnp.trace(r.T @ b)) >= float(
            jnp.einsum("nij,ij->n", others, b).max()
        )

        # its derivative (a 3x3 solve, no SVD derivative) matches central differences
        def central_difference(e, b=b, h=1e-6):
            e = h * e.reshape(3, 3)
            return ((SO3.projx(b + e) - SO3.projx(b - e)) / (2 * h)).reshape(9)

        fd = jax.vmap(central_difference, out_axes=1)(jnp.eye(9))
        np.testing.assert_allclose(_flat_jacobian(SO3.projx, b), fd, atol=1e-7)
    s = SO3.random_uniform(k1)
    np.testing.assert_allclose(SO3.projx(s), s, atol=1e-15)
    np.testing.assert_allclose(SO3.projx(2.5 * s), s, atol=1e-15)
    assert not SO3.is_point(-s)  # a reflection
    assert not SO3.is_point(jnp.eye(2))


def test_float32_projx_is_accurate_to_an_ulp():
    # the SVD alone is off by up to ~2.6e-7 in float32; its Newton step brings the
    # result to the ~8e-8 of a float64 reference (measured on 300 near-rotations)
    x = jax.vmap(lambda k: SO3.random_uniform(k, jnp.float32))(_keys(8, 64))
    e = 1e-3 * jax.random.normal(jax.random.key(9), x.shape, jnp.float32)
    got = jax.vmap(SO3.projx)(x + e)
    assert got.dtype == jnp.float32
    u, _, vt = np.linalg.svd(np.asarray(x + e, np.float64))
    np.testing.assert_allclose(got, u @ vt, atol=1.5e-7)


@given(seed=SEEDS)
def test_logmap_and_dist_are_invariant(seed):
    r, s, b = jax.vmap(SO3.random_uniform)(_keys(seed, 3))
    np.testing.assert_allclose(
        SO3.logmap(b @ r, b @ s), b @ SO3.logmap(r, s), atol=1e-13
    )
    np.testing.assert_allclose(SO3.dist(r @ b, s @ b), SO3.dist(r, s), atol=1e-13)
    np.testing.assert_allclose(SO3.dist(r, s), SO3.dist(s, r), atol=1e-14)


def test_many_float32_steps_stay_on_the_group():
    # 10_000 chained exponential steps: each re-orthonormalises (one Newton-Schulz
    # step), so the rounding does not accumulate
    x0 = SO3.random_uniform(jax.random.key(0), jnp.float32)
    u = 0.01 * SO3.proju(x0, jax.random.normal(jax.random.key(1), (3, 3), jnp.float32))

    def step(x, _):
        return SO3.expmap(x, x @ (x0.T @ u)), None

    x, _ = jax.jit(lambda x: jax.lax.scan(step, x, length=10_000))(x0)
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(x.T @ x, np.eye(3), atol=1e-6)


def test_the_geodesic_path_is_a_turn_at_a_constant_rate():
    path = paths.GeodesicPath(schedules.cond_ot(), SO3)
    b = SO3.random_uniform(jax.random.key(2))
    for theta in (0.4, np.pi - 1e-6):
        for t in (0.0, 0.3, 1.0):
            ps = path.sample(None, b, b @ _about(1, theta), t)
            np.testing.assert_allclose(ps.xt, b @ _about(1, t * theta), atol=1e-13)
            np.testing.assert_allclose(ps.ut, ps.xt @ _hat([0, theta, 0]), atol=1e-13)


def test_float32_in_float32_out():
    with jax.enable_x64(False):
        x = SO3.random_uniform(jax.random.key(0), jnp.float32)
        u = SO3.proju(x, jax.random.normal(jax.random.key(1), (3, 3), jnp.float32))
        y = SO3.expmap(x, u)
        outs = [y, SO3.logmap(x, y), SO3.dist(x, y), SO3.inner(x, u, u), SO3.projx(y)]
        outs += [SO3.origin(jnp.float32), SO3.uniform_log_prob(x)]
        outs += [manifolds.matrix_to_quaternion(y), manifolds.matrix_to_axis_angle(y)]
        q = jnp.ones(4, jnp.float32)
        outs += [
            manifolds.quaternion_to_matrix(q),
            manifolds.axis_angle_to_matrix(q[1:]),
        ]
        for a in outs:
            assert a.dtype == jnp.float32
            assert _finite(a)


def test_batches_by_vmap_under_jit_agree_with_one_at_a_time():
    x = jax.vmap(SO3.random_uniform)(_keys(3, 4))
    y = jax.vmap(SO3.random_uniform)(_keys(4, 4))
    batched = jax.jit(jax.vmap(SO3.logmap))(x, y)
    for i in range(4):
        np.testing.assert_allclose(batched[i], SO3.logmap(x[i], y[i]), atol=1e-14)


def test_bad_shapes_name_the_argument():
    with pytest.raises(
        ValueError, match=r"u must be a tangent vector, of shape \(3, 3\)"
    ):
        SO3.expmap(EYE, jnp.zeros(3))
    with pytest.raises(ValueError, match="batch with jax.vmap"):
        SO3.logmap(jnp.stack([EYE, EYE]), EYE)
    with pytest.raises(ValueError, match=r"q must be a quaternion \(w, x, y, z\)"):
        manifolds.quaternion_to_matrix(jnp.ones(3))
    with pytest.raises(ValueError, match="omega must be a rotation vector"):
        manifolds.axis_angle_to_matrix(jnp.ones(4))
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        SO3.random_uniform(0)


def test_so3_is_registered_and_in_the_shared_suite():
    assert "so3" in registry.names("manifold")
    assert registry.build("manifold", "so3") == SO3
    assert SO3.dim == 3
    assert SO3.shape == (3, 3)
    assert isinstance(SO3, manifolds.AbstractCompactManifold)
    assert any(isinstance(m, manifolds.SO3) for m in helpers.ALL_MANIFOLDS)
    np.testing.assert_array_equal(SO3.origin(), np.eye(3))
