"""Schedules: closed forms, endpoints, derivatives, SNR inverse, dtypes, errors."""

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_SCHEDULES
from hypothesis import given
from hypothesis import strategies as st

from flowlab import schedules

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: each schedule and its derivatives per input shape; split over
# two workers, each worker compiled them.
pytestmark = pytest.mark.xdist_group("schedules")

# Tolerances.
# float64 identities between closed forms evaluated two ways: a few ulps of O(1-30)
# values, far below this.
F64 = 1e-10
# float32: a handful of roundings of O(1) values (eps32 = 1.2e-7).
F32 = 1e-5

cases = pytest.mark.parametrize("case", ALL_SCHEDULES, ids=str)


@cases
def test_values_match_closed_form(case):
    ts = jnp.linspace(0.0, 1.0, 21)
    out = jax.vmap(case.schedule)(ts)
    np.testing.assert_allclose(out.alpha, case.alpha_fn(ts), rtol=F64, atol=F64)
    np.testing.assert_allclose(out.sigma, case.sigma_fn(ts), rtol=F64, atol=F64)


@cases
def test_endpoint_coefficients(case):
    (a0, s0), (a1, s1) = case.endpoints
    at0, at1 = case.schedule(0.0), case.schedule(1.0)
    np.testing.assert_allclose([at0.alpha, at0.sigma], [a0, s0], rtol=F64, atol=F64)
    np.testing.assert_allclose([at1.alpha, at1.sigma], [a1, s1], rtol=F64, atol=F64)


@cases
@given(data=st.data())
def test_derivatives_equal_grad(case, data):
    t = jnp.float64(data.draw(helpers.times(case.safe)))
    out = case.schedule(t)
    # Against autodiff of the independent closed form ...
    np.testing.assert_allclose(
        out.d_alpha, jax.grad(case.alpha_fn)(t), rtol=F64, atol=F64
    )
    np.testing.assert_allclose(
        out.d_sigma, jax.grad(case.sigma_fn)(t), rtol=F64, atol=F64
    )
    # ... and against autodiff of the schedule's own alpha and sigma.
    grad_alpha = jax.grad(lambda t: case.schedule(t).alpha)(t)
    grad_sigma = jax.grad(lambda t: case.schedule(t).sigma)(t)
    np.testing.assert_allclose(out.d_alpha, grad_alpha, rtol=F64, atol=F64)
    np.testing.assert_allclose(out.d_sigma, grad_sigma, rtol=F64, atol=F64)


@cases
def test_derivatives_singular_only_outside_safe_interval(case):
    # The registry's "safe" interval is the whole of [0, 1] exactly when the
    # derivatives are finite at both ends.
    lo, hi = case.safe
    ends = case.schedule(0.0), case.schedule(1.0)
    for end, inside in zip(ends, (lo == 0.0, hi == 1.0), strict=True):
        finite = bool(jnp.isfinite(end.d_alpha) & jnp.isfinite(end.d_sigma))
        assert finite == inside


@cases
@given(t=st.floats(0.0, 0.999))
def test_snr_inverse(case, t):
    # t < 1: at t = 1 sigma = 0 for most schedules and the SNR is infinite.
    out = case.schedule(jnp.float64(t))
    snr = out.alpha / out.sigma
    np.testing.assert_allclose(case.schedule.snr_inverse(snr), t, rtol=0, atol=1e-9)


@cases
def test_snr_is_increasing(case):
    lo, hi = 0.0, 0.999
    out = jax.vmap(case.schedule)(jnp.linspace(lo, hi, 50))
    assert bool(jnp.all(jnp.diff(out.alpha / out.sigma) > 0))


@cases
def test_float32_time_stays_float32(case):
    out = case.schedule(jnp.float32(0.3))
    assert all(field.dtype == jnp.float32 for field in out)
    ref = case.schedule(jnp.float64(0.3))
    for got, want in zip(out, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=F32, atol=F32)


@cases
def test_jit_vmap_and_eager_agree(case):
    # Schedules are pytrees passed to jit as arguments. Hyperparameters are leaves,
    # so plain jax.jit traces them (the code must not need them as Python floats);
    # a custom Schedule holds Python callables, which need equinox's filter_jit.
    leaves = jax.tree_util.tree_leaves(case.schedule)
    jit = jax.jit if all(map(eqx.is_array_like, leaves)) else eqx.filter_jit
    ts = jnp.linspace(*case.safe, 7)
    batched = jit(jax.vmap(lambda s, t: s(t), in_axes=(None, 0)))(case.schedule, ts)
    for i, t in enumerate(ts):
        for got, want in zip(batched, case.schedule(t), strict=True):
            np.testing.assert_allclose(got[i], want, rtol=F64, atol=F64)
    ts = ts[:-1]  # sigma_1 = 0 (infinite SNR) for most schedules
    out = case.schedule(ts[3])
    inverse = jit(lambda s, snr: s.snr_inverse(snr))(
        case.schedule, out.alpha / out.sigma
    )
    np.testing.assert_allclose(inverse, ts[3], rtol=0, atol=1e-9)


def test_vp_constant_beta_snr_inverse():
    # beta_min == beta_max makes T linear in 1 - t: the quadratic's degenerate case.
    s = schedules.vp(beta_min=2.0, beta_max=2.0)
    for t in (0.0, 0.3, 0.9):
        out = s(t)
        np.testing.assert_allclose(
            s.snr_inverse(out.alpha / out.sigma), t, rtol=0, atol=1e-9
        )


def test_hyperparameters_are_differentiable():
    # d sigma_t / d sigma_max for VE: sigma_t = sigma_min^t sigma_max^(1-t).
    t = 0.25
    grad = jax.grad(lambda smax: schedules.ve(0.01, smax)(t).sigma)(5.0)
    np.testing.assert_allclose(grad, 0.75 * 0.01**t * 5.0 ** (-t), rtol=F64)


@cases
def test_non_scalar_time_raises(case):
    with pytest.raises(ValueError, match="t must be a scalar"):
        case.schedule(jnp.zeros(3))


def test_integer_time_is_promoted():
    out = schedules.cond_ot()(1)
    assert jnp.issubdtype(out.alpha.dtype, jnp.floating)
    assert float(out.alpha) == 1.0


def test_lipman_ot_default_sigma_min_and_snr():
    s = schedules.lipman_ot()
    assert s.sigma_min == 1e-4
    np.testing.assert_allclose(s(1.0).sigma, 1e-4, rtol=F64)


def test_get_builds_each_named_schedule():
    assert isinstance(schedules.get("cond_ot"), schedules.CondOT)
    assert isinstance(schedules.get("lipman_ot", sigma_min=0.1), schedules.LipmanOT)
    assert schedules.get("polynomial", n=3).n == 3
    assert isinstance(schedules.get("cosine"), schedules.Cosine)
    assert isinstance(schedules.get("linear_vp"), schedules.LinearVP)
    assert schedules.get("vp", beta_max=10.0).beta_max == 10.0
    assert schedules.get("ve", sigma_min=0.1, sigma_max=2.0).sigma_max == 2.0


def test_get_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        schedules.get("linear")


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: schedules.lipman_ot(-0.1), "sigma_min"),
        (lambda: schedules.lipman_ot(1.0), "sigma_min"),
        (lambda: schedules.polynomial(0.0), "n must be >= 1"),
        (lambda: schedules.polynomial(-1.0), "n must be >= 1"),
        (lambda: schedules.polynomial(0.5), "infinite at t = 0"),
        (lambda: schedules.vp(beta_min=0.0), "beta_min"),
        (lambda: schedules.vp(beta_min=5.0, beta_max=1.0), "beta_min <= beta_max"),
        (lambda: schedules.ve(-0.01, 5.0), "sigma_min"),
        (lambda: schedules.ve(1.0, 0.5), "sigma_min < sigma_max"),
    ],
)
def test_bad_hyperparameters_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_custom_schedule_needs_callables():
    with pytest.raises(TypeError, match="alpha_fn"):
        schedules.Schedule(1.0, lambda t: 1 - t)
    with pytest.raises(TypeError, match="sigma_fn"):
        schedules.Schedule(lambda t: t, None)


# ---------------------------------------------------------------------------------
# diffusion_noise_level: closed forms against the generic formula
# ---------------------------------------------------------------------------------

# Away from the singular ends: alpha_0 = 0 for most schedules (the noise level is
# infinite there) and d_sigma diverges at t = 1 for linear_vp and vp.
NOISE_LEVEL_TIMES = jnp.linspace(0.05, 0.95, 19)


def _generic_noise_level(alpha_fn, sigma_fn, t):
    """sigma^2 d_alpha / alpha - sigma d_sigma, derivatives by autodiff."""
    alpha, sigma = alpha_fn(t), sigma_fn(t)
    d_alpha, d_sigma = jax.grad(alpha_fn)(t), jax.grad(sigma_fn)(t)
    return sigma**2 * d_alpha / alpha - sigma * d_sigma


@cases
def test_diffusion_noise_level_is_the_generic_formula(case):
    # The closed form of each schedule against the formula from the test's own
    # closed forms (autodiff derivatives). Both are sums of positive terms (no
    # cancellation) of size at most ~160 (ve: log(500) sigma^2 at sigma <= 5), each
    # a few float64 roundings: F64 is far above the ~1e-15 relative error.
    got = jax.vmap(case.schedule.diffusion_noise_level)(NOISE_LEVEL_TIMES)
    want = jax.vmap(lambda t: _generic_noise_level(case.alpha_fn, case.sigma_fn, t))(
        NOISE_LEVEL_TIMES
    )
    assert got.shape == NOISE_LEVEL_TIMES.shape
    assert bool(jnp.all(want > 0))  # a noise level: these schedules have one
    np.testing.assert_allclose(got, want, rtol=F64, atol=0)


@cases
def test_diffusion_noise_level_float32_and_jit(case):
    t = jnp.float32(0.3)
    got = case.schedule.diffusion_noise_level(t)
    assert got.dtype == jnp.float32
    want = case.schedule.diffusion_noise_level(jnp.float64(0.3))
    # float32: a handful of roundings of O(1-30) values; relative F32.
    np.testing.assert_allclose(got, want, rtol=F32)
    jitted = eqx.filter_jit(lambda s, t: s.diffusion_noise_level(t))(
        case.schedule, jnp.float64(0.3)
    )
    np.testing.assert_allclose(jitted, want, rtol=F64)
    with pytest.raises(ValueError, match="t must be a scalar"):
        case.schedule.diffusion_noise_level(jnp.zeros(3))


def test_diffusion_noise_level_closed_forms_at_the_ends():
    # Finite where the generic formula is 0 * inf: vp and linear_vp at t = 1.
    vp = schedules.vp(beta_min=0.1, beta_max=20.0)
    np.testing.assert_allclose(vp.diffusion_noise_level(1.0), 0.05, rtol=F64)
    np.testing.assert_allclose(vp.diffusion_noise_level(0.0), 10.0, rtol=F64)
    s = vp(1.0)
    assert not bool(jnp.isfinite(s.sigma * s.d_sigma))
    np.testing.assert_allclose(schedules.linear_vp().diffusion_noise_level(1), 1.0)
    np.testing.assert_allclose(schedules.cond_ot().diffusion_noise_level(1.0), 0.0)
    # Infinite where alpha_0 = 0.
    assert schedules.cond_ot().diffusion_noise_level(0.0) == jnp.inf


def test_diffusion_noise_level_of_a_custom_schedule_is_the_formula():
    s = schedules.Schedule(lambda t: t**2, lambda t: 1 - t**2)
    for t in (0.2, 0.5, 0.9):
        # sigma^2 * 2t / t^2 + sigma * 2t = 2 sigma (sigma / t + t) = 2 (1 - t^2) / t
        want = 2 * (1 - t**2) / t
        np.testing.assert_allclose(s.diffusion_noise_level(t), want, rtol=F64)


def test_a_schedule_without_a_noise_level_is_abstract():
    # A subclass of AbstractSchedule implements all three abstract methods.
    class NoNoiseLevel(schedules.AbstractSchedule):
        def __call__(self, t):
            return schedules.ScheduleOutput(t, 1 - t, 1.0, -1.0)

        def snr_inverse(self, snr):
            return snr / (1 + snr)

    with pytest.raises(TypeError, match="diffusion_noise_level"):
        NoNoiseLevel()


# ---------------------------------------------------------------------------------
# kappa_inverse: the time at which alpha_t equals kappa
# ---------------------------------------------------------------------------------

# alpha_t increases on every schedule but VE (alpha_t = 1), which has no inverse.
_KAPPA_CASES = [c for c in ALL_SCHEDULES if c.name != "ve"]
kappa_cases = pytest.mark.parametrize("case", _KAPPA_CASES, ids=str)


@kappa_cases
@given(u=st.floats(0.0, 1.0))
def test_kappa_inverse_round_trip(case, u):
    # kappa anywhere in [alpha_0, alpha_1] (alpha_0 = e^-5.025 for vp). The forward
    # direction alpha(kappa_inverse(kappa)) is well conditioned everywhere (|d_alpha|
    # <= 3 times a few ulps of t; the closed forms invert exactly up to rounding,
    # the bisection to 2^-60): F64 is far above the ~1e-15 error.
    (a0, _), (a1, _) = case.endpoints
    kappa = jnp.float64(a0 + u * (a1 - a0))
    t = case.schedule.kappa_inverse(kappa)
    assert t.shape == ()
    assert -F64 <= float(t) <= 1.0 + F64  # in [0, 1] up to rounding at the ends
    np.testing.assert_allclose(case.alpha_fn(t), kappa, rtol=0, atol=F64)
    np.testing.assert_allclose(case.schedule(t).alpha, kappa, rtol=0, atol=F64)


@kappa_cases
def test_kappa_inverse_at_the_ends_and_in_between(case):
    # The inverse direction, where alpha_t has a derivative bounded away from 0
    # (d_alpha >= 0.07 on [0.05, 0.95] for all of these): |dt| <= |d alpha| / 0.07,
    # so a few ulps of kappa give ~1e-14 in t; at the ends the closed forms give
    # 0 and 1 up to rounding (vp: T = -2 log(alpha_0) = T(0) to a few ulps).
    (a0, _), (a1, _) = case.endpoints
    np.testing.assert_allclose(case.schedule.kappa_inverse(a0), 0.0, atol=F64)
    np.testing.assert_allclose(case.schedule.kappa_inverse(a1), 1.0, atol=F64)
    ts = jnp.linspace(0.05, 0.95, 7)
    got = jax.vmap(case.schedule.kappa_inverse)(case.alpha_fn(ts))
    np.testing.assert_allclose(got, ts, rtol=0, atol=F64)


@kappa_cases
def test_kappa_inverse_float32_and_jit(case):
    kappa = 0.4
    got = case.schedule.kappa_inverse(jnp.float32(kappa))
    assert got.dtype == jnp.float32
    want = case.schedule.kappa_inverse(jnp.float64(kappa))
    np.testing.assert_allclose(got, want, rtol=F32)
    jitted = eqx.filter_jit(lambda s, k: s.kappa_inverse(k))(
        case.schedule, jnp.float64(kappa)
    )
    np.testing.assert_allclose(jitted, want, rtol=0, atol=F64)


def test_kappa_inverse_of_ve_raises_and_points_to_snr_inverse():
    with pytest.raises(ValueError, match="alpha_t = 1 at every t.*snr_inverse"):
        schedules.ve().kappa_inverse(0.5)


def test_a_schedule_without_kappa_inverse_is_abstract():
    class NoKappaInverse(schedules.AbstractSchedule):
        def __call__(self, t):
            return schedules.ScheduleOutput(t, 1 - t, 1.0, -1.0)

        def snr_inverse(self, snr):
            return snr / (1 + snr)

        def diffusion_noise_level(self, t):
            return (1 - t) / t

    with pytest.raises(TypeError, match="kappa_inverse"):
        NoKappaInverse()


def test_bisect_time_finds_the_root_of_an_increasing_condition():
    like = jnp.zeros((3,), jnp.float64)
    roots = jnp.array([0.0, 0.3, 0.999])
    t = schedules.bisect_time(lambda u: u**2 > roots**2, like)
    assert t.shape == (3,)
    assert t.dtype == jnp.float64
    np.testing.assert_allclose(t, roots, atol=1e-15)
