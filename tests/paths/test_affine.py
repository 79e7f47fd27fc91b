"""Affine paths: endpoints, ut = d xt / dt, prediction conversions, errors."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_SCHEDULES
from hypothesis import given
from hypothesis import strategies as st

from flowlab import paths, schedules

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: the path and its derivatives per schedule and batch shape;
# split over two workers, each worker compiled them.
pytestmark = pytest.mark.xdist_group("affine")

# Tolerances.
# float64 identities: a few roundings of values up to |d_sigma x0| ~ 30 * 3.
F64 = 1e-10
# float32 conversions at well-conditioned times (alpha_t, sigma_t >= 0.1): a handful
# of float32 operations (eps = 1.2e-7) on values up to ~30, divided by coefficients
# >= 0.1; the worst case measured on a grid of times and values is 5e-6.
F32 = 1e-5
TOL = {np.float32: F32, np.float64: F64}

cases = pytest.mark.parametrize("case", ALL_SCHEDULES, ids=str)


def _sample(case, x0, x1, t):
    return paths.AffinePath(case.schedule).sample(None, x0, x1, t)


@cases
@given(pair=helpers.pairs())
def test_endpoints(case, pair):
    x0, x1 = pair
    (a0, s0), (a1, s1) = case.endpoints
    start, end = _sample(case, x0, x1, 0.0), _sample(case, x0, x1, 1.0)
    np.testing.assert_allclose(start.xt, a0 * x1 + s0 * x0, rtol=F64, atol=F64)
    np.testing.assert_allclose(end.xt, a1 * x1 + s1 * x0, rtol=F64, atol=F64)
    if case.exact_endpoints:
        np.testing.assert_allclose(start.xt, x0, rtol=F64, atol=F64)
        np.testing.assert_allclose(end.xt, x1, rtol=F64, atol=F64)


@given(pair=helpers.pairs(), sigma_min=st.floats(0.0, 0.5))
def test_lipman_ot_ends_sigma_min_away_from_x1(pair, sigma_min):
    x0, x1 = pair
    path = paths.AffinePath(schedules.lipman_ot(sigma_min))
    end = path.sample(None, x0, x1, 1.0)
    np.testing.assert_allclose(end.xt, x1 + sigma_min * x0, rtol=F64, atol=F64)


@cases
@given(pair=helpers.pairs(), data=st.data())
def test_ut_is_time_derivative_of_xt(case, pair, data):
    x0, x1 = pair
    t = jnp.float64(data.draw(helpers.times(case.safe)))
    ps = _sample(case, x0, x1, t)
    xt, dxt = jax.jvp(lambda t: _sample(case, x0, x1, t).xt, (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(ps.xt, xt, rtol=F64, atol=F64)
    np.testing.assert_allclose(ps.ut, dxt, rtol=F64, atol=F64)
    # Against the independent closed form as well.
    d_alpha = jax.grad(case.alpha_fn)(t)
    d_sigma = jax.grad(case.sigma_fn)(t)
    np.testing.assert_allclose(ps.ut, d_alpha * x1 + d_sigma * x0, rtol=F64, atol=F64)


@cases
@given(pair=helpers.pairs(), t=st.floats(0.0, 1.0))
def test_sample_fields(case, pair, t):
    x0, x1 = pair
    ps = _sample(case, x0, x1, t)
    assert isinstance(ps, paths.PathSample)
    np.testing.assert_array_equal(ps.x0, x0)
    np.testing.assert_array_equal(ps.x1, x1)
    assert float(ps.t) == t
    assert ps.xt.shape == ps.ut.shape == x0.shape
    assert ps.z is None


@cases
def test_well_conditioned_interval(case):
    # The registry's claim behind the float32 tolerance: alpha_t and sigma_t are at
    # least 0.1 there (alpha increases and sigma decreases, so check the ends).
    lo, hi = case.well_conditioned
    assert float(case.schedule(lo).alpha) >= 0.1 - 1e-12
    assert float(case.schedule(hi).sigma) >= 0.1 - 1e-12


@cases
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_conversions_recover_the_conditional_quantities(case, dtype, data):
    """At (t, xt) of a conditional sample, ut determines x1, x0 and the score."""
    shape = data.draw(helpers.event_shapes)
    x0 = data.draw(helpers.arrays(dtype, shape))
    x1 = data.draw(helpers.arrays(dtype, shape))
    t = dtype(data.draw(helpers.times(case.well_conditioned)))
    path = paths.AffinePath(case.schedule)
    ps = path.sample(None, x0, x1, t)
    xt, ut = ps.xt, ps.ut
    sigma = case.schedule(t).sigma
    tol = TOL[dtype]
    expected = {
        "velocity_to_x1": (path.velocity_to_x1(t, xt, ut), x1),
        "velocity_to_x0": (path.velocity_to_x0(t, xt, ut), x0),
        "velocity_to_epsilon": (path.velocity_to_epsilon(t, xt, ut), x0),
        "velocity_to_score": (path.velocity_to_score(t, xt, ut), -x0 / sigma),
        "x1_to_velocity": (path.x1_to_velocity(t, xt, x1), ut),
        "x0_to_velocity": (path.x0_to_velocity(t, xt, x0), ut),
        "epsilon_to_velocity": (path.epsilon_to_velocity(t, xt, x0), ut),
        "score_to_velocity": (path.score_to_velocity(t, xt, -x0 / sigma), ut),
        "x1_to_x0": (path.x1_to_x0(t, xt, x1), x0),
        "x0_to_x1": (path.x0_to_x1(t, xt, x0), x1),
    }
    for name, (got, want) in expected.items():
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)


@cases
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_conversions_round_trip(case, dtype, data):
    """Any prediction, not only the conditional target, converts back and forth."""
    shape = data.draw(helpers.event_shapes)
    xt = data.draw(helpers.arrays(dtype, shape))
    v = data.draw(helpers.arrays(dtype, shape))
    t = dtype(data.draw(helpers.times(case.well_conditioned)))
    path = paths.AffinePath(case.schedule)
    tol = TOL[dtype]
    round_trips = {
        "x1": path.x1_to_velocity(t, xt, path.velocity_to_x1(t, xt, v)),
        "x0": path.x0_to_velocity(t, xt, path.velocity_to_x0(t, xt, v)),
        "epsilon": path.epsilon_to_velocity(t, xt, path.velocity_to_epsilon(t, xt, v)),
        "score": path.score_to_velocity(t, xt, path.velocity_to_score(t, xt, v)),
    }
    for name, got in round_trips.items():
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, v, rtol=tol, atol=tol, err_msg=name)
    x1 = path.velocity_to_x1(t, xt, v)
    x0 = path.velocity_to_x0(t, xt, v)
    # The two predictions are consistent with xt = alpha x1 + sigma x0.
    np.testing.assert_allclose(path.x1_to_x0(t, xt, x1), x0, rtol=tol, atol=tol)
    np.testing.assert_allclose(path.x0_to_x1(t, xt, x0), x1, rtol=tol, atol=tol)


def test_doc_example():
    path = paths.AffinePath(schedules.cond_ot())
    ps = path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 0.25)
    assert ps.xt.tolist() == [0.25, 0.25]
    assert ps.ut.tolist() == [1.0, 1.0]


@cases
def test_vmap_jit_and_eager_agree(case, key):
    k0, k1, kt = jax.random.split(key, 3)
    x0 = jax.random.normal(k0, (5, 2, 3))
    x1 = jax.random.normal(k1, (5, 2, 3))
    t = jax.random.uniform(kt, (5,), minval=case.safe[0], maxval=case.safe[1])
    path = paths.AffinePath(case.schedule)
    keys = jax.random.split(key, 5)
    batched = jax.vmap(path.sample)(keys, x0, x1, t)
    jitted = jax.jit(jax.vmap(path.sample))(keys, x0, x1, t)
    for i in range(5):
        one = path.sample(keys[i], x0[i], x1[i], t[i])
        for field in ("xt", "ut"):
            want = getattr(one, field)
            got = getattr(batched, field)[i]
            np.testing.assert_allclose(got, want, rtol=F64, atol=F64)
            got = getattr(jitted, field)[i]
            np.testing.assert_allclose(got, want, rtol=F64, atol=F64)


def test_mismatched_shapes_raise():
    path = paths.AffinePath(schedules.cond_ot())
    with pytest.raises(ValueError, match="x0 and x1 must have the same event shape"):
        path.sample(None, jnp.zeros(2), jnp.zeros(3), 0.5)


def test_non_scalar_time_raises():
    path = paths.AffinePath(schedules.cond_ot())
    with pytest.raises(ValueError, match="t must be a scalar"):
        path.sample(None, jnp.zeros((4, 2)), jnp.zeros((4, 2)), jnp.full(4, 0.5))


def test_non_schedule_raises():
    with pytest.raises(TypeError, match="schedule must be a flowlab.schedules"):
        paths.AffinePath(lambda t: (t, 1 - t))
