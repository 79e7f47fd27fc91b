"""The wrapped normal: the volume change of `expmap` against its closed forms, the
density against the Gaussian on flat space, its normalisation by Monte Carlo on S^2
and SO(3), samples on the manifold, and finite gradients in `loc` and `scale`."""

import functools

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from flowlab import manifolds


def _sphere_j(d):
    return lambda r: (d - 1) * np.log(np.sin(r) / r)


def _hyperbolic_j(d):
    return lambda r: (d - 1) * np.log(np.sinh(r) / r)


CLOSED_FORMS = [
    (manifolds.Euclidean(3), lambda r: 0.0 * r),
    (manifolds.Sphere(2), _sphere_j(2)),
    (manifolds.Sphere(3), _sphere_j(3)),
    (manifolds.Hyperbolic(2), _hyperbolic_j(2)),
    (manifolds.FlatTorus(2), lambda r: 0.0 * r),
    (manifolds.SO3(), lambda r: 2 * np.log(np.sin(r / 2) / (r / 2))),
]
CLOSED_FORM_IDS = [repr(m) for m, _ in CLOSED_FORMS]
RADII = [1e-3, 0.3, 1.0, 2.0, 2.9]  # below pi, the injectivity radius of S^d, SO(3)


@pytest.mark.parametrize(("m", "log_j"), CLOSED_FORMS, ids=CLOSED_FORM_IDS)
def test_log_jacobian_matches_closed_form(m, log_j):
    # At a random base point (not only the origin), in random directions of each
    # length r. float64 throughout: the closed forms agree to rounding, 1e-10.
    k0, k1 = jax.random.split(jax.random.key(0))
    x = helpers.manifold_point(m, k0)
    r = jnp.asarray(RADII)

    @jax.jit
    def log_j_fn(k, r):
        u = m.proju(x, jax.random.normal(k, m.shape))
        return manifolds.log_expmap_jacobian(m, x, r * u / m.norm(x, u))

    got = jax.vmap(log_j_fn)(jax.random.split(k1, len(RADII)), r)
    np.testing.assert_allclose(got, log_j(np.asarray(RADII)), rtol=0, atol=1e-10)


@pytest.mark.parametrize("m", helpers.ALL_MANIFOLDS, ids=helpers.MANIFOLD_IDS)
def test_tangent_basis_is_orthonormal(m):
    x = helpers.manifold_point(m, jax.random.key(2))
    b = manifolds.tangent_basis(m, x)
    assert b.shape == (m.dim, *m.shape)
    gram = jax.vmap(lambda p: jax.vmap(lambda q: m.inner(x, p, q))(b))(b)
    np.testing.assert_allclose(gram, np.eye(m.dim), atol=1e-10)
    assert all(m.is_tangent(x, v, atol=1e-10) for v in b)


@pytest.mark.parametrize("m", helpers.ALL_MANIFOLDS, ids=helpers.MANIFOLD_IDS)
def test_samples_lie_on_the_manifold(m):
    k0, k1 = jax.random.split(jax.random.key(3))
    loc = helpers.manifold_point(m, k0)
    x = manifolds.WrappedNormal(m, loc, 0.5).sample(k1, 16)
    assert x.shape == (16, *m.shape)
    assert bool(jnp.all(jax.vmap(lambda p: m.is_point(p, atol=1e-8))(x)))


def test_euclidean_log_prob_is_the_gaussian():
    m = manifolds.Euclidean(4)
    loc, scale = jnp.array([0.5, -1.0, 2.0, 0.0]), 0.7
    wn = manifolds.WrappedNormal(m, loc, scale)
    x = wn.sample(jax.random.key(4), 64)
    want = norm.logpdf(x, loc[None, :], scale).sum(-1)
    np.testing.assert_allclose(jax.vmap(wn.log_prob)(x), want, atol=1e-12)
    # the samples' moments, a loose check that sample and log_prob agree (8 SE)
    big = wn.sample(jax.random.key(5), 20_000)
    np.testing.assert_allclose(big.mean(0), loc, atol=8 * scale / np.sqrt(20_000))


@pytest.mark.parametrize(
    ("m", "scale"),
    [(manifolds.Sphere(2), 0.5), (manifolds.SO3(), 0.4)],
    ids=["S2", "SO3"],
)
def test_density_integrates_to_one(m, scale):
    # Monte Carlo with uniform points: vol(M) * mean(p(x)) estimates the integral of
    # p, which is 1 minus the mass beyond the cut locus (P(r > pi) < 1e-8 at these
    # scales). Fixed key; within 3 standard errors (~0.4% on S^2, ~1.2% on SO(3)).
    n = 200_000
    k0, k1 = jax.random.split(jax.random.key(6))
    loc = m.random_uniform(k0)
    wn = manifolds.WrappedNormal(m, loc, scale)
    x = jax.vmap(m.random_uniform)(jax.random.split(k1, n))
    w = jnp.exp(jax.jit(jax.vmap(wn.log_prob))(x) + m.log_volume())
    mean, se = float(w.mean()), float(w.std() / np.sqrt(n))
    assert abs(mean - 1) < 3 * se, (mean, se)


@pytest.mark.parametrize(
    "m",
    [manifolds.Sphere(2), manifolds.Hyperbolic(2), manifolds.SO3(), manifolds.SPD(2)],
    ids=repr,
)
def test_log_prob_is_differentiable_in_loc_and_scale(m):
    k0, k1, k2 = jax.random.split(jax.random.key(7), 3)
    loc = helpers.manifold_point(m, k0)
    near = manifolds.WrappedNormal(m, loc, 0.5).sample(k1, 1)[0]

    @jax.jit
    @functools.partial(jax.grad, argnums=(0, 1))
    def grad_fn(loc, scale, x):
        return manifolds.WrappedNormal(m, loc, scale).log_prob(x)

    for x in (near, loc):  # a point of the distribution, and its centre (u = 0)
        g_loc, g_scale = grad_fn(loc, jnp.asarray(0.5), x)
        assert bool(jnp.all(jnp.isfinite(g_loc)))
        assert bool(jnp.isfinite(g_scale))
    # d/d scale of the log-density at the centre is -dim / scale, exactly
    np.testing.assert_allclose(g_scale, -m.dim / 0.5, rtol=1e-10)
    # along a geodesic from loc the gradient is the central difference (step 1e-5:
    # truncation ~1e-10, rounding ~1e-11, relative to derivatives of order 1)
    g_loc, _ = grad_fn(loc, jnp.asarray(0.5), near)
    d = m.proju(loc, jax.random.normal(k2, m.shape))

    def f(loc):
        return manifolds.WrappedNormal(m, loc, 0.5).log_prob(near)

    eps = 1e-5
    fd = (f(m.expmap(loc, eps * d)) - f(m.expmap(loc, -eps * d))) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(g_loc * d), fd, rtol=1e-6, atol=1e-8)


def test_bad_arguments_are_named():
    s2 = manifolds.Sphere(2)
    with pytest.raises(ValueError, match="scale must be a positive"):
        manifolds.WrappedNormal(s2, scale=0.0)
    with pytest.raises(ValueError, match="loc must be a point"):
        manifolds.WrappedNormal(s2, jnp.zeros(2))
    with pytest.raises(TypeError, match="manifold must be"):
        manifolds.WrappedNormal("sphere")
