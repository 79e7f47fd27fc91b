"""The pure train step: jit = eager, no recompiles, fused = unfused, EMA, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowlab as fl
from flowlab import data, models, paths, schedules
from flowlab.training import init_state, make_train_step


def _setup(width=16, dtype=jnp.float32):
    module = models.MLP(width=width, depth=2, activation="silu")
    model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(2, dtype))
    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    opt = optax.adam(1e-3)
    state = init_state(jax.random.key(1), params, opt)
    return model_fn, params, loss, opt, state


def test_jit_equals_eager():
    model_fn, _, loss, opt, state = _setup()
    step = make_train_step(model_fn, loss, opt, source=data.Gaussian(2), batch_size=64)
    target = data.Moons()
    with jax.disable_jit():
        eager_state, eager_m = step(state, target)
    jit_state, jit_m = jax.jit(step)(state, target)
    # float32 arithmetic in a different order (XLA fusion): 1e-5 relative.
    chex.assert_trees_all_close(
        eager_state.params, jit_state.params, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(eager_m["loss"], jit_m["loss"], rtol=1e-5)


def test_second_call_does_not_recompile():
    model_fn, _, loss, opt, state = _setup()
    traces = []

    def counted(params, t, x, cond):
        traces.append(1)
        return model_fn(params, t, x, cond)

    step = jax.jit(
        make_train_step(counted, loss, opt, source=data.Gaussian(2), batch_size=32)
    )
    target = data.Empirical(data.Moons().sample(jax.random.key(2), 256))
    state, _ = step(state, target)
    n_traces = len(traces)
    state, _ = step(state, target)
    state, _ = step(state, data.Empirical(target.points + 1.0))
    assert len(traces) == n_traces
    assert int(state.step) == 3


def test_fused_steps_equal_single_steps():
    model_fn, _, loss, opt, state = _setup()
    kwargs = dict(source=data.Gaussian(2), batch_size=32)
    single = jax.jit(make_train_step(model_fn, loss, opt, **kwargs))
    fused = jax.jit(make_train_step(model_fn, loss, opt, steps_per_call=5, **kwargs))
    target = data.Moons()
    s1 = state
    losses = []
    for _ in range(5):
        s1, m = single(s1, target)
        losses.append(m["loss"])
    s5, m5 = fused(state, target)
    assert m5["loss"].shape == (5,)
    # Same keys (fold_in of the step), same arithmetic up to float32 reassociation.
    chex.assert_trees_all_close(s1.params, s5.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array(losses), m5["loss"], rtol=1e-5)
    assert int(s5.step) == 5


def test_array_batches_with_leading_steps_axis():
    model_fn, _, loss, opt, state = _setup()
    step = make_train_step(
        model_fn, loss, opt, source=data.Gaussian(2), steps_per_call=3
    )
    x1 = jnp.ones((3, 16, 2))
    new_state, metrics = jax.jit(step)(state, x1)
    assert metrics["loss"].shape == (3,)
    with pytest.raises(ValueError, match="steps_per_call=3"):
        step(state, jnp.ones((2, 16, 2)))


def test_ema_update():
    model_fn, params, loss, opt, state = _setup()
    decay = 0.95
    step = make_train_step(
        model_fn, loss, opt, source=data.Gaussian(2), batch_size=16, ema_decay=decay
    )
    jitted = jax.jit(step)
    ema = params
    for n in range(30):
        state, _ = jitted(state, data.Moons())
        # Warm-up: the decay at step n is min(decay, (1 + n) / (10 + n)).
        d = min(decay, (1 + n) / (10 + n))
        ema = jax.tree_util.tree_map(
            lambda e, p, d=d: d * e + (1 - d) * p, ema, state.params
        )
    # float32 rounding accumulated over 30 updates.
    chex.assert_trees_all_close(state.ema_params, ema, rtol=1e-5, atol=1e-6)


def test_conditional_batch_reaches_model():
    seen = []

    def model_fn(params, t, x, cond):
        seen.append(cond.shape)
        return params["w"] * x + cond

    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    opt = optax.sgd(0.1)
    state = init_state(jax.random.key(0), {"w": jnp.ones(())}, opt)
    step = make_train_step(model_fn, loss, opt, source=data.Gaussian(2))
    x1, cond = jnp.ones((8, 2)), jnp.zeros((8, 2))
    step(state, (x1, cond))
    assert seen == [(2,)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"steps_per_call": 0}, "steps_per_call"),
        ({"source": "gaussian"}, "source"),
    ],
)
def test_bad_arguments(kwargs, match):
    model_fn, _, loss, opt, _ = _setup()
    base = {"source": data.Gaussian(2)} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        make_train_step(model_fn, loss, opt, **base)


def test_source_shape_mismatch_is_reported():
    model_fn, _, loss, opt, state = _setup()
    step = make_train_step(model_fn, loss, opt, source=data.Gaussian(3), batch_size=8)
    with pytest.raises(ValueError, match="source"):
        step(state, data.Moons())
