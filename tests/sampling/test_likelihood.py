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
    ).log_prob
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
    ).log_prob
    ref = stats.norm(np.asarray(mu), std).logpdf(np.asarray(x1)).sum(axis=(1, 2))
    np.testing.assert_allclose(log_p, ref, rtol=0, atol=EXACT_TOL)


def test_hutchinson_is_unbiased_with_the_predicted_spread(key):
    """Hutchinson's estimate, averaged over many probes, is the exact log-density.

    The field is linear in x with Jacobian A(t) = R diag(c(t)) R^T, and one
    Rademacher probe eps is held along the path, so the estimate is
    exact - (eps^T M eps - tr M) with M = int_0^1 A dt = R diag(log S) R^T (for
    cond_ot, int c_i dt = log(m_i(1) / m_i(0)) = log S_i). Its variance is
    2 sum_{i != j} M_ij^2. With K = 1000 probes the mean lies within three
    Monte-Carlo standard errors (the sample sd over sqrt(K); fixed key, measured
    0.56 of one) of the truth, plus the ODE error.
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
    ).log_prob
    m = R @ jnp.diag(jnp.log(S)) @ R.T
    sd = float(jnp.sqrt(2 * (jnp.sum(m**2) - jnp.sum(jnp.diag(m) ** 2))))
    assert sd > 0.5  # the check below is not vacuous
    truth = float(_true_log_density(x)[0])
    se = float(jnp.std(log_p, ddof=1)) / np.sqrt(1000)
    np.testing.assert_allclose(jnp.mean(log_p), truth, atol=3 * se + EXACT_TOL)
    # The spread is the Rademacher one (the sample sd of 1000 draws is within ~4%
    # of sd; allow 15%).
    np.testing.assert_allclose(jnp.std(log_p), sd, rtol=0.15)


def test_zero_field_gives_the_base_density(key):
    x1 = 2.0 * jax.random.normal(key, (6, 3))
    base = data.Gaussian(dim=3, mean=0.5, std=2.0)

    def zero(t, x, args):
        return jnp.zeros_like(x)

    log_p = flowlab.log_likelihood(zero, x1, base_log_prob=base.log_prob).log_prob
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
        np.testing.assert_allclose(out.log_prob, want, rtol=0, atol=1e-3)


def test_bad_method_raises():
    with pytest.raises(ValueError, match="method must be 'exact' or 'hutchinson'"):
        flowlab.log_likelihood(lambda t, x, a: x, jnp.ones((2, 2)), method="trace")


def test_hutchinson_needs_a_key():
    with pytest.raises(ValueError, match="needs a PRNG key"):
        flowlab.log_likelihood(lambda t, x, a: x, jnp.ones((2, 2)), method="hutchinson")


def test_unbatched_data_raises():
    with pytest.raises(ValueError, match="x1 must be batch-first"):
        flowlab.log_likelihood(lambda t, x, a: x, jnp.ones(2))


# ---------------------------------------------------------------------------------
# The result's two ends, sampling with log-densities, gradients, model predictions
# ---------------------------------------------------------------------------------

# Tolerances.
# dopri5 at rtol = atol = 1e-8 on the isotropic Gaussian field: states and
# log-densities accurate to ~1e-8 (measured 1e-9 for x0, 6e-9 for log p). Two solves
# of the same ODE with different step sequences (the augmented solve also controls
# the log-density's error) agree to that accuracy; 1e-6 leaves a margin.
SOLVE_TOL = 1e-6
# Reverse mode through the solve differentiates the discrete solution, which is
# within the solver's error of the exact one (measured 1e-8 on O(1) gradients).
GRAD_TOL = 1e-5
# velocity_field evaluates a prediction at t clipped into [eps, 1 - eps], eps = 1e-3,
# so on the two end intervals of length eps the field and its divergence are frozen
# at t = eps (resp. 1 - eps): an error of (1/2) eps^2 |d/dt| per end, ~5e-7 times
# derivatives of O(1) here (cond_ot, s = 0.7: |d/dt div v| <= D (1 - s^2) / s^2 ~ 2
# at t = 1); measured 3.3e-6 for all three predictions.
PREDICTION_TOL = 1e-4

_COND_OT = next(c for c in ALL_SCHEDULES if c.name == "cond_ot")
MU_ISO, STD_ISO = jnp.array([1.0, -0.5]), 0.7
_TIGHT = {"solver": "dopri5", "rtol": 1e-8, "atol": 1e-8}


def _iso_data(key, n):
    return MU_ISO[None] + STD_ISO * jax.random.normal(key, (n, 2))


def _iso_log_density(x):
    return stats.norm(np.asarray(MU_ISO), STD_ISO).logpdf(np.asarray(x)).sum(1)


def test_the_result_holds_both_ends_of_the_backward_solve(key):
    x1 = _iso_data(key, 16)
    args = (_COND_OT.schedule, MU_ISO, STD_ISO)
    out = flowlab.log_likelihood(helpers.gaussian_velocity, x1, args, **_TIGHT)
    assert isinstance(out, flowlab.Likelihood)
    assert out.log_prob.shape == (16,)
    assert out.x0.shape == x1.shape
    np.testing.assert_array_equal(out.x1, x1)
    assert int(out.nfe) > 0
    # x0 is the backward ODE solution, and the closed-form flow map (x1 - mu) / s.
    back = flowlab.sample_ode(
        helpers.gaussian_velocity, x1, args, t0=1.0, t1=0.0, **_TIGHT
    )
    np.testing.assert_allclose(out.x0, back.x, rtol=0, atol=SOLVE_TOL)
    flow = helpers.gaussian_flow_map(_COND_OT, MU_ISO, STD_ISO, 1.0, 0.0, x1)
    np.testing.assert_allclose(out.x0, flow, rtol=0, atol=SOLVE_TOL)
    np.testing.assert_allclose(out.log_prob, _iso_log_density(x1), atol=EXACT_TOL)


def test_sample_and_log_prob_scores_its_own_samples(key):
    x0 = jax.random.normal(key, (16, 2))
    args = (_COND_OT.schedule, MU_ISO, STD_ISO)
    out = flowlab.sample_and_log_prob(helpers.gaussian_velocity, x0, args, **_TIGHT)
    np.testing.assert_array_equal(out.x0, x0)
    samples = flowlab.sample_ode(helpers.gaussian_velocity, x0, args, **_TIGHT).x
    np.testing.assert_allclose(out.x1, samples, rtol=0, atol=SOLVE_TOL)
    back = flowlab.log_likelihood(helpers.gaussian_velocity, out.x1, args, **_TIGHT)
    np.testing.assert_allclose(out.log_prob, back.log_prob, rtol=0, atol=SOLVE_TOL)
    np.testing.assert_allclose(back.x0, x0, rtol=0, atol=SOLVE_TOL)
    np.testing.assert_allclose(out.log_prob, _iso_log_density(out.x1), atol=EXACT_TOL)
    # A fixed-step solve: RK4 evaluates the augmented field 4 times a step.
    rk4 = flowlab.sample_and_log_prob(
        helpers.gaussian_velocity, x0, args, solver="rk4", steps=8
    )
    assert int(rk4.nfe) == 32


def test_sample_and_log_prob_with_hutchinson_matches_log_likelihood(key):
    # The same key draws the same probes for a batch of the same shape, and the
    # estimate integral of eps^T J eps dt along a trajectory does not depend on the
    # direction of integration: forward and backward agree to the solver's error.
    schedule = _COND_OT.schedule
    x0 = jax.random.normal(key, (64, D))
    k_probe = jax.random.key(7)
    hutch = {"method": "hutchinson", "key": k_probe, **_TIGHT}
    fwd = flowlab.sample_and_log_prob(_rotated_gaussian_velocity, x0, schedule, **hutch)
    back = flowlab.log_likelihood(_rotated_gaussian_velocity, fwd.x1, schedule, **hutch)
    np.testing.assert_allclose(fwd.log_prob, back.log_prob, rtol=0, atol=SOLVE_TOL)
    # Not vacuous: the probes make the estimate differ from the exact log-density.
    assert np.max(np.abs(fwd.log_prob - _true_log_density(fwd.x1))) > 0.1


def test_gradients_in_the_data_mean_and_the_data(key):
    # d/dmu sum_i log N(x_i; mu, s^2 I) = sum_i (x_i - mu) / s^2, and
    # d/dx_i = -(x_i - mu) / s^2: reverse mode through the solve, mu through args.
    x1 = _iso_data(key, 16)

    def total(mu, x):
        args = (_COND_OT.schedule, mu, STD_ISO)
        out = flowlab.log_likelihood(helpers.gaussian_velocity, x, args, **_TIGHT)
        return out.log_prob.sum()

    d_mu, d_x = jax.grad(total, argnums=(0, 1))(MU_ISO, x1)
    np.testing.assert_allclose(
        d_mu, jnp.sum(x1 - MU_ISO[None], 0) / STD_ISO**2, rtol=0, atol=GRAD_TOL
    )
    np.testing.assert_allclose(d_x, -(x1 - MU_ISO[None]) / STD_ISO**2, atol=GRAD_TOL)


def _gaussian_prediction(name):
    """The exact x1-, epsilon- or score-prediction of N(MU_ISO, STD_ISO^2 I) data.

    With m^2 = alpha^2 s^2 + sigma^2 and r = x - alpha mu: E[x1 | x_t] = mu + alpha
    s^2 r / m^2, E[x0 | x_t] = sigma r / m^2 and the score is -r / m^2.
    """

    def fn(t, x, args):
        s = _COND_OT.schedule(t)
        m2 = s.alpha**2 * STD_ISO**2 + s.sigma**2
        r = x - s.alpha * MU_ISO
        return {
            "x1": MU_ISO + s.alpha * STD_ISO**2 * r / m2,
            "epsilon": s.sigma * r / m2,
            "score": -r / m2,
        }[name]

    return fn


@pytest.mark.parametrize(
    "prediction",
    # Each compiles its own solve (~5 s); the default run keeps one.
    ["x1", pytest.param("epsilon", marks=pytest.mark.slow), "score"],
)
def test_any_prediction_gives_the_true_log_density(prediction, key):
    path = flowlab.AffinePath(_COND_OT.schedule)
    v = flowlab.velocity_field(_gaussian_prediction(prediction), path, prediction)
    x1 = _iso_data(key, 16)
    out = flowlab.log_likelihood(v, x1, **_TIGHT)
    np.testing.assert_allclose(
        out.log_prob, _iso_log_density(x1), rtol=0, atol=PREDICTION_TOL
    )


def test_sample_and_log_prob_refuses_bad_input():
    with pytest.raises(ValueError, match="x0 must be batch-first"):
        flowlab.sample_and_log_prob(lambda t, x, a: x, jnp.ones(2))
    with pytest.raises(ValueError, match="holds its own"):
        flowlab.sample_and_log_prob(
            lambda t, x, a: x,
            jnp.ones((2, 2)),
            method=flowlab.sampling.HutchinsonDivergence(jax.random.key(0)),
            key=jax.random.key(1),
        )
    with pytest.raises(ValueError, match=r"one sample of x0 has shape \(2,\)"):
        flowlab.sample_and_log_prob(lambda t, x, a: x[:1], jnp.ones((2, 2)))
