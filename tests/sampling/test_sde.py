"""SDE sampling against closed forms: OU, GBM, interpolant SDEs, reverse VP SDE.

Statistical checks use fixed keys and compare sample moments with exact ones. Every
tolerance is `4 standard errors + the discretisation bias of the scheme`, where the
bias is computed exactly: the test SDEs are linear, so the mean `m` and variance `P`
of Euler-Maruyama follow the deterministic recursions

    m <- m + h (a m + c),    P <- (1 + h a)^2 P + g^2 h

for `dX = (a(t) X + c(t)) dt + g(t) dW` (`_em_moments`). Standard errors: the sample
mean of N iid values has SE sqrt(P / N); the sample variance has SE P sqrt(2 / N)
(Gaussian data, where the fourth central moment is 3 P^2). A 4-SE band fails a
correct implementation with probability ~6e-5 per check, and the keys are fixed.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowlab
from flowlab import paths, schedules
from flowlab.sampling import (
    SDE_SOLVERS,
    interpolant_sde,
    reverse_diffusion_sde,
    sample_sde,
)

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: solves of one field with one solver and batch shape; split over
# two workers, each compiled them.
pytestmark = pytest.mark.xdist_group("sde")

N_SIGMA = 4.0


def _em_moments(a_fn, c_fn, g2_fn, m0, p0, t0, t1, steps):
    """Exact mean and variance of Euler-Maruyama for a linear scalar SDE."""
    h = (t1 - t0) / steps
    m, p = np.asarray(m0, float), float(p0)
    for n in range(steps):
        t = t0 + n * h
        a = a_fn(t)
        m = m + h * (a * m + c_fn(t))
        p = (1 + h * a) ** 2 * p + g2_fn(t) * h
    return m, p


def _assert_moments(x, mean, var, mean_bias=0.0, var_bias=0.0):
    """Per-coordinate means and the pooled variance within 4 SE + the bias.

    `x` is `(n, d)` with independent coordinates of equal variance `var`.
    """
    x = np.asarray(x)
    n, d = x.shape
    mean = np.broadcast_to(np.asarray(mean, float), (d,))
    mean_tol = N_SIGMA * np.sqrt(var / n) + np.abs(mean_bias)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), mean_tol)
    pooled = ((x - x.mean(0)) ** 2).sum() / (n * d - d)
    var_tol = N_SIGMA * var * np.sqrt(2 / (n * d)) + abs(var_bias)
    assert abs(pooled - var) < var_tol, (pooled, var, var_tol)


# ---------------------------------------------------------------------------------
# Ornstein-Uhlenbeck and Brownian motion: dX = -theta X dt + C dW, X(0) = X0
# ---------------------------------------------------------------------------------

N_OU = 20_000
X0_OU = 10.0
C_OU = 1.0
OU_STEPS = 10  # h = 0.1: Euler-Maruyama's O(h) bias is far above the MC error


def _ou_drift(t, x, theta):
    return -theta * x


def _ou_diffusion(t, x, theta):
    return C_OU


def _ou_exact(theta):
    if theta == 0:
        return X0_OU, C_OU**2
    return X0_OU * np.exp(-theta), C_OU**2 * (1 - np.exp(-2 * theta)) / (2 * theta)


@pytest.mark.parametrize("theta", [0.0, 1.0])
def test_euler_maruyama_ou_moments(theta):
    out = sample_sde(
        jax.random.key(1),
        _ou_drift,
        _ou_diffusion,
        jnp.full((N_OU, 1), X0_OU),
        jnp.asarray(theta),  # an array: both cases share one compiled solve
        steps=OU_STEPS,
    )
    assert out.x.shape == (N_OU, 1)
    assert int(out.num_steps) == OU_STEPS
    assert int(out.nfe) == OU_STEPS
    mean, var = _ou_exact(theta)
    em_mean, em_var = _em_moments(
        lambda t: -theta, lambda t: 0.0, lambda t: C_OU**2, X0_OU, 0.0, 0, 1, OU_STEPS
    )
    # theta = 0: Brownian motion, exact for Euler-Maruyama (no bias). theta = 1:
    # mean bias 10 (0.9^10 - e^-1) = -0.19, variance bias +0.030 (vs 4 SE = 0.019,
    # 0.017): the check against the exact scheme moments is tight and ...
    _assert_moments(out.x, em_mean, em_var)
    # ... the O(h) bias of the mean is really there (this test can see a wrong h).
    if theta:
        assert abs(float(out.x.mean()) - mean) > 5 * N_SIGMA * np.sqrt(var / N_OU)
    else:
        _assert_moments(out.x, mean, var)


@pytest.mark.parametrize(
    "solver", ["shark", pytest.param("sra1", marks=pytest.mark.slow)]
)
def test_additive_noise_solvers_are_more_accurate_on_ou(solver):
    theta = jnp.asarray(1.0)
    x0 = jnp.full((N_OU, 1), X0_OU)
    out = sample_sde(
        jax.random.key(2), _ou_drift, _ou_diffusion, x0, theta, solver=solver,
        steps=OU_STEPS,
    )  # fmt: skip
    assert int(out.nfe) == 2 * OU_STEPS
    mean, var = _ou_exact(1.0)
    # For f = -theta y and constant g, both methods are the linear map
    # y1 = A y0 + g (1 - theta h / 2) W + O(h) H with A = 1 - theta h + (theta h)^2 / 2
    # (second order): mean bias 10 (0.905^10 - e^-1) = +0.0066, variance bias -0.001.
    # Bounds 0.01 and 0.005 cover them.
    _assert_moments(out.x, mean, var, mean_bias=0.01, var_bias=0.005)
    em = sample_sde(
        jax.random.key(2), _ou_drift, _ou_diffusion, x0, theta, steps=OU_STEPS
    )
    assert abs(float(out.x.mean()) - mean) < abs(float(em.x.mean()) - mean)


# ---------------------------------------------------------------------------------
# Strong order of Euler-Maruyama on geometric Brownian motion (one Brownian path)
# ---------------------------------------------------------------------------------

GBM_A, GBM_B = 0.5, 0.8
GBM_TOL = 2.0**-10  # the tree's resolution, below every step size used


def _linear_drift(t, x, coeffs):
    return coeffs[0] * x


def _affine_diffusion(t, x, coeffs):
    return coeffs[1] * x + coeffs[2]


@pytest.mark.slow  # ~5-9 s: the Brownian tree is much slower than increments
def test_euler_maruyama_strong_order_on_gbm():
    key, n = jax.random.key(3), 2000

    def solve(x0, coeffs, steps):
        return sample_sde(
            key, _linear_drift, _affine_diffusion, jnp.full((n, 1), x0),
            jnp.asarray(coeffs), steps=steps, brownian="tree", brownian_tol=GBM_TOL,
        ).x  # fmt: skip

    # With brownian="tree" and a fixed tolerance the Brownian path depends on the
    # key only, so dX = dW from 0 (exact for Euler-Maruyama) gives W(1) on the
    # same path, and X(1) = exp(a - b^2 / 2 + b W(1)) solves dX = aX dt + bX dW
    # path by path. One compiled solve serves every run (coefficients are args).
    w1 = solve(0.0, [0.0, 0.0, 1.0], 4)
    exact = jnp.exp(GBM_A - 0.5 * GBM_B**2 + GBM_B * w1)
    steps = np.array([4, 8, 16, 32, 64])
    errors = [
        float(jnp.abs(solve(1.0, [GBM_A, GBM_B, 0.0], int(k)) - exact).mean())
        for k in steps
    ]
    slope = np.polyfit(np.log(1 / steps), np.log(errors), 1)[0]
    # Strong order 1/2 for multiplicative noise; the fit over a 16x range of h with
    # 2000 paths lands within +-0.1 of it (measured 0.48; order 1 would be 1.0).
    assert 0.4 < slope < 0.6, (slope, errors)


# ---------------------------------------------------------------------------------
# Stochastic interpolant SDE: x0 ~ N(0, I), x1 ~ N(MU, S^2 I), gamma^2 = t (1 - t)
# ---------------------------------------------------------------------------------

MU = np.array([1.5, -0.5])
S = 0.5
N_SI = 10_000
SI_STEPS = 100


def _si_coeffs(t):
    """beta, marginal variance V, K = (a a' + b b' S^2 + gamma gamma') / V."""
    alpha, beta = 1 - t, t
    gg = 0.5 * (1 - 2 * t)  # gamma gamma_dot for gamma^2 = t (1 - t)
    var = alpha**2 + beta**2 * S**2 + t * (1 - t)
    k = (-alpha + beta * S**2 + gg) / var
    return beta, var, k


def _si_b(t, x, args):
    beta, var, k = _si_coeffs(t)
    return MU + k * (x - beta * MU)


def _si_score(t, x, args):
    beta, var, _ = _si_coeffs(t)
    return -(x - beta * MU) / var


def _rising_epsilon(t):
    return 0.2 + t


@pytest.mark.parametrize(
    "epsilon", [0.0, 0.5, 1.0, _rising_epsilon], ids=["0", "0.5", "1", "0.2+t"]
)
def test_interpolant_sde_matches_the_marginals(epsilon):
    eps_fn = epsilon if callable(epsilon) else (lambda t: epsilon)
    x0 = jax.random.normal(jax.random.key(4), (N_SI, 2))
    out = sample_sde(
        jax.random.key(5), *interpolant_sde(_si_b, _si_score, epsilon), x0,
        steps=SI_STEPS, save_trajectory=3,
    )  # fmt: skip
    np.testing.assert_allclose(out.ts, [0.0, 0.5, 1.0], atol=1e-12)
    for i, t_end in ((1, 0.5), (2, 1.0)):
        beta, var, _ = _si_coeffs(t_end)
        n_steps = round(t_end * SI_STEPS)

        def a_fn(t):
            _, v, k = _si_coeffs(t)
            return k - eps_fn(t) / v

        means, em_var = [], None
        for mu in MU:
            m, em_var = _em_moments(
                a_fn,
                lambda t, mu=mu: mu - a_fn(t) * t * mu,
                lambda t: 2 * eps_fn(t),
                0.0,
                1.0,
                0.0,
                t_end,
                n_steps,
            )
            means.append(m)
        mean_bias = np.array(means) - beta * MU
        var_bias = em_var - var
        # The scheme's bias at h = 0.01 is below 0.01 for every epsilon here
        # (variance <= 7e-3; the mean is exact, as the mean path t MU is linear); it
        # enters the tolerance exactly.
        assert np.abs(mean_bias).max() < 0.01
        assert abs(var_bias) < 0.01
        _assert_moments(out.trajectory[i], beta * MU, var, mean_bias, var_bias)


def test_zero_epsilon_is_the_probability_flow_ode():
    x0 = jax.random.normal(jax.random.key(6), (N_SI, 2))  # reuses a compiled solve
    sde = interpolant_sde(_si_b, _si_score, 0.0)
    out = sample_sde(jax.random.key(7), *sde, x0, steps=50)
    ode = flowlab.sample_ode(_si_b, x0, solver="euler", steps=50)
    # The same Euler steps with zero noise: equal up to float64 rounding.
    np.testing.assert_allclose(out.x, ode.x, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------
# Reverse VP SDE from the exact velocity of Gaussian data N(MU, S^2 I)
# ---------------------------------------------------------------------------------

VP = schedules.vp()
VP_PATH = paths.AffinePath(VP)
DELTA = 1e-3
VP_STEPS = 100


def _beta(t):
    """Song et al.'s beta at diffusion time 1 - t, i.e. -dT/dt."""
    return VP.beta_min + (1 - t) * (VP.beta_max - VP.beta_min)


def _gaussian_velocity(t, x, args):
    s = VP(t)
    coef = (s.alpha * s.d_alpha * S**2 + s.sigma * s.d_sigma) / (
        s.alpha**2 * S**2 + s.sigma**2
    )
    return s.d_alpha * MU + coef * (x - s.alpha * MU)


def _gaussian_score(t, x):
    s = VP(t)
    return -(x - s.alpha * MU) / (s.alpha**2 * S**2 + s.sigma**2)


def _vp_marginal(t):
    s = VP(t)
    return float(s.alpha) * MU, float(s.alpha**2 * S**2 + s.sigma**2)


def _half_beta(t):
    return 0.5 * _beta(t)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 0.99, 1 - DELTA])
def test_reverse_vp_sde_is_songs_reverse_sde_in_flow_time(t):
    # Reverse VP SDE in diffusion time tau = 1 - t: dY = [-beta Y / 2 - beta score]
    # dtau + sqrt(beta) dW; integrated forwards in t it is
    # dX = [beta X / 2 + beta score] dt + sqrt(beta) dW. Identities to 1e-10.
    x = jnp.array([0.3, -2.0])
    sde = reverse_diffusion_sde(VP_PATH, _gaussian_velocity)
    expected = 0.5 * _beta(t) * x + _beta(t) * _gaussian_score(t, x)
    np.testing.assert_allclose(sde.drift(t, x, None), expected, rtol=1e-10)
    np.testing.assert_allclose(sde.diffusion(t, x, None) ** 2, _beta(t), rtol=1e-12)
    # The same SDE through the score conversion with an explicit epsilon = beta / 2.
    explicit = reverse_diffusion_sde(VP_PATH, _gaussian_velocity, _half_beta)
    np.testing.assert_allclose(explicit.drift(t, x, None), expected, rtol=1e-9)
    np.testing.assert_allclose(explicit.diffusion(t, x, None) ** 2, _beta(t))


def test_default_epsilon_of_a_generic_schedule():
    # The general formula sigma^2 d_alpha / alpha - sigma d_sigma (autodiff
    # derivatives of VP's closed forms) equals beta / 2: the VP special case in the
    # library is the same quantity. At t = 1 VP's d_sigma is infinite.
    def big_t(t):
        return 0.5 * (1 - t) ** 2 * (VP.beta_max - VP.beta_min) + (1 - t) * VP.beta_min

    generic = schedules.Schedule(
        lambda t: jnp.exp(-0.5 * big_t(t)), lambda t: jnp.sqrt(-jnp.expm1(-big_t(t)))
    )
    sde = reverse_diffusion_sde(paths.AffinePath(generic), _gaussian_velocity)
    for t in (0.0, 0.25, 0.5, 0.9, 0.999):
        g2 = sde.diffusion(t, jnp.zeros(2), None) ** 2
        np.testing.assert_allclose(g2, _beta(t), rtol=1e-10)


@pytest.mark.parametrize(
    "schedule",
    [schedules.ve(), schedules.cosine(), schedules.cond_ot(), schedules.polynomial(2)],
    ids=["ve", "cosine", "cond_ot", "poly2"],
)
def test_reverse_diffusion_sde_on_other_affine_paths(schedule):
    # drift = v + eps s with the exact Gaussian v and score of each path, for the
    # default eps = sigma^2 d_alpha / alpha - sigma d_sigma (for VE, alpha = 1:
    # -sigma d_sigma = (d sigma^2 / d tau) / 2, the reverse VE SDE) and for a
    # constant eps = 0.7 through path.velocity_to_score. Identities to 1e-10.
    path = paths.AffinePath(schedule)

    def velocity(t, x, args):
        s = schedule(t)
        coef = (s.alpha * s.d_alpha * S**2 + s.sigma * s.d_sigma) / (
            s.alpha**2 * S**2 + s.sigma**2
        )
        return s.d_alpha * MU + coef * (x - s.alpha * MU)

    x = jnp.array([0.3, -2.0])
    for t in (0.2, 0.6, 0.95):
        s = schedule(t)
        score = -(x - s.alpha * MU) / (s.alpha**2 * S**2 + s.sigma**2)
        eps = s.sigma**2 * s.d_alpha / s.alpha - s.sigma * s.d_sigma
        sde = reverse_diffusion_sde(path, velocity)
        v = velocity(t, x, None)
        np.testing.assert_allclose(sde.drift(t, x, None), v + eps * score, rtol=1e-10)
        np.testing.assert_allclose(sde.diffusion(t, x, None) ** 2, 2 * eps, rtol=1e-12)
        sde = reverse_diffusion_sde(path, velocity, 0.7)
        np.testing.assert_allclose(sde.drift(t, x, None), v + 0.7 * score, rtol=1e-10)
        np.testing.assert_allclose(sde.diffusion(t, x, None) ** 2, 1.4, rtol=1e-12)
        assert eps > 0


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.cond_ot(),
        schedules.lipman_ot(),
        schedules.polynomial(3),
        schedules.cosine(),
        schedules.linear_vp(),
        VP,
        schedules.ve(),
        schedules.Schedule(lambda t: t**2, lambda t: 1 - t**2),
    ],
    ids=["cond_ot", "lipman_ot", "poly3", "cosine", "linear_vp", "vp", "ve", "custom"],
)
def test_default_diffusion_is_the_schedules_noise_level(schedule):
    # The knowledge lives on the schedule: the default diffusion is exactly
    # sqrt(2 schedule.diffusion_noise_level(t)), bit for bit.
    sde = reverse_diffusion_sde(paths.AffinePath(schedule), _gaussian_velocity)
    x = jnp.array([0.3, -2.0])
    for t in (0.2, 0.6, 0.95, 1 - DELTA):
        want = jnp.sqrt(2 * schedule.diffusion_noise_level(t))
        np.testing.assert_array_equal(sde.diffusion(t, x, None), want)


def test_default_vp_diffusion_is_finite_at_one():
    # beta(1) = beta_min, where sigma * d_sigma is 0 * inf.
    sde = reverse_diffusion_sde(VP_PATH, _gaussian_velocity)
    g2 = sde.diffusion(1.0, jnp.zeros(2), None) ** 2
    np.testing.assert_allclose(g2, VP.beta_min, rtol=1e-12)


@pytest.mark.parametrize(
    "solver", ["euler_maruyama", pytest.param("shark", marks=pytest.mark.slow)]
)
def test_reverse_vp_sde_samples_the_data(solver):
    t1 = 1 - DELTA
    # The exact start N(alpha_0 MU, alpha_0^2 S^2 + sigma_0^2), not quite N(0, I).
    mean0, var0 = _vp_marginal(0.0)
    x0 = mean0[None] + np.sqrt(var0) * jax.random.normal(jax.random.key(8), (N_SI, 2))
    sde = reverse_diffusion_sde(VP_PATH, _gaussian_velocity)
    out = sample_sde(jax.random.key(9), *sde, x0, solver=solver, t1=t1, steps=VP_STEPS)
    mean, var = _vp_marginal(t1)

    def a_fn(t):
        s = VP(t)
        coef = (s.alpha * s.d_alpha * S**2 + s.sigma * s.d_sigma) / (
            s.alpha**2 * S**2 + s.sigma**2
        )
        return float(2 * coef - s.d_alpha / s.alpha)

    def c_fn(t, mu):
        # 2 v - (d_alpha / alpha) x = a x + 2 d_alpha mu - 2 coef alpha mu.
        s = VP(t)
        return float(2 * s.d_alpha * mu) - float(a_fn(t) + s.d_alpha / s.alpha) * (
            float(s.alpha) * mu
        )

    alpha0 = float(VP(0.0).alpha)
    means, em_var = [], None
    for mu in MU:
        m, em_var = _em_moments(
            a_fn, lambda t, mu=mu: c_fn(t, mu), _beta, alpha0 * mu, var0, 0, t1,
            VP_STEPS,
        )  # fmt: skip
        means.append(m)
    # Euler-Maruyama's bias at 100 steps: mean <= 9e-3, variance 4e-3 (vs 4 SE =
    # 0.014, 0.010). ShARK's is bounded by it: measured with 10^6 samples, its mean
    # and variance biases are <= 1e-3 (Euler-Maruyama's matched the recursion).
    _assert_moments(out.x, mean, var, np.array(means) - mean, em_var - var)
    # And the exact marginal at t1 = 1 - DELTA is the data N(MU, S^2 I) to 1e-3.
    np.testing.assert_allclose(mean, MU, rtol=1e-3)
    np.testing.assert_allclose(var, S**2, rtol=1e-3)


def test_explicit_epsilon_gives_the_same_samples():
    # Same key, grid and shapes give the same Brownian increments: the score route
    # (velocity_to_score with epsilon = beta / 2) and the closed form agree.
    mean0, var0 = _vp_marginal(0.0)
    # The shapes of the test above, so the default SDE's solve is reused.
    x0 = mean0[None] + np.sqrt(var0) * jax.random.normal(jax.random.key(10), (N_SI, 2))
    kwargs = {"t1": 1 - DELTA, "steps": 50}
    default = sample_sde(
        jax.random.key(11), *reverse_diffusion_sde(VP_PATH, _gaussian_velocity), x0,
        **kwargs,
    )  # fmt: skip
    explicit = sample_sde(
        jax.random.key(11),
        *reverse_diffusion_sde(VP_PATH, _gaussian_velocity, _half_beta),
        x0,
        **kwargs,
    )
    np.testing.assert_allclose(explicit.x, default.x, rtol=0, atol=1e-8)


# ---------------------------------------------------------------------------------
# Solvers, NFE, reproducibility, compilation, shapes and dtypes
# ---------------------------------------------------------------------------------

_EVALUATIONS = {"euler_maruyama": 1, "heun": 2, "sea": 1, "shark": 2, "sra1": 2}
_FAST_SOLVERS = ("euler_maruyama", "shark")  # each case compiles its own solve


@pytest.mark.parametrize(
    "solver",
    [
        pytest.param(name, marks=() if name in _FAST_SOLVERS else pytest.mark.slow)
        for name in sorted(SDE_SOLVERS)
    ]
    + [pytest.param(diffrax.SPaRK(), id="SPaRK", marks=pytest.mark.slow)],
)
def test_nfe_counts_drift_evaluations(solver):
    calls = []

    def drift(t, x, args):
        jax.debug.callback(lambda: calls.append(1))
        return -x

    steps = 7
    out = sample_sde(
        jax.random.key(0), drift, _ou_diffusion, jnp.ones((1, 2)), solver=solver,
        steps=steps,
    )  # fmt: skip
    jax.block_until_ready(out.x)
    assert int(out.num_steps) == steps
    # One batch row, so the callback runs once per evaluation of the batched drift.
    assert int(out.nfe) == len(calls)
    per_step = _EVALUATIONS.get(solver, 3)  # SPaRK: three drift stages
    assert len(calls) == per_step * steps


def test_same_key_same_samples_and_no_retrace():
    traces = []

    def drift(t, x, args):
        traces.append(None)  # runs when traced, not when the compiled solve runs
        return -args * x

    x0 = jnp.ones((16, 3))
    key = jax.random.key(12)
    one, two = jnp.asarray(1.0), jnp.asarray(2.0)  # array args are traced
    first = sample_sde(key, drift, _ou_diffusion, x0, one, steps=20)
    n_traces = len(traces)
    again = sample_sde(key, drift, _ou_diffusion, x0, two, steps=20)
    other = sample_sde(jax.random.key(13), drift, _ou_diffusion, x0, one, steps=20)
    sample_sde(key, drift, _ou_diffusion, x0, one, steps=33, t0=0.1, t1=0.9)
    # New key, args, step count and times reuse the compiled solve.
    assert len(traces) == n_traces
    np.testing.assert_array_equal(
        sample_sde(key, drift, _ou_diffusion, x0, one, steps=20).x, first.x
    )
    assert not np.allclose(again.x, first.x)  # args reach the drift
    # A different key: different noise in every sample.
    assert np.all(np.abs(np.asarray(other.x - first.x)) > 0)
    # Rows differ from each other (independent noise per sample and coordinate).
    assert len(np.unique(np.asarray(first.x).round(12))) == first.x.size

    # Rebuilding the interpolant SDE with another constant epsilon reuses the
    # compiled solve too (a constant epsilon is data, not a new function).
    sde_traces = []

    def b(t, x, args):
        sde_traces.append(None)
        return -x

    def score(t, x, args):
        return -x

    sample_sde(key, *interpolant_sde(b, score, 0.5), x0, steps=10)
    n_traces = len(sde_traces)
    sample_sde(key, *interpolant_sde(b, score, 1.0), x0, steps=10)
    assert len(sde_traces) == n_traces


def test_trajectory_pytree_state_and_float32():
    x0 = {"a": jnp.ones((5,), jnp.float32), "b": jnp.zeros((5, 2), jnp.float32)}

    def drift(t, x, args):
        return jax.tree_util.tree_map(jnp.negative, x)

    def diffusion(t, x, args):
        return {"a": 0.1, "b": jnp.array([1.0, 2.0])}

    out = sample_sde(
        jax.random.key(14), drift, diffusion, x0, steps=8, save_trajectory=True
    )
    assert out.ts.shape == (9,)
    assert out.trajectory["b"].shape == (9, 5, 2)
    assert out.x["a"].dtype == jnp.float32
    assert out.x["b"].dtype == jnp.float32
    np.testing.assert_array_equal(out.trajectory["b"][0], x0["b"])
    np.testing.assert_array_equal(out.trajectory["a"][-1], out.x["a"])
    assert out.ts.dtype == jnp.float32


# ---------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------


def test_negative_epsilon_is_rejected():
    with pytest.raises(ValueError, match="epsilon"):
        interpolant_sde(_si_b, _si_score, -0.1)
    with pytest.raises(ValueError, match=r"epsilon\(0\.5"):
        interpolant_sde(_si_b, _si_score, lambda t: 0.5 - t)
    with pytest.raises(ValueError, match="epsilon"):
        reverse_diffusion_sde(VP_PATH, _gaussian_velocity, lambda t: t - 0.5)
    with pytest.raises(ValueError, match="epsilon.*scalar"):
        interpolant_sde(_si_b, _si_score, lambda t: jnp.ones(2) * t)
    with pytest.raises(TypeError, match="epsilon"):
        interpolant_sde(_si_b, _si_score, "large")


def test_bad_sample_sde_calls():
    key, x0 = jax.random.key(0), jnp.zeros((4, 2))
    with pytest.raises(ValueError, match=r"'srk4'.*euler_maruyama.*shark"):
        sample_sde(key, _ou_drift, _ou_diffusion, x0, 1.0, solver="srk4")
    with pytest.raises(ValueError, match="x0 must be a batch-first"):
        sample_sde(key, _ou_drift, _ou_diffusion, jnp.float64(1.0), 1.0)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        sample_sde(0, _ou_drift, _ou_diffusion, x0, 1.0)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        sample_sde(jnp.zeros(2), _ou_drift, _ou_diffusion, x0, 1.0)
    with pytest.raises(ValueError, match="single key"):
        sample_sde(jax.random.split(key, 4), _ou_drift, _ou_diffusion, x0, 1.0)
    with pytest.raises(ValueError, match="t0 < t1"):
        sample_sde(key, _ou_drift, _ou_diffusion, x0, 1.0, t0=1.0, t1=0.0)
    with pytest.raises(ValueError, match="steps"):
        sample_sde(key, _ou_drift, _ou_diffusion, x0, 1.0, steps=0)
    with pytest.raises(ValueError, match="brownian"):
        sample_sde(key, _ou_drift, _ou_diffusion, x0, 1.0, brownian="bridge")
    with pytest.raises(ValueError, match="brownian_tol"):
        sample_sde(key, _ou_drift, _ou_diffusion, x0, 1.0, brownian_tol=1e-3)
    with pytest.raises(TypeError, match="diffusion must be a callable"):
        sample_sde(key, _ou_drift, 0.5, x0, 1.0)
    # Stratonovich solvers need additive noise; the message names the fix.
    with pytest.raises(ValueError, match="depends on x.*euler_maruyama"):
        sample_sde(key, _ou_drift, _gbm_like_diffusion, x0, 1.0, solver="shark")
    with pytest.raises(ValueError, match="broadcastable"):
        sample_sde(key, _ou_drift, lambda t, x, a: jnp.ones(3), x0, 1.0)
    with pytest.raises(TypeError, match="AffinePath"):
        reverse_diffusion_sde(VP, _gaussian_velocity)


def _gbm_like_diffusion(t, x, args):
    return 0.1 * x


def test_legacy_uint32_key_is_accepted():
    x0 = jnp.full((N_OU, 1), X0_OU)  # the OU test's shapes: no new compilation
    theta = jnp.asarray(1.0)
    raw = sample_sde(jax.random.PRNGKey(3), _ou_drift, _ou_diffusion, x0, theta)
    typed = sample_sde(jax.random.key(3), _ou_drift, _ou_diffusion, x0, theta)
    np.testing.assert_array_equal(raw.x, typed.x)
