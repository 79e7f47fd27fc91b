"""The constant-noise straight path: endpoints, ut = d mean / dt, noise, errors."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowlab import losses, paths, registry, schedules
from flowlab.config import ConfigError, load_config
from flowlab.experiment import build

# float64 identities: a few roundings of values up to ~3 (|x| <= 3, sigma <= 2).
F64 = 1e-10


def _mean(x0, x1, t):
    return (1 - t) * x0 + t * x1


@given(pair=helpers.pairs(), sigma=st.floats(0.0, 2.0), data=st.data())
def test_interpolate_is_mean_plus_sigma_z(pair, sigma, data):
    x0, x1 = pair
    z = data.draw(helpers.arrays(np.float64, x0.shape))
    t = data.draw(helpers.times((0.0, 1.0)))
    ps = paths.ConstantNoisePath(sigma).interpolate(x0, x1, z, t)
    np.testing.assert_allclose(ps.xt, _mean(x0, x1, t) + sigma * z, rtol=F64, atol=F64)
    np.testing.assert_array_equal(ps.z, z)
    np.testing.assert_array_equal(ps.x0, x0)
    np.testing.assert_array_equal(ps.x1, x1)
    assert ps.xt.shape == ps.ut.shape == x0.shape


@given(pair=helpers.pairs(), sigma=st.floats(0.0, 2.0))
def test_endpoint_means_are_x0_and_x1(pair, sigma):
    # z = 0 gives the conditional mean: x0 at t = 0 and x1 at t = 1.
    x0, x1 = pair
    path = paths.ConstantNoisePath(sigma)
    zero = np.zeros_like(x0)
    np.testing.assert_allclose(path.interpolate(x0, x1, zero, 0.0).xt, x0, atol=F64)
    np.testing.assert_allclose(path.interpolate(x0, x1, zero, 1.0).xt, x1, atol=F64)


@given(pair=helpers.pairs(), sigma=st.floats(0.0, 2.0), data=st.data())
def test_ut_is_time_derivative_of_the_mean(pair, sigma, data):
    x0, x1 = pair
    z = data.draw(helpers.arrays(np.float64, x0.shape))
    t = jnp.float64(data.draw(helpers.times((0.0, 1.0))))
    path = paths.ConstantNoisePath(sigma)
    ps = path.interpolate(x0, x1, z, t)
    _, d_mean = jax.jvp(lambda s: _mean(x0, x1, s), (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(ps.ut, d_mean, rtol=F64, atol=F64)
    # z is held fixed along the path, so ut is d xt / dt as well.
    _, d_xt = jax.jvp(
        lambda s: path.interpolate(x0, x1, z, s).xt, (t,), (jnp.ones_like(t),)
    )
    np.testing.assert_allclose(ps.ut, d_xt, rtol=F64, atol=F64)
    np.testing.assert_allclose(ps.ut, x1 - x0, rtol=F64, atol=F64)


def test_noise_std_by_monte_carlo(key):
    # n = 200,000 draws at sigma = 0.3 around a fixed pair at t = 0.4: the sample
    # mean has standard error 0.3 / sqrt(n) = 6.7e-4 per coordinate, the sample std
    # about 0.3 / sqrt(2 n) = 4.7e-4; 5e-3 is over 7 standard errors, and the key is
    # fixed, so the check is deterministic.
    n, sigma, t = 200_000, 0.3, 0.4
    x0, x1 = jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5])
    path = paths.ConstantNoisePath(sigma)
    ps = jax.vmap(path.sample, in_axes=(0, None, None, None))(
        jax.random.split(key, n), x0, x1, t
    )
    np.testing.assert_allclose(ps.xt.mean(0), _mean(x0, x1, t), atol=5e-3)
    np.testing.assert_allclose(ps.xt.std(0), [sigma, sigma], atol=5e-3)
    np.testing.assert_allclose(np.corrcoef(ps.xt.T)[0, 1], 0.0, atol=5e-3)
    np.testing.assert_allclose(ps.xt, _mean(x0, x1, t)[None] + sigma * ps.z, atol=F64)


def test_same_key_same_noise_and_float32_stays_float32(key):
    path = paths.ConstantNoisePath(0.1)
    x0 = jnp.zeros(3, jnp.float32)
    x1 = jnp.ones(3, jnp.float32)
    a = path.sample(key, x0, x1, jnp.float32(0.5))
    b = path.sample(key, x0, x1, jnp.float32(0.5))
    np.testing.assert_array_equal(a.xt, b.xt)
    assert a.xt.dtype == a.ut.dtype == a.z.dtype == jnp.float32


def test_sigma_zero_is_cond_ot_and_needs_no_key():
    x0, x1 = jnp.array([1.0, 2.0]), jnp.array([-1.0, 0.0])
    ps = paths.ConstantNoisePath(0.0).sample(None, x0, x1, 0.25)
    np.testing.assert_allclose(ps.xt, _mean(x0, x1, 0.25), atol=F64)


def test_traced_sigma_under_jit(key):
    x0, x1 = jnp.zeros(2), jnp.ones(2)

    @jax.jit
    def xt(sigma):
        return paths.ConstantNoisePath(sigma).sample(key, x0, x1, 0.5).xt

    z = paths.ConstantNoisePath(1.0).sample(key, x0, x1, 0.5).z
    np.testing.assert_allclose(xt(0.2), 0.5 + 0.2 * z, atol=F64)


def test_works_with_the_velocity_loss(key):
    loss = losses.FlowMatchingLoss(paths.ConstantNoisePath(0.1))
    x0 = jax.random.normal(key, (8, 2))
    x1 = x0 + 1.0
    t, ps, target = loss.prepare(jax.random.key(1), x0, x1)
    np.testing.assert_allclose(target, x1 - x0, atol=F64)
    assert t.shape == (8,)
    assert ps.z.shape == (8, 2)


@pytest.mark.parametrize("sigma", [-0.1, -1, float("nan")])
def test_bad_sigma_raises(sigma):
    with pytest.raises(ValueError, match="sigma must be a number >= 0"):
        paths.ConstantNoisePath(sigma)


def test_non_scalar_sigma_raises():
    with pytest.raises(ValueError, match="sigma must be a scalar"):
        paths.ConstantNoisePath(jnp.ones(2))


def test_missing_key_and_bad_shapes_raise():
    path = paths.ConstantNoisePath(0.1)
    with pytest.raises(ValueError, match="pass a PRNG key"):
        path.sample(None, jnp.zeros(2), jnp.ones(2), 0.5)
    with pytest.raises(ValueError, match="same event shape"):
        path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(3), 0.5)
    with pytest.raises(ValueError, match="t must be a scalar"):
        path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), jnp.ones(2))
    with pytest.raises(ValueError, match="z must have the event shape"):
        path.interpolate(jnp.zeros(2), jnp.ones(2), jnp.zeros(3), 0.5)


# ---------------------------------------------------------------------------------
# Any schedule: x_t = alpha_t x1 + sigma_t x0 + sigma z, u_t = d/dt of the mean.
# ---------------------------------------------------------------------------------


def _affine_mean(case, x0, x1, t):
    # The schedule's closed form from tests/helpers.py, typed in independently.
    return case.alpha_fn(t) * x1 + case.sigma_fn(t) * x0


@pytest.mark.parametrize("case", helpers.ALL_SCHEDULES, ids=str)
@given(pair=helpers.pairs(), sigma=st.floats(0.0, 2.0), data=st.data())
def test_scheduled_mean_and_velocity(case, pair, sigma, data):
    # Tolerances: F64 on xt; ut on the schedule's safe interval, where the jvp of
    # the closed form is finite. vp's d_sigma grows like 1 / sqrt(1 - t) ~ 30 near
    # 1 - 1e-3, times |x| <= 3: still a few roundings of values <~ 100, so 1e-9.
    x0, x1 = pair
    z = data.draw(helpers.arrays(np.float64, x0.shape))
    t = jnp.float64(data.draw(helpers.times(case.safe)))
    path = paths.ConstantNoisePath(sigma, case.schedule)
    ps = path.interpolate(x0, x1, z, t)
    expected = _affine_mean(case, x0, x1, t) + sigma * z
    np.testing.assert_allclose(ps.xt, expected, rtol=F64, atol=F64)
    _, d_mean = jax.jvp(
        lambda s: _affine_mean(case, x0, x1, s), (t,), (jnp.ones_like(t),)
    )
    np.testing.assert_allclose(ps.ut, d_mean, rtol=1e-9, atol=1e-9)
    _, d_xt = jax.jvp(
        lambda s: path.interpolate(x0, x1, z, s).xt, (t,), (jnp.ones_like(t),)
    )
    np.testing.assert_allclose(ps.ut, d_xt, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "case", [c for c in helpers.ALL_SCHEDULES if c.exact_endpoints], ids=str
)
@given(pair=helpers.pairs(), sigma=st.floats(0.0, 2.0), data=st.data())
def test_endpoints_are_the_pair_plus_sigma_z(case, pair, sigma, data):
    # Neither end is a point: x_0 = x0 + sigma z and x_1 = x1 + sigma z.
    x0, x1 = pair
    z = data.draw(helpers.arrays(np.float64, x0.shape))
    path = paths.ConstantNoisePath(sigma, case.schedule)
    xt0 = path.interpolate(x0, x1, z, 0.0).xt
    xt1 = path.interpolate(x0, x1, z, 1.0).xt
    np.testing.assert_allclose(xt0, x0 + sigma * z, rtol=F64, atol=F64)
    np.testing.assert_allclose(xt1, x1 + sigma * z, rtol=F64, atol=F64)


@given(pair=helpers.pairs(), sigma=st.floats(0.0, 2.0), data=st.data())
def test_cond_ot_default_is_the_old_straight_path_exactly(pair, sigma, data):
    # The straight path as it was written before the schedule argument existed:
    # the default and an explicit cond_ot() give it bit for bit.
    x0, x1 = pair
    z = data.draw(helpers.arrays(np.float64, x0.shape))
    t = jnp.float64(data.draw(helpers.times((0.0, 1.0))))
    old_xt, old_ut = (1 - t) * x0 + t * x1 + sigma * z, x1 - x0
    for path in (
        paths.ConstantNoisePath(sigma),
        paths.ConstantNoisePath(sigma, schedules.cond_ot()),
        paths.ConstantNoisePath(sigma=sigma, schedule=schedules.cond_ot()),
    ):
        ps = path.interpolate(x0, x1, z, t)
        np.testing.assert_array_equal(ps.xt, old_xt)
        np.testing.assert_array_equal(ps.ut, old_ut)
    assert paths.ConstantNoisePath(sigma) == paths.ConstantNoisePath(
        sigma, schedules.cond_ot()
    )


@given(pair=helpers.pairs(), data=st.data())
def test_vp_cfm_closed_form(pair, data):
    # torchcfm's formulas typed in: mu_t = cos(pi t/2) x0 + sin(pi t/2) x1 and
    # u_t = pi/2 (cos(pi t/2) x1 - sin(pi t/2) x0); u_0 = pi/2 x1, u_1 = -pi/2 x0.
    x0, x1 = pair
    z = data.draw(helpers.arrays(np.float64, x0.shape))
    t = data.draw(helpers.times((0.0, 1.0)))
    path = paths.ConstantNoisePath(0.1, schedules.cosine())
    ps = path.interpolate(x0, x1, z, t)
    c, s = np.cos(np.pi * t / 2), np.sin(np.pi * t / 2)
    np.testing.assert_allclose(ps.xt, c * x0 + s * x1 + 0.1 * z, atol=F64)
    np.testing.assert_allclose(ps.ut, np.pi / 2 * (c * x1 - s * x0), atol=F64)
    np.testing.assert_allclose(
        path.interpolate(x0, x1, z, 0.0).ut, np.pi / 2 * x1, atol=F64
    )
    np.testing.assert_allclose(
        path.interpolate(x0, x1, z, 1.0).ut, -np.pi / 2 * x0, atol=F64
    )


def test_registry_and_config_build_the_paths():
    assert registry.build("path", "vp_cfm", sigma=0.2) == paths.ConstantNoisePath(
        0.2, schedules.cosine()
    )
    assert registry.build("path", "vp_cfm") == paths.ConstantNoisePath(
        0.1, schedules.cosine()
    )
    built = registry.build("path", "constant_noise", schedule=schedules.polynomial(2))
    assert built == paths.ConstantNoisePath(0.1, schedules.polynomial(2))
    assert registry.build("path", "constant_noise") == paths.ConstantNoisePath(0.1)
    for name, schedule in (("constant_noise", schedules.cond_ot()), ("vp_cfm", None)):
        config = load_config(None, [f"path.name={name}", "path.sigma=0.05"])
        path = build(config).loss.path
        assert path == paths.ConstantNoisePath(0.05, schedule or schedules.cosine())


def test_bad_schedule_and_bad_config_sigma_raise():
    with pytest.raises(TypeError, match="schedule"):
        paths.ConstantNoisePath(0.1, "cosine")
    config = load_config(None, ["path.name=vp_cfm", "path.sigma=-1.0"])
    with pytest.raises(ConfigError, match=r"path\.name: sigma must be a number >= 0"):
        build(config)


# ---------------------------------------------------------------------------------
# torchcfm on the same t, x0, x1 and noise.
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "schedule"),
    [
        ("ConditionalFlowMatcher", schedules.cond_ot()),
        ("VariancePreservingConditionalFlowMatcher", schedules.cosine()),
    ],
)
def test_matches_torchcfm(matcher, schedule):
    # torchcfm draws its own noise; return_noise=True hands it back, and flowlab
    # interpolates with that z. Both sides are float64 on the same inputs, so the
    # only differences are roundings of sin/cos and products of values <~ 5: 1e-12.
    torch = pytest.importorskip("torch")
    cfm = pytest.importorskip("torchcfm.conditional_flow_matching")
    torch.manual_seed(0)
    n, d, sigma = 64, 3, 0.1
    x0 = torch.randn(n, d, dtype=torch.float64)
    x1 = torch.randn(n, d, dtype=torch.float64) + 2.0
    t = torch.rand(n, dtype=torch.float64)
    t[:2] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # both ends as well
    fm = getattr(cfm, matcher)(sigma=sigma)
    t_out, xt, ut, eps = fm.sample_location_and_conditional_flow(
        x0, x1, t, return_noise=True
    )
    ours = jax.vmap(paths.ConstantNoisePath(sigma, schedule).interpolate)(
        *(jnp.asarray(a.numpy()) for a in (x0, x1, eps, t_out))
    )
    np.testing.assert_allclose(ours.xt, xt.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.ut, ut.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", helpers.ALL_SCHEDULES, ids=str)
def test_sigma_zero_is_the_affine_path(case, key):
    # Tolerances: the same products in another order: F64.
    x0, x1 = jax.random.normal(key, (2, 3))
    t = jnp.float64(0.5 * sum(case.safe))
    ours = paths.ConstantNoisePath(0.0, case.schedule).sample(None, x0, x1, t)
    affine = paths.AffinePath(case.schedule).sample(None, x0, x1, t)
    np.testing.assert_allclose(ours.xt, affine.xt, rtol=F64, atol=F64)
    np.testing.assert_allclose(ours.ut, affine.ut, rtol=F64, atol=F64)
