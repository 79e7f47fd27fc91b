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

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: the model, loss and optimizer of `_setup`, per batch shape;
# split over two workers, each worker compiled them.
pytestmark = pytest.mark.xdist_group("train_step")


def _setup(width=16, dtype=jnp.float32):
    module = models.MLP(width=width, depth=2, activation="silu")
    model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(2, dtype))
    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    opt = optax.adam(1e-3)
    state = init_state(jax.random.key(1), params, opt)
    return model_fn, params, loss, opt, state


@pytest.mark.heavy
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
    """Step `k` of the scan regresses on batch `k`: the same as `K` single steps."""
    model_fn, _, loss, opt, state = _setup()
    kwargs = dict(source=data.Gaussian(2))
    fused = jax.jit(make_train_step(model_fn, loss, opt, steps_per_call=3, **kwargs))
    single = jax.jit(make_train_step(model_fn, loss, opt, **kwargs))
    # Three batches far apart (moons shifted by 0, 3 and -6): the target x1 - x0 of
    # each differs by its shift, so each step's loss reveals which batch it saw.
    moons = data.Moons().sample(jax.random.key(2), 48).reshape(3, 16, 2)
    shifts = jnp.array([0.0, 3.0, -6.0])[:, None, None]
    x1 = (moons + shifts).astype(jnp.float32)
    new_state, metrics = fused(state, x1)
    assert metrics["loss"].shape == (3,)
    s1, losses = state, []
    for k in range(3):
        s1, m = single(s1, x1[k])
        losses.append(float(m["loss"]))
    # The shifts move the losses apart by O(1) to O(10), far beyond the tolerance
    # below: a scan that fed batch 0 (or any one batch) to every step would fail.
    assert np.min(np.diff(np.sort(losses))) > 1.0
    # Same keys (fold_in of the step), same batches: float32 reassociation only.
    np.testing.assert_allclose(metrics["loss"], losses, rtol=1e-5)
    chex.assert_trees_all_close(s1.params, new_state.params, rtol=1e-5, atol=1e-6)
    assert int(new_state.step) == 3
    with pytest.raises(ValueError, match="steps_per_call=3"):
        fused(state, jnp.ones((2, 16, 2)))


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


def _reverse_x1(key, x0, x1):
    """A coupling that re-pairs: x1's rows (and their cond) in reverse order."""
    del key
    return x0, jax.tree_util.tree_map(lambda a: a[::-1], x1)


@pytest.mark.parametrize("coupling", [None, _reverse_x1], ids=["as_drawn", "reversed"])
def test_conditional_batch_reaches_model(coupling):
    """Each row's `cond` reaches the model with its row, also after a re-pairing.

    The model predicts `cond` itself (`w = 0`) and the Cond-OT target is `x1 - x0`,
    so the loss is 0 exactly when row `i` of the model's `cond` is `x1_i - x0_i` of
    the pairs the step regressed. `x0` is drawn here from the step's own source key
    (`fold_in(state.key, step)` split into data, source, coupling and loss keys).
    A step that dropped `cond`, zeroed it, broadcast one row or left it behind
    when the coupling moved `x1` gives a loss of O(1) (about 6 here). In float32
    the target `1 * x1 + (-1) * x0` rounds as `x1 - x0` does, so the loss is 0 up
    to a few ulps of O(1) entries, squared: below 1e-10.
    """
    seen = []

    def model_fn(params, t, x, cond):
        seen.append(cond.shape)
        return params["w"] * x + cond

    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    opt = optax.sgd(0.1)
    state = init_state(jax.random.key(0), {"w": jnp.zeros(())}, opt)
    source = data.Gaussian(2)
    step = make_train_step(model_fn, loss, opt, source=source, coupling=coupling)
    _, k_source, _, _ = jax.random.split(jax.random.fold_in(state.key, 0), 4)
    x1 = jax.random.normal(jax.random.key(5), (8, 2)) + 2.0
    x0 = source.sample(k_source, 8).astype(x1.dtype)
    # The coupling pairs x0_i with x1 row 7 - i and moves cond with x1.
    cond = x1 - (x0 if coupling is None else x0[::-1])
    _, metrics = step(state, (x1, cond))
    assert seen == [(2,)]
    assert float(metrics["loss"]) < 1e-10
    # The check can fail: with cond left out the loss is the target's mean square.
    _, without = step(state, (x1, jnp.zeros_like(cond)))
    assert float(without["loss"]) > 1.0


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
