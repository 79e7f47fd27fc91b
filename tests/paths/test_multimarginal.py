"""Multimarginal interpolants: vertices, the simplex, targets, edge transport, errors.

Gaussian ground truth. For independent marginals x_k ~ N(mu_k, s_k^2 I), z ~ N(0, I)
and a simplex point alpha, x(alpha) = sum_k alpha_k x_k + gamma(alpha) z is Gaussian
with mean m = sum_k alpha_k mu_k and variance S^2 = sum_k alpha_k^2 s_k^2 + gamma^2,
and Cov(x_k, x) = alpha_k s_k^2, Cov(z, x) = gamma, so

    g_k(alpha, x) = E[x_k | x(alpha) = x] = mu_k + alpha_k s_k^2 / S^2 (x - m),
    eta(alpha, x) = E[z | x(alpha) = x]   = gamma / S^2 (x - m).

On an edge alpha(t) = (1 - t) e_i + t e_j the transport field is
m' + S'/S (x - m), whose flow is x -> m_t + S_t / S_0 (x - m_0): it maps
N(mu_i, s_i^2) onto N(mu_j, s_j^2) by x -> mu_j + s_j / s_i (x - mu_i).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import flowlab
from flowlab import paths

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: the paths and losses per number of marginals and batch shape;
# split over two workers, each worker compiled them.
pytestmark = pytest.mark.xdist_group("multimarginal")

KEY = jax.random.key(0)

# Tolerances.
# float64 identities (sums of a few products of O(1) values).
F64 = 1e-10
# dopri5 at rtol = atol = 1e-9 on a linear field: the global error measured is
# ~1e-8; 1e-6 leaves two orders of margin.
ODE_TOL = 1e-6
# Statistical checks: Z standard errors from the same samples (fixed keys).
Z = 5.0

MUS = jnp.array([[0.0, 0.0], [3.0, -1.0], [-2.0, 2.0]])
STDS = jnp.array([1.0, 0.5, 0.8])


def _smooth_gamma(alpha):
    """gamma(alpha) = 0.6 (1 - |alpha|^2): zero exactly at the vertices, smooth."""
    return 0.6 * (1 - jnp.sum(alpha**2))


def exact_model(params, alpha, x, cond):
    """Stacked exact g_k (and eta when params says so) for the Gaussian marginals."""
    del cond
    gamma = _smooth_gamma(alpha) if params["gamma"] else 0.0 * alpha[0]
    m = jnp.tensordot(alpha, params["mus"], axes=1)
    var = jnp.sum(alpha**2 * params["stds"] ** 2) + gamma**2
    gain = (alpha * params["stds"] ** 2 / var)[:, None]
    g = params["mus"] + gain * (x - m)[None]
    if not params["gamma"]:
        return g
    return jnp.concatenate([g, (gamma / var * (x - m))[None]])


@st.composite
def marginals(draw):
    k = draw(st.sampled_from([3, 4]))
    shape = draw(st.sampled_from([(2,), (2, 3)]))
    flat = draw(
        st.lists(
            st.floats(-3, 3, allow_nan=False),
            min_size=k * int(np.prod(shape)),
            max_size=k * int(np.prod(shape)),
        )
    )
    return jnp.asarray(flat).reshape(k, *shape)


@given(xs=marginals(), with_gamma=st.booleans())
def test_vertices_give_the_marginals(xs, with_gamma):
    k = xs.shape[0]
    mmi = paths.MultimarginalInterpolant(k, _smooth_gamma if with_gamma else None)
    z = jax.random.normal(KEY, xs.shape[1:])
    for i in range(k):
        e = jnp.eye(k)[i]
        np.testing.assert_allclose(mmi.interpolate(e, xs, z), xs[i], atol=F64)
        ps = mmi.sample(KEY, xs, alpha=e)
        np.testing.assert_allclose(ps.xt, xs[i], atol=F64)


@given(xs=marginals(), data=st.data())
def test_interpolate_is_the_convex_combination(xs, data):
    k = xs.shape[0]
    mmi = paths.MultimarginalInterpolant(k, _smooth_gamma)
    w = jnp.asarray(data.draw(st.lists(st.floats(0.01, 1), min_size=k, max_size=k)))
    alpha = w / w.sum()
    ps = mmi.sample(KEY, xs, alpha=alpha)
    want = sum(alpha[i] * xs[i] for i in range(k)) + _smooth_gamma(alpha) * ps.z
    np.testing.assert_allclose(ps.xt, want, rtol=F64, atol=F64)
    target = mmi.target(ps)
    assert target.shape == (k + 1, *xs.shape[1:])
    np.testing.assert_array_equal(target[:k], xs)
    np.testing.assert_array_equal(target[k], ps.z)


def _dkw(n):
    """Kolmogorov-Smirnov bound of an empirical CDF of `n` points, tail 1e-6.

    Dvoretzky-Kiefer-Wolfowitz with Massart's constant: P(sup |F_n - F| > eps)
    <= 2 exp(-2 n eps^2), so eps = sqrt(log(2 / 1e-6) / (2 n)) (0.027 at n = 10^4).
    """
    return np.sqrt(np.log(2 / 1e-6) / (2 * n))


def _ks(sample, cdf):
    """sup_x |F_n(x) - F(x)| of a sample against a CDF (both sides of each jump)."""
    x = np.sort(np.asarray(sample, np.float64))
    f, n = cdf(x), len(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


@pytest.mark.parametrize("concentration", [1.0, 2.5])
def test_alpha_lies_on_the_simplex(concentration, key):
    """The law of alpha: Dirichlet(c 1) inside, uniform on a uniform edge otherwise.

    Each component of a Dirichlet(c 1) point of K + 1 = 3 components is
    Beta(c, K c); an edge point is (1 - t) e_i + t e_j with {i, j} uniform among
    the 3 edges and t ~ U(0, 1), so its lower-index coordinate is U(0, 1) too.
    Laws are compared by the KS distance with the DKW bound (`_dkw`).
    """
    n, k = 20_000, 3
    mmi = paths.MultimarginalInterpolant(
        k, concentration=concentration, edge_probability=0.5
    )
    alpha = jax.jit(jax.vmap(mmi.sample_alpha))(jax.random.split(key, n))
    assert alpha.shape == (n, k)
    assert bool(jnp.all(alpha >= 0))
    np.testing.assert_allclose(alpha.sum(1), 1.0, atol=F64)
    # Dirichlet(c 1) and a uniform edge both have mean 1/3 per component (symmetry);
    # component standard deviation <= 0.5, so Z SE <= 5 * 0.5 / sqrt(n) = 0.018.
    np.testing.assert_allclose(alpha.mean(0), 1 / k, atol=Z * 0.5 / np.sqrt(n))
    # Dirichlet points are interior almost surely: half the draws lie on an edge
    # (a Bernoulli(1/2) fraction, SE = 0.5 / sqrt(n)).
    alpha = np.asarray(alpha)
    on_edge = np.sum(alpha > 0, axis=1) <= 2
    assert abs(float(on_edge.mean()) - 0.5) <= Z * 0.5 / np.sqrt(n)
    inside, edge = alpha[~on_edge], alpha[on_edge]
    beta = stats.beta(concentration, (k - 1) * concentration)
    for j in range(k):
        assert _ks(inside[:, j], beta.cdf) <= _dkw(len(inside)), j
    # On an edge exactly two coordinates are non-zero (t = 0 or 1 has measure 0).
    assert (np.sum(edge > 0, axis=1) == 2).all()
    first = np.argmax(edge > 0, axis=1)
    second = k - 1 - np.argmax(edge[:, ::-1] > 0, axis=1)
    p_se = np.sqrt((1 / 3) * (2 / 3) / len(edge))  # each edge w.p. 1/3
    for pair in [(0, 1), (0, 2), (1, 2)]:
        share = np.mean((first == pair[0]) & (second == pair[1]))
        assert abs(share - 1 / 3) <= Z * p_se, pair
    lower = edge[np.arange(len(edge)), first]
    assert _ks(lower, stats.uniform.cdf) <= _dkw(len(edge))


def test_without_gamma_there_is_no_noise(key):
    mmi = paths.MultimarginalInterpolant(3)
    ps = mmi.sample(key, MUS)
    assert ps.z is None
    assert mmi.num_outputs == 3
    np.testing.assert_array_equal(mmi.target(ps), MUS)
    assert paths.MultimarginalInterpolant(3, _smooth_gamma).num_outputs == 4


@pytest.mark.parametrize("with_gamma", [False, True])
def test_edge_velocity_is_gj_minus_gi(with_gamma, key):
    """On an edge, v = g_j - g_i (+ d/dt gamma eta): a random model, by hand."""
    k = 4
    mmi = paths.MultimarginalInterpolant(k, _smooth_gamma if with_gamma else None)
    w = jax.random.normal(key, (mmi.num_outputs, 2, 2 + k))

    def model(params, alpha, x, cond):
        return jnp.tanh(params @ jnp.concatenate([x, alpha]))

    t, x = jnp.float64(0.3), jnp.array([0.4, -1.2])
    v = mmi.edge_velocity(model, w, 1, 3)(t, x, None)
    alpha = jnp.array([0.0, 0.7, 0.0, 0.3])
    out = model(w, alpha, x, None)
    want = out[3] - out[1]
    if with_gamma:  # gamma = 0.6 (1 - (1-t)^2 - t^2): d/dt = 0.6 (2(1-t) - 2t)
        want = want + 0.6 * (2 * 0.7 - 2 * 0.3) * out[4]
    np.testing.assert_allclose(v, want, rtol=F64, atol=F64)
    # params through args gives the same field.
    v_args = mmi.edge_velocity(model, None, 1, 3)(t, x, w)
    np.testing.assert_allclose(v_args, v, rtol=F64, atol=F64)


def test_curve_velocity_matches_chain_rule(key):
    mmi = paths.MultimarginalInterpolant(3)

    def curve(t):  # through the interior of the simplex
        return jnp.array([(1 - t) ** 2, 2 * t * (1 - t), t**2])

    params = {"mus": MUS, "stds": STDS, "gamma": False}
    t, x = jnp.float64(0.4), jnp.array([1.0, 0.5])
    v = mmi.curve_velocity(exact_model, params, curve)(t, x, None)
    d_alpha = jnp.array([-2 * (1 - t), 2 - 4 * t, 2 * t])
    want = jnp.tensordot(d_alpha, exact_model(params, curve(t), x, None), axes=1)
    np.testing.assert_allclose(v, want, rtol=F64, atol=F64)


PAIRS = [(0, 1, False), (2, 0, False), (1, 2, False), (0, 2, True), (2, 1, True)]


def test_exact_edge_transport_maps_marginal_i_to_j(key):
    """Every pair in one solve (a dict state, so one compilation)."""
    mmis = [
        paths.MultimarginalInterpolant(3, None),
        paths.MultimarginalInterpolant(3, _smooth_gamma),
    ]
    fields = {
        (i, j, g): mmis[g].edge_velocity(exact_model, None, i, j) for i, j, g in PAIRS
    }

    def transport(t, x, params):
        return {
            pair: v(t, x[pair], {**params, "gamma": pair[2]})
            for pair, v in fields.items()
        }

    n = 2000
    start = {
        (i, j, g): MUS[i][None] + STDS[i] * jax.random.normal(key, (n, 2))
        for i, j, g in PAIRS
    }
    params = {"mus": MUS, "stds": STDS}
    out = flowlab.sample_ode(
        transport, start, params, solver="dopri5", rtol=1e-9, atol=1e-9
    )
    for (i, j, g), x in out.x.items():
        want = MUS[j][None] + STDS[j] / STDS[i] * (start[i, j, g] - MUS[i][None])
        np.testing.assert_allclose(x, want, atol=ODE_TOL, err_msg=str((i, j, g)))
        # And the law: N(mu_j, s_j^2) within Monte-Carlo error.
        se_mean = STDS[j] / np.sqrt(n)
        np.testing.assert_array_less(np.abs(x.mean(0) - MUS[j]), Z * se_mean)
        se_var = STDS[j] ** 2 * np.sqrt(2 / (n - 1))
        np.testing.assert_array_less(
            np.abs(x.var(0, ddof=1) - STDS[j] ** 2), Z * se_var
        )


def test_construction_errors():
    with pytest.raises(ValueError, match="num_marginals must be an int >= 2"):
        paths.MultimarginalInterpolant(1)
    with pytest.raises(ValueError, match="gamma_fn must vanish at every vertex"):
        paths.MultimarginalInterpolant(3, lambda a: 0.1 + 0 * jnp.sum(a))
    with pytest.raises(TypeError, match="gamma_fn must return a scalar"):
        paths.MultimarginalInterpolant(3, lambda a: 0 * a)
    with pytest.raises(ValueError, match="edge_probability"):
        paths.MultimarginalInterpolant(3, edge_probability=1.5)
    with pytest.raises(ValueError, match="concentration"):
        paths.MultimarginalInterpolant(3, concentration=0.0)


def test_call_errors(key):
    mmi = paths.MultimarginalInterpolant(3, _smooth_gamma)
    with pytest.raises(ValueError, match=r"alpha must have shape \(3,\)"):
        mmi.interpolate(jnp.ones(4) / 4, MUS)
    with pytest.raises(ValueError, match="xs must stack one sample of each"):
        mmi.sample(key, MUS[:2])
    with pytest.raises(ValueError, match="z of the event shape"):
        mmi.interpolate(jnp.ones(3) / 3, MUS)
    with pytest.raises(ValueError, match="i and j must differ"):
        mmi.edge_velocity(exact_model, None, 1, 1)
    with pytest.raises(ValueError, match=r"j must be an int in \[0, 3\)"):
        mmi.edge_velocity(exact_model, None, 0, 3)
    v = mmi.edge_velocity(lambda p, a, x, c: jnp.stack([x] * 3), None, 0, 1)
    with pytest.raises(ValueError, match=r"model_fn must return shape \(4, 2\)"):
        v(0.5, jnp.zeros(2), None)
