"""Log-likelihoods by the instantaneous change of variables, against Gaussians."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_SCHEDULES
from scipy import stats

import flowlab
from flowlab import data
from flowlab.sampling import standard_normal_log_prob

# Data N(MU, COV) with COV = R diag(S^2) R^T: a rotated, anisotropic Gaussian, so the
# field's Jacobian is a full (not diagonal) matrix and Hutchinson's estimate is
# genuinely random (for a diagonal Jacobian Rademacher probes are exact).
D = 3
MU = jnp.array([1.0, -1.0, 0.5])
S = jnp.array([0.3, 1.0, 2.0])
R = jnp.linalg.qr(jax.random.normal(jax.random.key(5), (D, D)))[0]
COV = R @ jnp.diag(S**2) @ R.T

# Tolerances.
# Exact trace with dopri5 at rtol = atol = 1e-8: the log-density is an integral
# accurate to ~1e-7 (measured 3e-8); 1e-4 is the acceptance bound of the issue.
EXACT_TOL = 1e-4


def _rotated_gaussian_velocity(t, x, schedule):
    # Per eigen-direction of COV, the isotropic marginal field of helpers with s_i.
    s = schedule(t)
    coef = (s.alpha * s.d_alpha * S**2 + s.sigma * s.d_sigma) / (
        s.alpha**2 * S**2 + s.sigma**2
    )
    return s.d_alpha * MU + R @ (coef * (R.T @ (x - s.alpha * MU)))


def _data(key, n):
    z = jax.random.normal(key, (n, D))
    return MU[None] + z @ (R @ jnp.diag(S)).T


def _true_log_density(x):
    dist = stats.multivariate_normal(np.asarray(MU), np.asarray(COV))
    return np.atleast_1d(dist.logpdf(np.asarray(x)))


# Schedules from exactly N(0, I) at t = 0 to exactly the data at t = 1, with
# derivatives finite on all of [0, 1] (likelihoods integrate the whole interval).
# Each compiles its own solve (~1-2 s); the default run keeps two of them.
_FAST = ("cond_ot", "cosine")
_LIKELIHOOD_CASES = [
    pytest.param(c, id=c.name, marks=() if c.name in _FAST else pytest.mark.slow)
    for c in ALL_SCHEDULES
    if c.exact_endpoints and c.safe == (0.0, 1.0)
]


@pytest.mark.parametrize("case", _LIKELIHOOD_CASES)
def test_exact_log_likelihood_of_a_gaussian(case, key):
    x1 = _data(key, 16)
    log_p = flowlab.log_likelihood(
        _rotated_gaussian_velocity,
        x1,
        case.schedule,
        solver="dopri5",
        rtol=1e-8,
        atol=1e-8,
    )
    assert log_p.shape == (16,)
    np.testing.assert_allclose(log_p, _true_log_density(x1), rtol=0, atol=EXACT_TOL)


def test_exact_log_likelihood_with_matrix_events(key):
    # The isotropic ground truth of helpers on (2, 2)-shaped events: the Jacobian
    # trace must see all four coordinates.
    mu, std = jnp.array([[1.0, 0.0], [-1.0, 2.0]]), 0.5
    schedule = next(c for c in ALL_SCHEDULES if c.name == "cond_ot").schedule
    x1 = mu[None] + std * jax.random.normal(key, (8, 2, 2))
    log_p = flowlab.log_likelihood(
        helpers.gaussian_velocity,
        x1,
        (schedule, mu, std),
        solver="dopri5",
        rtol=1e-8,
        atol=1e-8,
    )
    ref = stats.norm(np.asarray(mu), std).logpdf(np.asarray(x1)).sum(axis=(1, 2))
    np.testing.assert_allclose(log_p, ref, rtol=0, atol=EXACT_TOL)


def test_hutchinson_is_unbiased_with_the_predicted_spread(key):
    """Hutchinson's estimate, averaged over many probes, is the exact log-density.

    The field is linear in x with Jacobian A(t) = R diag(c(t)) R^T, and one
    Rademacher probe eps is held along the path, so the estimate is
    exact - (eps^T M eps - tr M) with M = int_0^1 A dt = R diag(log S) R^T (for
    cond_ot, int c_i dt = log(m_i(1) / m_i(0)) = log S_i). Its variance is
    2 sum_{i != j} M_ij^2. With K = 1000 probes the mean's standard error is
    sqrt(var / K); allow 5 of them (fixed key), plus the ODE error.
    """
    k_data, k_probe = jax.random.split(key)
    x = _data(k_data, 1)
    many = jnp.broadcast_to(x, (1000, D))
    schedule = next(c for c in ALL_SCHEDULES if c.name == "cond_ot").schedule
    log_p = flowlab.log_likelihood(
        _rotated_gaussian_velocity,
        many,
        schedule,
        method="hutchinson",
        key=k_probe,
        solver="dopri5",
        rtol=1e-6,
        atol=1e-6,
    )
    m = R @ jnp.diag(jnp.log(S)) @ R.T
    sd = float(jnp.sqrt(2 * (jnp.sum(m**2) - jnp.sum(jnp.diag(m) ** 2))))
    assert sd > 0.5  # the check below is not vacuous
    truth = float(_true_log_density(x)[0])
    np.testing.assert_allclose(
        jnp.mean(log_p), truth, atol=5 * sd / np.sqrt(1000) + EXACT_TOL
    )
    # The spread is the Rademacher one (the sample sd of 1000 draws is within ~4%
    # of sd; allow 15%).
    np.testing.assert_allclose(jnp.std(log_p), sd, rtol=0.15)


def test_zero_field_gives_the_base_density(key):
    x1 = 2.0 * jax.random.normal(key, (6, 3))
    base = data.Gaussian(dim=3, mean=0.5, std=2.0)

    def zero(t, x, args):
        return jnp.zeros_like(x)

    log_p = flowlab.log_likelihood(zero, x1, base_log_prob=base.log_prob)
    np.testing.assert_allclose(log_p, jax.vmap(base.log_prob)(x1), rtol=1e-12)


def test_standard_normal_log_prob():
    x = np.random.default_rng(0).normal(size=(4, 2, 3))
    got = jax.vmap(standard_normal_log_prob)(jnp.asarray(x))
    np.testing.assert_allclose(got, stats.norm.logpdf(x).sum((1, 2)), rtol=1e-12)


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_second_call_does_not_retrace(method, key):
    traces = [0]

    def v(t, x, args):
        traces[0] += 1  # runs only while JAX traces v
        return -args * x

    x1 = jax.random.normal(key, (4, 2))
    first = flowlab.log_likelihood(v, x1, jnp.asarray(1.0), method=method, key=key)
    n_traces = traces[0]
    assert n_traces > 0
    second = flowlab.log_likelihood(
        v, 0.5 * x1, jnp.asarray(2.0), method=method, key=jax.random.key(1)
    )
    assert traces[0] == n_traces
    # dx/dt = -a x, so x0 = x1 e^a and log p(x1) = log N(x1 e^a) + d a (d = 2); the
    # Jacobian -a I makes Hutchinson exact too. tsit5 at 1e-5: ~1e-4 accuracy.
    for out, x, a in ((first, x1, 1.0), (second, 0.5 * x1, 2.0)):
        want = stats.norm.logpdf(np.asarray(x) * np.exp(a)).sum(1) + 2 * a
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-3)


def test_bad_method_raises():
    with pytest.raises(ValueError, match="method must be 'exact' or 'hutchinson'"):
        flowlab.log_likelihood(lambda t, x, a: x, jnp.ones((2, 2)), method="trace")


def test_hutchinson_needs_a_key():
    with pytest.raises(ValueError, match="needs a PRNG key"):
        flowlab.log_likelihood(lambda t, x, a: x, jnp.ones((2, 2)), method="hutchinson")


def test_unbatched_data_raises():
    with pytest.raises(ValueError, match="x1 must be batch-first"):
        flowlab.log_likelihood(lambda t, x, a: x, jnp.ones(2))
