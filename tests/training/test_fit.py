"""`fit`: reproducibility, logging, checkpoints, non-finite losses, model quality."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowlab as fl
from flowlab import data, models, paths, schedules
from flowlab.training import (
    NonFiniteLossError,
    init_state,
    make_optimizer,
    restore_checkpoint,
)


def _model(width=32, depth=2):
    module = models.MLP(width=width, depth=depth, activation="silu")
    return models.init_model(module, jax.random.key(0), jnp.zeros(2))


LOSS = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))


def _fit(steps=60, **kwargs):
    model_fn, params = _model()
    base = dict(
        source=data.Gaussian(2),
        target=data.Moons(),
        key=jax.random.key(3),
        steps=steps,
        batch_size=64,
        steps_per_call=7,
        log_every=20,
        progress=False,
    )
    return fl.fit(model_fn, params, LOSS, **(base | kwargs))


def test_same_seed_same_result_and_exact_step_count():
    a, b = _fit(), _fit()
    assert int(a.state.step) == 60  # 8 fused calls of 7 and one of 4
    chex.assert_trees_all_equal(a.state.params, b.state.params)
    c = _fit(key=jax.random.key(4))
    assert not np.allclose(
        jax.tree_util.tree_leaves(a.state.params)[0],
        jax.tree_util.tree_leaves(c.state.params)[0],
    )


def test_metrics_jsonl_and_checkpoint_round_trip(tmp_path):
    result = _fit(out_dir=tmp_path, checkpoint_every=25)
    lines = [
        json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in lines] == [21, 42, 60]  # rounded up to whole calls
    for record in lines:
        assert {"step", "loss", "grad_norm", "lr", "steps_per_sec"} <= set(record)
        assert np.isfinite(record["loss"])
        assert record["steps_per_sec"] > 0
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert steps[-1] == 60
    model_fn, params = _model()
    # fit's default optimiser: AdamW with a (constant) schedule over the run.
    opt, _ = make_optimizer("adamw", 1e-3, total_steps=60)
    like = init_state(jax.random.key(0), params, opt)
    restored = restore_checkpoint(tmp_path / "checkpoints", like)
    chex.assert_trees_all_equal(restored.params, result.state.params)
    chex.assert_trees_all_equal(restored.ema_params, result.state.ema_params)
    assert int(restored.step) == 60


def test_resuming_from_a_state_reproduces_the_uninterrupted_run():
    full = _fit(steps=42)
    half = _fit(steps=21)
    rest = _fit(steps=42, state=half.state)
    chex.assert_trees_all_equal(full.state.params, rest.state.params)


def test_non_finite_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
    # The learning rate explodes after step 30: the loss turns non-finite soon after.
    lr = lambda step: jnp.where(step < 30, 1e-3, 1e30)  # noqa: E731
    with pytest.raises(NonFiniteLossError, match="at step") as info:
        _fit(steps=200, optimizer=optax.adam(lr), out_dir=tmp_path, checkpoint_every=14)
    err = info.value
    assert err.step > 30
    assert err.last_checkpoint is not None
    assert err.last_checkpoint < err.step
    assert f"step {err.last_checkpoint}" in str(err)
    model_fn, params = _model()
    like = init_state(jax.random.key(0), params, optax.adam(lr))
    restored = restore_checkpoint(tmp_path / "checkpoints", like)
    assert int(restored.step) == err.last_checkpoint
    leaves = jax.tree_util.tree_leaves(restored.params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


def test_iterable_of_host_batches():
    batches = (np.full((16, 2), i, np.float32) for i in range(100))
    result = _fit(steps=10, target=batches, steps_per_call=4, batch_size=16)
    assert int(result.state.step) == 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"steps": 0}, "steps"), ({"batch_size": -1}, "batch_size")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _fit(**kwargs)


def test_checkpoint_every_needs_out_dir():
    with pytest.raises(ValueError, match="out_dir"):
        _fit(checkpoint_every=10)


def test_learns_a_shifted_gaussian():
    """N(0, I) -> N(mu, s^2 I): the sampled mean and std match within 0.1."""
    mu, s = jnp.array([2.0, -1.0]), 0.5
    target = data.Gaussian(2, mean=mu, std=s)
    result = _fit(steps=1500, target=target, batch_size=256, steps_per_call=50)
    model_fn, _ = _model()

    def v(t, x, params):
        return model_fn(params, t, x, None)

    x0 = data.Gaussian(2).sample(jax.random.key(9), 4000)
    x = fl.sample_ode(v, x0, result.state.ema_params, solver="dopri5").x
    # Monte-Carlo error of the mean is s / sqrt(4000) ~ 0.008; the 0.1 bound is
    # for the model error after 1500 steps (measured ~0.02).
    np.testing.assert_allclose(jnp.mean(x, 0), mu, atol=0.1)
    np.testing.assert_allclose(jnp.std(x, 0), jnp.array([s, s]), atol=0.1)


def test_fit_does_not_consume_the_callers_arrays():
    model_fn, params = _model()
    _fit(steps=5, steps_per_call=5)
    fl.fit(
        model_fn,
        params,
        LOSS,
        source=data.Gaussian(2),
        target=data.Moons(),
        key=jax.random.key(0),
        steps=5,
        batch_size=16,
        steps_per_call=5,
        progress=False,
    )
    # The step donates its state; the initial parameters must still be readable.
    assert all(
        bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(params)
    )
