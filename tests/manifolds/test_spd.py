"""SPD matrices: closed forms for commuting matrices, invariances, round trips far
beyond the shared tests' distances, the matrix functions against
jax.scipy.linalg.expm, numpy and central differences, and finite (and correct)
derivatives where eigenvalues repeat (P = Q, P = I, diag(2, 2, 5)).

References are written independently of flowlab: numpy's eigh (LAPACK, float64) for
matrix functions and symmetric square roots, jax.scipy.linalg.expm (Pade, whose
derivatives of every order are finite everywhere) for exp and its derivatives.
Tolerances: ~1e-12 relative for float64 identities on matrices with condition
numbers below ~e^4 (a few ulps times the condition number), 1e-8 for central
differences with h = 1e-5 (error h^2 times a third derivative of order 1), and
float32 checks at 1e-4 relative (~100 ulps: logm of a matrix with condition ~e^4).
"""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.scipy.linalg import expm

from flowlab import manifolds, paths, registry, schedules
from flowlab.manifolds import _symmetric as sf

SEEDS = st.integers(0, 2**31 - 1)
CLASSES = [manifolds.SPD, manifolds.SPDLogEuclidean]
both = pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
REPEATED = [jnp.eye(3), jnp.diag(jnp.array([2.0, 2.0, 5.0]))]
"""Points with repeated eigenvalues, where eigh's own derivative is NaN."""


def _keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)


def _sym_normal(key, n, scale=1.0):
    a = scale * jax.random.normal(key, (n, n))
    return (a + a.T) / 2


def _spd(key, n, scale=0.5):
    """exp of a random symmetric matrix, by jax.scipy's Pade expm (not flowlab)."""
    return expm(_sym_normal(key, n, scale))


def _np_funm(a, f):
    lam, v = np.linalg.eigh(np.asarray(a, np.float64))
    return (v * f(lam)) @ v.T


def _np_logm(a):
    return _np_funm(a, np.log)


def _np_ai_log(p, q):
    """P^{1/2} log(P^{-1/2} Q P^{-1/2}) P^{1/2} with the symmetric square root."""
    s, si = _np_funm(p, np.sqrt), _np_funm(p, lambda x: 1 / np.sqrt(x))
    return s @ _np_logm(si @ np.asarray(q) @ si) @ s


def _close(a, b, rtol):
    """Matrices equal within rtol of the larger's max entry."""
    scale = max(float(jnp.max(jnp.abs(a))), float(jnp.max(jnp.abs(b))), 1e-300)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# ---------------------------------------------------------------------------------
# Closed forms and invariances
# ---------------------------------------------------------------------------------


@both
@given(seed=SEEDS)
def test_commuting_matrices_have_the_closed_forms(cls, seed):
    k0, k1, k2 = _keys(seed, 3)
    p, q = jnp.exp(jax.random.normal(k0, (3,))), jnp.exp(jax.random.normal(k1, (3,)))
    m = cls(3)
    ratio = jnp.log(q / p)
    np.testing.assert_allclose(m.dist(jnp.diag(p), jnp.diag(q)), jnp.linalg.norm(ratio))
    _close(m.logmap(jnp.diag(p), jnp.diag(q)), jnp.diag(p * ratio), 1e-13)
    u = jax.random.normal(k2, (3,))
    _close(m.expmap(jnp.diag(p), jnp.diag(u)), jnp.diag(p * jnp.exp(u / p)), 1e-13)


@both
def test_commuting_matrices_with_repeated_eigenvalues(cls):
    m = cls(3)
    p, q = jnp.array([2.0, 2.0, 5.0]), jnp.array([3.0, 3.0, 1.0])
    expected = np.sqrt(2 * np.log(1.5) ** 2 + np.log(0.2) ** 2)
    np.testing.assert_allclose(m.dist(jnp.diag(p), jnp.diag(q)), expected, rtol=1e-14)
    np.testing.assert_allclose(
        m.dist(jnp.eye(3), 4 * jnp.eye(3)), np.sqrt(3) * np.log(4)
    )
    _close(m.logmap(jnp.diag(p), jnp.diag(q)), jnp.diag(p * jnp.log(q / p)), 1e-14)


@given(seed=SEEDS)
def test_affine_invariance(seed):
    k = _keys(seed, 6)
    m = manifolds.SPD(3)
    p, q = _spd(k[0], 3), _spd(k[1], 3)
    rot, _ = jnp.linalg.qr(jax.random.normal(k[2], (3, 3)))
    a = rot @ jnp.diag(jnp.exp(0.5 * jax.random.normal(k[3], (3,))))  # cond < ~e^3
    move = lambda s: a @ s @ a.T  # noqa: E731
    np.testing.assert_allclose(m.dist(move(p), move(q)), m.dist(p, q), rtol=1e-12)
    _close(m.logmap(move(p), move(q)), move(m.logmap(p, q)), 1e-12)
    u, v = _sym_normal(k[4], 3), _sym_normal(k[5], 3)
    np.testing.assert_allclose(
        m.inner(move(p), move(u), move(v)), m.inner(p, u, v), rtol=1e-11
    )
    _close(m.expmap(move(p), move(u)), move(m.expmap(p, u)), 1e-12)


@given(seed=SEEDS)
def test_log_euclidean_is_invariant_under_similarities_only(seed):
    k = _keys(seed, 4)
    m = manifolds.SPDLogEuclidean(3)
    p, q = _spd(k[0], 3), _spd(k[1], 3)
    rot, _ = jnp.linalg.qr(jax.random.normal(k[2], (3, 3)))
    move = lambda s: 2.5 * rot @ s @ rot.T  # noqa: E731
    np.testing.assert_allclose(m.dist(move(p), move(q)), m.dist(p, q), rtol=1e-12)
    np.testing.assert_allclose(  # the definition, with numpy's logm
        m.dist(p, q), np.linalg.norm(_np_logm(q) - _np_logm(p)), rtol=1e-12
    )
    # not a congruence invariant: a shear changes the distance
    shear = jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    d = m.dist(shear @ p @ shear.T, shear @ q @ shear.T)
    assert abs(float(d - m.dist(p, q))) > 1e-3


@given(seed=SEEDS)
def test_affine_invariant_maps_match_the_symmetric_square_root(seed):
    # flowlab whitens with the Cholesky factor; the definition uses P^{1/2}
    k = _keys(seed, 3)
    m = manifolds.SPD(3)
    p, q = _spd(k[0], 3, 1.0), _spd(k[1], 3, 1.0)
    _close(m.logmap(p, q), _np_ai_log(p, q), 1e-11)
    s, si = _np_funm(p, np.sqrt), _np_funm(p, lambda x: 1 / np.sqrt(x))
    u = _sym_normal(k[2], 3)
    _close(m.expmap(p, u), s @ _np_funm(si @ np.asarray(u) @ si, np.exp) @ s, 1e-11)
    np.testing.assert_allclose(
        m.inner(p, u, u), np.trace(np.linalg.solve(p, u) @ np.linalg.solve(p, u))
    )


# ---------------------------------------------------------------------------------
# Round trips and geodesics (distances well past the shared tests' pi)
# ---------------------------------------------------------------------------------


@both
@given(seed=SEEDS)
def test_exp_and_log_round_trip_at_large_distances(cls, seed):
    k = _keys(seed, 3)
    m = cls(3)
    x, y = _spd(k[0], 3, 1.5), _spd(k[1], 3, 1.5)  # distances ~5-10
    u = m.logmap(x, y)
    _close(m.expmap(x, u), y, 1e-10)
    np.testing.assert_allclose(m.norm(x, u), m.dist(x, y), rtol=1e-10)
    # a step of length 6 (twice the shared tests' bound of pi); much longer ones
    # give exp(W) a condition number beyond float64 (e^{2 |W|})
    w = m.proju(x, jax.random.normal(k[2], (3, 3)))
    w = 6 * w / m.norm(x, w)
    _close(m.logmap(x, m.expmap(x, w)), w, 1e-9)
    np.testing.assert_allclose(m.dist(x, m.expmap(x, w)), m.norm(x, w), rtol=1e-10)


@given(seed=SEEDS)
def test_log_euclidean_maps_are_their_definitions(seed):
    k = _keys(seed, 3)
    m = manifolds.SPDLogEuclidean(3)
    p, q = _spd(k[0], 3), _spd(k[1], 3)
    log_p = jnp.asarray(_np_logm(p))
    # D exp at log P, as a 9 x 9 Jacobian of jax.scipy's expm; D log_P its inverse
    jac = jax.jacfwd(expm)(log_p).reshape(9, 9)
    expected = (jac @ jnp.asarray(_np_logm(q) - _np_logm(p)).ravel()).reshape(3, 3)
    _close(m.logmap(p, q), expected, 1e-11)
    u = _sym_normal(k[2], 3)
    d_log = jnp.linalg.solve(jac, u.ravel()).reshape(3, 3)
    _close(m.expmap(p, u), expm(log_p + d_log), 1e-11)
    np.testing.assert_allclose(m.inner(p, u, u), jnp.sum(d_log**2), rtol=1e-11)


@both
@given(seed=SEEDS, t=st.floats(0.0, 1.0))
def test_geodesics_have_their_closed_forms(cls, seed, t):
    k = _keys(seed, 2)
    m = cls(3)
    p, q = _spd(k[0], 3, 1.0), _spd(k[1], 3, 1.0)
    ps = paths.GeodesicPath(schedules.cond_ot(), m).sample(None, p, q, t)
    if cls is manifolds.SPD:  # P^{1/2} (P^{-1/2} Q P^{-1/2})^t P^{1/2}
        s, si = _np_funm(p, np.sqrt), _np_funm(p, lambda x: 1 / np.sqrt(x))
        expected = s @ _np_funm(si @ np.asarray(q) @ si, lambda x: x**t) @ s
    else:  # exp((1 - t) log P + t log Q)
        expected = _np_funm((1 - t) * _np_logm(p) + t * _np_logm(q), np.exp)
    _close(ps.xt, expected, 1e-11)
    np.testing.assert_allclose(m.norm(ps.xt, ps.ut), m.dist(p, q), rtol=1e-10)


@both
def test_long_contracting_steps_stay_positive_definite(cls):
    m = cls(3)
    p = _spd(jax.random.key(0), 3)
    for c in (-40.0, -5.0, -1.0, 0.5, 30.0):  # W = c I: the step to e^c P
        y = m.expmap(p, c * p)
        _close(y, np.exp(c) * p, 1e-12)
        assert bool(jnp.all(jnp.isfinite(jnp.linalg.cholesky(y))))
        np.testing.assert_allclose(m.dist(p, y), np.sqrt(3) * abs(c), rtol=1e-12)


@both
@pytest.mark.parametrize("size", [1 - 1e-9, 1 + 1e-9, 0.5 - 1e-9, 0.5 + 1e-9])
def test_both_sides_of_the_small_step_switches_agree(cls, size):
    # a step is P + increment for ||W||_F <= 1, affine-invariant log uses log1p for
    # ||L^-1 (Q - P) L^-T||_F <= 1/2: both forms must give the same matrices
    k = _keys(1, 2)
    m = cls(3)
    p = _spd(k[0], 3)
    e = _sym_normal(k[1], 3)
    if cls is manifolds.SPD:
        s, si = _np_funm(p, np.sqrt), _np_funm(p, lambda x: 1 / np.sqrt(x))
        w = si @ np.asarray(e) @ si
        u = size * e / np.linalg.norm(w)  # whitened norm `size`
        expected = s @ _np_funm(size * w / np.linalg.norm(w), np.exp) @ s
        _close(m.logmap(p, p + u), _np_ai_log(p, p + u), 1e-12)
    else:
        d_log = m.proju(p, e)  # a direction of log P, pushed forward by D exp
        d_log = size * d_log / jnp.linalg.norm(d_log)
        u = m.logmap(p, jnp.asarray(_np_funm(_np_logm(p) + d_log, np.exp)))
        expected = _np_funm(_np_logm(p) + d_log, np.exp)
    _close(m.expmap(p, u), expected, 1e-12)


# ---------------------------------------------------------------------------------
# Matrix functions of symmetric matrices, against references
# ---------------------------------------------------------------------------------


def _exp(a):
    return sf.sym_funm(a, jnp.exp, sf.dd_exp)


def _log(a):
    return sf.sym_funm(a, jnp.log, sf.dd_log)


@given(seed=SEEDS)
def test_divided_differences_are_accurate_near_and_far(seed):
    x = jax.random.uniform(jax.random.key(seed), (6,), minval=0.1, maxval=3.0)
    for delta in (0.0, 1e-12, 1e-4, 1e-3, 1e-2, 2e-2, 0.5):
        y = x * (1 + delta) + delta
        cases = [(sf.dd_exp, np.exp, np.exp), (sf.dd_log, np.log, lambda s: 1 / s)]
        cases.append((sf.dd_log1p, np.log1p, lambda s: 1 / (1 + s)))
        for dd, f, df in cases:
            xs, ys = np.asarray(x, np.longdouble), np.asarray(y, np.longdouble)
            with np.errstate(invalid="ignore", divide="ignore"):
                chord = (f(xs) - f(ys)) / (xs - ys)  # in extended precision
            mean = df((xs + ys) / 2)  # the chord to O(delta^2)
            ref = np.where(np.abs(xs - ys) > 1e-9, chord, mean)
            np.testing.assert_allclose(dd(x, y), ref.astype(np.float64), rtol=1e-13)
    # second divided differences: f''/2 at coinciding points
    z = jnp.array([0.3, 1.0, 2.0])
    np.testing.assert_allclose(sf._dd2(sf.dd_exp, z, z, z), jnp.exp(z) / 2, rtol=1e-9)
    np.testing.assert_allclose(sf._dd2(sf.dd_log, z, z, z), -1 / (2 * z**2), rtol=1e-9)


@pytest.mark.parametrize(
    "a",
    [jnp.zeros((3, 3)), jnp.eye(3), jnp.diag(jnp.array([1.0, 1.0, 2.0])), None],
    ids=["zero", "identity", "repeated", "random"],
)
def test_exp_and_its_derivatives_match_jax_scipy_expm(a):
    k = _keys(5, 3)
    a = _sym_normal(k[0], 3) if a is None else a
    e, c = _sym_normal(k[1], 3), jax.random.normal(k[2], (3, 3))
    _close(_exp(a), expm(a), 1e-14)
    _close(jax.jvp(_exp, (a,), (e,))[1], jax.jvp(expm, (a,), (e,))[1], 1e-13)
    # second derivatives, both forward over reverse (jax.hessian) and forward twice
    hess = jax.hessian(lambda s: jnp.sum(c * _exp(s)))(a)
    ref = jax.hessian(lambda s: jnp.sum(c * expm(sf.sym(s))))(a)
    _close(hess, ref, 1e-12)
    second = jax.jvp(lambda s: jax.jvp(_exp, (s,), (e,))[1], (a,), (e,))[1]
    ref2 = jax.jvp(lambda s: jax.jvp(expm, (s,), (e,))[1], (a,), (e,))[1]
    _close(second, ref2, 1e-12)


@pytest.mark.parametrize("p", [*REPEATED, None], ids=["identity", "repeated", "random"])
def test_log_and_its_derivatives_match_central_differences(p):
    k = _keys(6, 3)
    p = _spd(k[0], 3) if p is None else p
    e, h = _sym_normal(k[1], 3), _sym_normal(k[2], 3)
    _close(_log(p), _np_logm(p), 1e-14)
    _close(_exp(_log(p)), p, 1e-14)
    step = 1e-5
    dlog = jax.jvp(_log, (p,), (e,))[1]
    fd = (_log(p + step * e) - _log(p - step * e)) / (2 * step)
    np.testing.assert_allclose(dlog, fd, atol=1e-8)
    # D exp at log P inverts D log at P (jax.scipy's expm as the reference)
    _close(jax.jvp(expm, (_log(p),), (dlog,))[1], e, 1e-12)

    def dlog_fn(s):
        return jax.jvp(_log, (s,), (e,))[1]

    second = jax.jvp(dlog_fn, (p,), (h,))[1]
    fd2 = (dlog_fn(p + step * h) - dlog_fn(p - step * h)) / (2 * step)
    np.testing.assert_allclose(second, fd2, atol=1e-8)
    hess = jax.hessian(lambda s: jnp.sum(e * _log(s)))(p)
    np.testing.assert_allclose(jnp.einsum("ijkl,kl->ij", hess, h), sf.sym(second))


def test_differences_of_matrix_functions_keep_their_digits():
    k = _keys(7, 2)
    a, e = _sym_normal(k[0], 3), _sym_normal(k[1], 3)
    np.testing.assert_array_equal(sf.sym_fdiff(a, a, jnp.exp, sf.dd_exp), 0.0)
    b = a + 2 * e  # far apart: the plain difference
    _close(sf.sym_fdiff(a, b, jnp.exp, sf.dd_exp), expm(b) - expm(a), 1e-13)
    p = _spd(k[0], 3)
    for t in (1e-4, 1e-8, 1e-12):  # close: the derivative times B - A, to O(t)
        b = a + t * e  # B - A is exact in floating point (not t * e)
        diff = sf.sym_fdiff(a, b, jnp.exp, sf.dd_exp)
        _close(diff, jax.jvp(expm, (a,), (b - a,))[1], 5 * t + 1e-13)
        b = p + t * e
        diff = sf.sym_fdiff(p, b, jnp.log, sf.dd_log)
        _close(diff, jax.jvp(_log, (p,), (b - p,))[1], 5 * t + 1e-13)
    # and the derivative of the difference is the difference of derivatives
    b = p + 0.3 * e
    got = jax.jvp(lambda s, t: sf.sym_fdiff(s, t, jnp.log, sf.dd_log), (p, b), (e, e))
    ref = jax.jvp(_log, (b,), (e,))[1] - jax.jvp(_log, (p,), (e,))[1]
    _close(got[1], ref, 1e-13)


# ---------------------------------------------------------------------------------
# Derivatives at repeated eigenvalues (P = Q = I, diag(2, 2, 5))
# ---------------------------------------------------------------------------------


@both
@pytest.mark.parametrize("p", REPEATED, ids=["identity", "repeated"])
def test_finite_derivatives_where_eigenvalues_repeat(cls, p):
    m = cls(3)
    zero = jnp.zeros((3, 3))
    for q in (p, jnp.eye(3), jnp.diag(jnp.array([3.0, 3.0, 1.0]))):
        for fn in (m.logmap, m.dist):
            for arg in (0, 1):
                jac = jax.jacfwd(fn, argnums=arg)(p, q)
                grad = jax.grad(lambda a, b, fn=fn: jnp.sum(fn(a, b)), argnums=arg)(
                    p, q
                )
                assert bool(jnp.all(jnp.isfinite(jac)) & jnp.all(jnp.isfinite(grad)))
    if cls is manifolds.SPD:  # log-Euclidean: a third derivative of log, not finite
        g = jax.hessian(lambda x: jnp.sum(m.expmap(x, p)))(p)
        assert bool(jnp.all(jnp.isfinite(g)))
    for g in (
        jax.jacfwd(m.expmap, argnums=(0, 1))(p, zero),
        jax.grad(lambda u: m.norm(p, u))(zero),
        jax.grad(lambda x: m.inner(x, p, p))(p),
        jax.hessian(lambda u: jnp.sum(m.expmap(p, u)))(zero),
        jax.hessian(lambda q: m.dist(p, q) ** 2)(p),
        jax.jacfwd(m.projx)(p),
    ):
        assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(g))


@both
@pytest.mark.parametrize("p", REPEATED, ids=["identity", "repeated"])
def test_derivatives_where_eigenvalues_repeat_are_correct(cls, p):
    m = cls(3)
    k = _keys(8, 2)
    e, u = _sym_normal(k[0], 3), _sym_normal(k[1], 3)
    # the derivative of expmap at 0 is the identity; of logmap at y = x, proju
    _close(jax.jvp(lambda w: m.expmap(p, w), (jnp.zeros((3, 3)),), (u,))[1], u, 1e-14)
    jac = jax.jacfwd(lambda y: m.logmap(p, y))(p).reshape(9, 9)
    proj = jax.vmap(lambda b: m.proju(p, b.reshape(3, 3)).ravel(), out_axes=1)
    np.testing.assert_allclose(jac, proj(jnp.eye(9)), atol=1e-13)
    # the Hessian of |log_P Q|^2 at Q = P is twice the metric (forward over
    # reverse); not of dist ** 2 or norm ** 2, whose safe_sqrt has a zero gradient at
    # 0 by design
    hess = jax.hessian(lambda q: m.inner(p, m.logmap(p, q), m.logmap(p, q)))(p)
    np.testing.assert_allclose(
        jnp.einsum("ij,ijkl,kl->", e, hess, e), 2 * m.inner(p, e, e), rtol=1e-12
    )
    # gradients of d^2 away from P, at a point that also has a repeated eigenvalue
    q = jnp.diag(jnp.array([3.0, 3.0, 1.0]))
    step = 1e-5
    for fn, z in ((lambda y: m.dist(p, y) ** 2, q), (lambda x: m.dist(x, q) ** 2, p)):
        grad = jax.grad(fn)(z)
        fd = (fn(z + step * e) - fn(z - step * e)) / (2 * step)
        np.testing.assert_allclose(jnp.sum(grad * e), fd, atol=1e-8)


# ---------------------------------------------------------------------------------
# projx, is_point, dtypes, registry, errors
# ---------------------------------------------------------------------------------


@both
@given(seed=SEEDS)
def test_projx_lifts_eigenvalues_to_the_floor_and_keeps_points(cls, seed):
    m = cls(3)
    a = 4 * jax.random.normal(jax.random.key(seed), (3, 3))
    x = m.projx(a)
    floor = np.sqrt(np.finfo(np.float64).eps) * np.linalg.norm((a + a.T) / 2)
    lam = np.linalg.eigvalsh(np.asarray(x))
    lam_a = np.linalg.eigvalsh(np.asarray((a + a.T) / 2))
    # eigenvalues of a matrix of norm ~10 are accurate to ~n eps |a| ~ 1e-14
    np.testing.assert_allclose(lam, np.maximum(lam_a, floor), rtol=1e-9, atol=1e-13)
    p = _spd(jax.random.key(seed), 3)
    p = (p + p.T) / 2
    np.testing.assert_array_equal(m.projx(p), p)  # unchanged, not re-rounded
    eps = np.finfo(np.float64).eps
    _close(m.projx(jnp.zeros((3, 3))), np.sqrt(eps) * jnp.eye(3), 1e-15)


@both
def test_is_point_is_relative_to_the_scale(cls):
    m = cls(2)
    ill_conditioned = jnp.diag(jnp.array([1e-12, 1e12]))
    for x in (jnp.eye(2), 1e30 * jnp.eye(2), 1e-30 * jnp.eye(2), ill_conditioned):
        assert m.is_point(x)
    not_points = [
        jnp.array([[1.0, 0.5], [0.0, 1.0]]),  # not symmetric
        jnp.diag(jnp.array([1.0, -0.1])),  # indefinite
        jnp.diag(jnp.array([1e10, -1e6])),  # indefinite at any scale
        jnp.eye(3),  # the wrong shape
        jnp.full((2, 2), jnp.nan),
    ]
    assert not any(bool(m.is_point(x)) for x in not_points)


@both
def test_float32_in_float32_out_with_small_steps_kept_accurate(cls):
    m = cls(3)
    with jax.enable_x64(False):
        k = _keys(9, 3)
        x, y = _spd(k[0], 3).astype(jnp.float32), _spd(k[1], 3).astype(jnp.float32)
        u = m.proju(x, jax.random.normal(k[2], (3, 3), jnp.float32))
        for a in (m.expmap(x, u), m.logmap(x, y), m.dist(x, y), m.inner(x, u, u)):
            assert a.dtype == jnp.float32
            assert bool(jnp.all(jnp.isfinite(a)))
        grad = jax.grad(lambda z: m.dist(x, z) ** 2)(y)
        assert grad.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(grad)))
        _close(m.expmap(x, m.logmap(x, y)), y, 1e-4)
        # small steps keep their relative precision (the P + increment forms):
        # expmap lands within an ulp of x + tiny, logmap returns z - x to 1e-3
        tiny = 1e-6 * u
        ulp = float(np.spacing(np.float32(jnp.abs(x).max())))
        np.testing.assert_allclose(m.expmap(x, tiny), x + tiny, rtol=0, atol=ulp)
        z = x + tiny
        _close(m.logmap(x, z), z - x, 1e-3)
        np.testing.assert_allclose(m.dist(x, z), m.norm(x, z - x), rtol=1e-3)


@both
def test_batches_by_vmap_and_jit_agrees_with_eager(cls):
    m = cls(2)
    k = _keys(10, 2)
    x = jax.vmap(lambda key: _spd(key, 2))(jax.random.split(k[0], 8))
    y = jax.vmap(lambda key: _spd(key, 2))(jax.random.split(k[1], 8))
    eager = jax.vmap(m.logmap)(x, y)
    jitted = jax.jit(jax.vmap(m.logmap))(x, y)
    assert eager.shape == (8, 2, 2)
    _close(jitted, eager, 1e-13)
    _close(jax.vmap(m.expmap)(x, eager), y, 1e-11)


def test_registry_dimensions_and_errors():
    assert registry.build("manifold", "spd", n=3) == manifolds.SPD(3)
    assert registry.build("manifold", "spd_log_euclidean", n=2) == (
        manifolds.SPDLogEuclidean(2)
    )
    assert manifolds.SPD(3).dim == 6
    assert manifolds.SPD(3).shape == (3, 3)
    for bad in (0, -1, 2.5, True):
        for cls in CLASSES:
            with pytest.raises(ValueError, match="n must be a positive int"):
                cls(bad)
    m = manifolds.SPD(2)
    shape_error = r"u must be a matrix of SPD\(n=2\), of shape \(2, 2\)"
    with pytest.raises(ValueError, match=shape_error):
        m.expmap(jnp.eye(2), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"y must be a matrix of .*, of shape"):
        m.logmap(jnp.eye(2), jnp.eye(3))


def test_shared_manifold_points_are_well_conditioned():
    # helpers.manifold_point draws exp(S), S with N(0, 1/4) entries, for SPD
    for m in (manifolds.SPD(3), manifolds.SPDLogEuclidean(2)):
        x = jax.vmap(lambda key, m=m: helpers.manifold_point(m, key))(_keys(11, 64))
        cond = jnp.linalg.cond(x)
        assert bool(jnp.all(jax.vmap(m.is_point)(x)))
        assert float(cond.max()) < 200
