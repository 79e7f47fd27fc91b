"""Flow maps and their losses: identities that hold for any parameters or exactly.

- `X(t, t, x) = x` and `d/ds X(t, s, x)|_{s=t} = velocity` (by `jax.jvp`) for every
  map, at random parameters;
- each loss is zero (or O(step^2)) on the exact flow map of Gaussian data, which
  checks the regression each loss writes against the closed form;
- the sampler's jumps, times and trajectory; reflow's pairs are the teacher's ODE.
"""

import gaussian_maps as gm
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowlab import data, flowmaps, models, sample_ode
from flowlab.paths import AffinePath
from flowlab.schedules import cond_ot

TIMES = st.floats(0.0, 1.0)


@pytest.fixture(scope="module")
def random_maps():
    """An `AverageVelocityMap` of a random MLP and an `EulerMap` of another."""
    net = models.MLP(width=32, depth=2, time_embedding="sinusoidal")
    fmap, _, params = flowmaps.init_flow_map(net, jax.random.key(0), jnp.zeros(3))
    v_fn, v_params = models.init_model(net, jax.random.key(1), jnp.zeros(3))
    return [(fmap, params), (flowmaps.EulerMap(v_fn), v_params)]


@given(t=TIMES, seed=st.integers(0, 2**16))
def test_every_map_is_the_identity_at_equal_times(random_maps, t, seed):
    x = jax.random.normal(jax.random.key(seed), (3,))
    for fmap, params in random_maps:
        np.testing.assert_array_equal(fmap(params, t, t, x), x)


@given(t=TIMES, seed=st.integers(0, 2**16))
def test_the_s_derivative_at_s_equal_t_is_the_velocity(random_maps, t, seed):
    x = jax.random.normal(jax.random.key(seed), (3,))
    for fmap, params in random_maps:
        end = lambda s, fmap=fmap, params=params: fmap(params, t, s, x)  # noqa: E731
        _, d_s = jax.jvp(end, (jnp.asarray(t),), (1.0,))
        np.testing.assert_allclose(d_s, fmap.velocity(params, t, x), atol=1e-12)


def test_the_network_reads_the_start_time_and_the_gap():
    seen = []

    def model_fn(params, times, x, cond):
        seen.append(times)
        return x

    fmap = flowmaps.AverageVelocityMap(model_fn)
    out = fmap(None, 0.25, 0.75, jnp.ones(2))
    np.testing.assert_allclose(seen[0], [0.25, 0.5])
    np.testing.assert_allclose(out, 1.5)  # x + (s - t) u with u = x


def test_the_exact_gaussian_map_is_a_flow_of_its_velocity():
    """The test's own closed form: identity, derivative and composition."""
    fmap = flowmaps.AverageVelocityMap(gm.exact_model_fn)
    x = jnp.array([0.3, -1.2])
    _, d_s = jax.jvp(lambda s: fmap(None, 0.2, s, x), (jnp.asarray(0.6),), (1.0,))
    np.testing.assert_allclose(
        d_s, gm.exact_velocity(0.6, fmap(None, 0.2, 0.6, x)), rtol=1e-10
    )
    np.testing.assert_allclose(
        fmap(None, 0.5, 0.9, fmap(None, 0.1, 0.5, x)), fmap(None, 0.1, 0.9, x)
    )
    solved = sample_ode(gm.exact_teacher_field, x[None], solver="dopri5", t0=0.1)
    np.testing.assert_allclose(solved.x[0], fmap(None, 0.1, 1.0, x), rtol=1e-5)


def _batch(n=64, seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.normal(k0, (n, 2))
    x1 = gm.MU[None] + gm.SD * jax.random.normal(k1, (n, 2))
    return x0, x1


EXACT_TEACHER = flowmaps.Teacher(gm.exact_teacher_field)


@pytest.mark.parametrize(
    ("loss", "atol"),
    [
        (flowmaps.LagrangianDistillation(EXACT_TEACHER), 1e-20),
        (flowmaps.EulerianDistillation(EXACT_TEACHER), 1e-20),
        # an Euler step of the teacher: O(1/N^2) per row, squared
        (flowmaps.ConsistencyDistillation(EXACT_TEACHER, steps=1000), 1e-11),
        (flowmaps.ConsistencyDistillation(EXACT_TEACHER, steps=100), 1e-7),
    ],
    ids=["lagrangian", "eulerian", "consistency-1000", "consistency-100"],
)
def test_distillation_losses_vanish_on_the_exact_map(loss, atol):
    x0, x1 = _batch()
    t, ps, target = loss.prepare(jax.random.key(1), x0, x1)
    value, aux = loss.regress(gm.exact_model_fn, None, t, ps.xt, target)
    assert aux.per_sample.shape == (64,)
    assert float(value) <= atol
    if isinstance(loss, flowmaps.ConsistencyDistillation):  # not zero: Euler's error
        assert float(value) > atol / 1e3


def test_the_consistency_error_shrinks_as_the_grid_refines():
    x0, x1 = _batch(256)
    values = []
    for steps in (10, 100):
        loss = flowmaps.ConsistencyDistillation(EXACT_TEACHER, steps=steps)
        t, ps, target = loss.prepare(jax.random.key(1), x0, x1)
        values.append(float(loss.regress(gm.exact_model_fn, None, t, ps.xt, target)[0]))
    assert values[0] / 3e4 < values[1] < values[0] / 3e3  # (1/N^2)^2: 1e4 x


def test_mean_flow_identity_holds_for_the_exact_map_and_marginal_velocity():
    """With the marginal velocity in place of the conditional one, MeanFlow's
    target u = v + (s - t) du/dt is exact, so its error vanishes."""
    loss = flowmaps.MeanFlowLoss(diagonal=0.25)
    x0, x1 = _batch()
    t, ps, _ = loss.prepare(jax.random.key(2), x0, x1)
    assert bool(jnp.any(t.s > t.t))
    assert bool(jnp.any(t.s == t.t))
    v = jax.vmap(gm.exact_velocity)(t.t, ps.xt)
    value, _ = loss.regress(gm.exact_model_fn, None, t, ps.xt, v)
    assert float(value) < 1e-20
    noisy, _ = loss.regress(gm.exact_model_fn, None, t, ps.xt, ps.ut)
    assert float(noisy) > 1e-2  # the conditional velocity is a noisy target


def test_shortcut_targets_hold_for_the_exact_map():
    """Two exact jumps of d average to the exact jump of 2d, except the smallest
    step, whose queries read the velocity (an O(d) Euler error)."""
    loss = flowmaps.ShortcutLoss(base_steps=16, self_consistency=1.0)
    x0, x1 = _batch(256)
    t, ps, target = loss.prepare(jax.random.key(3), x0, x1)
    d = np.asarray(t.m - t.t)
    assert set(np.round(d * 16).astype(int)) == {1, 2, 4, 8}
    assert np.all(np.asarray(t.s) <= 1 + 1e-12)
    np.testing.assert_allclose(
        np.asarray(t.t) / (2 * d), np.round(np.asarray(t.t) / (2 * d))
    )
    _, aux = loss.regress(gm.exact_model_fn, None, t, ps.xt, target)
    per_row = np.asarray(aux.per_sample)
    assert per_row[d * 16 > 1.5].max() < 1e-20
    assert per_row[d * 16 < 1.5].max() > 1e-8


def test_shortcut_flow_matching_rows_regress_the_conditional_velocity():
    loss = flowmaps.ShortcutLoss(self_consistency=0.0)
    x0, x1 = _batch()
    t, ps, target = loss.prepare(jax.random.key(4), x0, x1)
    np.testing.assert_array_equal(t.s, t.t)
    np.testing.assert_allclose(target, x1 - x0)


def test_consistency_training_uses_the_same_pair_one_step_on():
    loss = flowmaps.ConsistencyTraining(steps=8, data_end=0.5)
    x0, x1 = _batch()
    t, ps, nxt = loss.prepare(jax.random.key(5), x0, x1)
    np.testing.assert_allclose(t.m - t.t, 1 / 8, rtol=1e-12)
    np.testing.assert_allclose(nxt, t.m[:, None] * x1 + (1 - t.m[:, None]) * x0)
    assert np.all(np.asarray(t.s) >= np.asarray(t.m))
    assert 0 < float(jnp.mean(t.s == 1)) < 1


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_sample_flow_map_jumps_through_equal_times(steps):
    fmap = flowmaps.AverageVelocityMap(gm.exact_model_fn)
    x0 = jax.random.normal(jax.random.key(0), (50, 2))
    out = flowmaps.sample_flow_map(fmap, None, x0, steps=steps, save_trajectory=True)
    assert out.nfe == steps
    assert out.trajectory.shape == (steps + 1, 50, 2)
    np.testing.assert_allclose(out.ts, np.linspace(0, 1, steps + 1))
    np.testing.assert_allclose(out.x, gm.MU[None] + gm.SD * x0, rtol=1e-10)  # exact map
    np.testing.assert_allclose(out.trajectory[0], x0)


def test_sample_flow_map_inverts_with_decreasing_times():
    fmap = flowmaps.AverageVelocityMap(gm.exact_model_fn)
    x1 = gm.MU[None] + gm.SD * jax.random.normal(jax.random.key(0), (20, 2))
    out = flowmaps.sample_flow_map(fmap, None, x1, times=[1.0, 0.5, 0.0])
    np.testing.assert_allclose(out.x, (x1 - gm.MU[None]) / gm.SD, rtol=1e-9)


def test_a_flow_map_velocity_field_integrates_like_a_velocity_model():
    fmap = flowmaps.AverageVelocityMap(gm.exact_model_fn)
    x0 = jax.random.normal(jax.random.key(1), (10, 2))
    out = sample_ode(fmap.velocity_field(), x0, None, solver="dopri5")
    np.testing.assert_allclose(
        out.x, gm.MU[None] + gm.SD * x0, atol=2e-4
    )  # dopri5 1e-5


def test_reflow_pairs_are_the_teachers_ode_endpoints():
    src = data.Gaussian(2)
    pairs = flowmaps.reflow_pairs(
        jax.random.key(0), EXACT_TEACHER, src, 40, solver="dopri5", chunk=16
    )
    assert pairs.shape == (40, 2, 2)
    np.testing.assert_allclose(pairs[:, 0], src.sample(jax.random.key(0), 40))
    np.testing.assert_allclose(
        pairs[:, 1], gm.MU[None] + gm.SD * pairs[:, 0], atol=2e-4
    )
    loss = flowmaps.ReflowLoss()
    x0, x1 = loss.marginals(None, None, pairs)
    np.testing.assert_array_equal(x1, pairs[:, 1])


def test_vector_times_embed_each_time():
    net = models.MLP(width=16, depth=1, time_embedding="sinusoidal", time_dim=8)
    _, _, params = flowmaps.init_flow_map(net, jax.random.key(0), jnp.zeros(2))
    assert params["Dense_0"]["kernel"].shape == (2 + 2 * 8, 16)
    unet = models.UNet(width=8, channel_mult=(1, 2), groups=4, time_dim=8)
    fmap, _, params = flowmaps.init_flow_map(unet, jax.random.key(0), jnp.zeros(64))
    assert fmap(params, 0.2, 0.7, jnp.ones(64)).shape == (64,)
    emb = models.sinusoidal_embedding(jnp.array([0.3, 0.1]), 8)
    np.testing.assert_allclose(emb[:8], models.sinusoidal_embedding(0.3, 8))


def test_path_argument_is_a_cond_ot_path_by_default():
    assert flowmaps.MeanFlowLoss().path == AffinePath(cond_ot())


def test_a_flow_map_loss_is_called_on_a_batch_like_flow_matching():
    loss = flowmaps.LagrangianDistillation(EXACT_TEACHER)
    x0, x1 = _batch()
    value, aux = loss(gm.exact_model_fn, None, jax.random.key(0), x0, x1)
    t, ps, target = loss.prepare(jax.random.key(0), x0, x1)
    assert target is None  # the Lagrangian error reads the teacher at the ends only
    assert float(value) == float(
        loss.regress(gm.exact_model_fn, None, t, ps.xt, target)[0]
    )
    assert aux.t.shape == (64,)


@pytest.mark.parametrize("embedding", ["identity", "sinusoidal"])
def test_a_map_initialised_from_a_velocity_model_is_its_euler_step(embedding):
    net = models.MLP(width=16, depth=2, time_embedding=embedding, time_dim=8)
    v_fn, v_params = models.init_model(net, jax.random.key(0), jnp.zeros(2))
    fmap, _, params = flowmaps.init_flow_map(
        net, None, jnp.zeros(2), velocity_params=v_params
    )
    x = jnp.array([0.4, -1.1])
    for t, s in ((0.0, 1.0), (0.3, 0.5), (0.7, 0.7)):
        np.testing.assert_array_equal(
            fmap(params, t, s, x), flowmaps.EulerMap(v_fn)(v_params, t, s, x)
        )


def test_a_network_without_two_time_params_cannot_start_from_a_velocity_model():
    unet = models.UNet(width=8, channel_mult=(1, 2), groups=4, time_dim=8)
    with pytest.raises(TypeError, match="two_time_params"):
        flowmaps.init_flow_map(unet, None, jnp.zeros(64), velocity_params={})
