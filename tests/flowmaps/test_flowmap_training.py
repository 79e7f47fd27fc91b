"""Trained flow maps on Gaussian data, where the exact flow map is known.

x1 ~ N(mu, sd^2 I) under the Cond-OT path (tests/flowmaps/gaussian_maps.py): the
one-step map X(0, 1, x) is mu + sd x. Each trained map must match it at one step,
its s-derivative at s = t must match the velocity it learnt (the exact marginal
velocity, or the teacher it distilled), and two half jumps must agree with one
jump within the map's own error. Fixed seeds; float32 as users train.
"""

import gaussian_maps as gm
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import data, flowmaps, models, training

pytestmark = pytest.mark.usefixtures("float32_runs")

STEPS = 3000
EMA = 0.99  # a short run: the default 0.999 would still average early steps


def _target():
    return data.Gaussian(2, mean=np.asarray(gm.MU), std=gm.SD)


def _train(loss, steps=STEPS, seed=0):
    net = models.MLP(width=64, depth=3, activation="silu", time_embedding="identity")
    fmap, model_fn, params = flowmaps.init_flow_map(
        net, jax.random.key(seed), jnp.zeros(2, jnp.float32)
    )
    result = training.fit(
        model_fn, params, loss, source=data.Gaussian(2), target=_target(),
        key=jax.random.key(seed + 1), steps=steps, batch_size=256, progress=False,
        steps_per_call=50, log_every=steps, ema_decay=EMA,
    )  # fmt: skip
    return fmap, result.state.ema_params


def _held_out(n=2000):
    return jax.random.normal(jax.random.key(123), (n, 2), jnp.float32)


def _rms(a, b):
    return float(jnp.sqrt(jnp.mean(jnp.sum((a - b) ** 2, axis=-1))))


TEACHER = flowmaps.Teacher(gm.exact_teacher_field)


@pytest.fixture(scope="module")
def trained():
    """One map per kind of training: from data, by distillation (5-7 s each)."""
    return {
        "mean_flow": _train(flowmaps.MeanFlowLoss()),
        "lagrangian": _train(flowmaps.LagrangianDistillation(TEACHER)),
        "consistency_distillation": _train(flowmaps.ConsistencyDistillation(TEACHER)),
    }


# Measured on 2,000 held-out points (seed 0, 3,000 steps; `python /tmp/meas.py`):
# the RMS error of the one-step map was mean_flow 0.157, lagrangian 0.018,
# consistency_distillation 0.058 (one Euler step of the exact field is 0.57 off:
# it lands on mu); the bounds leave about 1.6-2x.
ONE_STEP_RMS = {"mean_flow": 0.25, "lagrangian": 0.04, "consistency_distillation": 0.1}
# The relative RMS error of d/ds X at s = t against the exact velocity, measured at
# t = 0.1 / 0.5 / 0.9: mean_flow 0.068 / 0.043 / 0.398 (its start times are drawn
# logit-normal, rarely near 1: t = 0.9 is left out), lagrangian 0.026 / 0.017 /
# 0.049, consistency_distillation 0.154 / 0.152 / 0.088 (it learns the velocity
# only through jumps of 1/64).
DERIVATIVE = {
    "mean_flow": ((0.1, 0.5), 0.15),
    "lagrangian": ((0.1, 0.5, 0.9), 0.1),
    "consistency_distillation": ((0.1, 0.5, 0.9), 0.3),
}


@pytest.mark.parametrize("name", list(ONE_STEP_RMS))
def test_a_trained_map_matches_the_closed_form_at_one_step(trained, name):
    fmap, params = trained[name]
    x0 = _held_out()
    out = flowmaps.sample_flow_map(fmap, params, x0, steps=1)
    assert out.nfe == 1
    assert _rms(out.x, gm.MU[None] + gm.SD * x0) < ONE_STEP_RMS[name]


@pytest.mark.parametrize("name", list(ONE_STEP_RMS))
def test_the_s_derivative_at_s_equal_t_is_the_learnt_velocity(trained, name):
    """d/ds X(t, s, x) at s = t (by jax.jvp) against the exact marginal velocity,
    which is also the teacher's, at points of the marginal at t."""
    fmap, params = trained[name]
    times, bound = DERIVATIVE[name]
    for t in times:
        xt = t * gm.MU[None] + gm.sigma(t) * _held_out(500)
        error, scale = gm.derivative_error(fmap, params, t, xt)
        assert error < bound * scale, (name, t)


@pytest.mark.parametrize("name", list(ONE_STEP_RMS))
def test_two_half_jumps_agree_with_one_jump_within_the_maps_error(trained, name):
    fmap, params = trained[name]
    x0 = _held_out()
    one = flowmaps.sample_flow_map(fmap, params, x0, steps=1).x
    two = flowmaps.sample_flow_map(fmap, params, x0, times=[0.0, 0.5, 1.0]).x
    exact = gm.MU[None] + gm.SD * x0
    gap = _rms(one, two)
    assert gap < 2 * ONE_STEP_RMS[name]
    assert gap < 2 * max(_rms(one, exact), _rms(two, exact))


def test_reflow_of_the_exact_teacher_is_exact_in_one_euler_step():
    """The exact teacher's pairs (x0, mu + sd x0) are straight lines, so one round
    of reflow learns a field whose single Euler step is the closed-form map."""
    net = models.MLP(width=64, depth=3, activation="silu", time_embedding="identity")
    v_fn, params = models.init_model(net, jax.random.key(0), jnp.zeros(2, jnp.float32))
    (round_1,) = flowmaps.reflow(
        jax.random.key(1), v_fn, params, TEACHER, source=data.Gaussian(2), rounds=1,
        pairs=4096, steps=STEPS, batch_size=256, solver="rk4", progress=False,
        steps_per_call=50, log_every=STEPS, ema_decay=EMA,
    )  # fmt: skip
    assert round_1.pair_seconds > 0
    assert round_1.train_seconds > 0
    x0 = _held_out()
    out = flowmaps.sample_flow_map(flowmaps.EulerMap(v_fn), round_1.params, x0)
    # measured 0.013 (seed 0); the teacher at one Euler step is 0.32 off
    assert _rms(out.x, gm.MU[None] + gm.SD * x0) < 0.04
