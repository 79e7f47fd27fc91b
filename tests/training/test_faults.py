"""Skipping non-finite updates, checkpoint retention, bf16 and accumulation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowlab as fl
from flowlab import data, models, paths, schedules
from flowlab.training import Checkpointer, init_state

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: the train steps of the runs that share a model, loss and batch
# shape; split over two workers, each worker compiled them.
pytestmark = pytest.mark.xdist_group("faults")

LOSS = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))


def _fit(**kwargs):
    module = models.MLP(width=32, depth=2, activation="silu")
    model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(2))
    base = dict(
        source=data.Gaussian(2),
        target=data.Moons(),
        key=jax.random.key(3),
        steps=40,
        batch_size=64,
        steps_per_call=5,
        log_every=5,
        progress=False,
    )
    return fl.fit(model_fn, params, LOSS, **(base | kwargs))


def test_skip_mode_drops_non_finite_updates_and_counts_them():
    # Five NaN rows among 1000: roughly a quarter of the batches of 64 contain one.
    points = data.Moons().sample(jax.random.key(1), 1000).at[:5].set(jnp.nan)
    result = _fit(target=data.Empirical(points), on_nonfinite="skip")
    skipped = sum(r["skipped_steps"] for r in result.history)
    assert 0 < skipped < 40
    assert int(result.state.step) == 40
    floats = [
        x
        for x in jax.tree_util.tree_leaves(result.state)
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in floats)
    assert all(np.isfinite(r["loss"]) for r in result.history)
    # Without skipping, the same data stops the run.
    with pytest.raises(fl.training.NonFiniteLossError, match="non-finite loss"):
        _fit(target=data.Empirical(points))


def test_stop_mode_names_the_quantity():
    lr = lambda n: jnp.where(n >= 10, jnp.inf, 1e-3)  # noqa: E731
    with pytest.raises(
        fl.training.NonFiniteLossError, match=r"non-finite .* at step 1[12]"
    ):
        _fit(optimizer=optax.adam(lr))


def test_on_nonfinite_must_be_known():
    with pytest.raises(ValueError, match="on_nonfinite"):
        _fit(on_nonfinite="ignore")


def test_keeps_the_newest_and_the_best(tmp_path):
    params = {"w": jnp.zeros(3)}
    opt = optax.sgd(0.1)
    state = init_state(jax.random.key(0), params, opt)
    ckpt = Checkpointer(tmp_path, keep=2, best_metric="loss")
    for step, loss in zip([1, 2, 3, 4, 5], [5.0, 1.0, 4.0, 3.0, 2.5], strict=True):
        ckpt.save(state._replace(step=jnp.asarray(step)), {"k": step}, {"loss": loss})
        ckpt.wait()
    assert ckpt.all_steps() == [2, 4, 5]
    restored = ckpt.restore(state, 2)
    assert restored.meta["k"] == 2
    assert restored.meta["metrics"] == {"loss": 1.0}
    ckpt.close()


def test_bf16_compute_keeps_fp32_parameters_and_tracks_fp32():
    fp32 = _fit(steps=200, steps_per_call=50, log_every=50)
    bf16 = _fit(steps=200, steps_per_call=50, log_every=50, compute_dtype=jnp.bfloat16)
    for leaf in jax.tree_util.tree_leaves(bf16.state.params):
        assert leaf.dtype == jnp.float32
    a = np.array([r["loss"] for r in fp32.history])
    b = np.array([r["loss"] for r in bf16.history])
    # bf16 has an 8-bit mantissa (~0.4% per op); averaged losses agree within 3%.
    np.testing.assert_allclose(b, a, rtol=0.03)
    assert not np.array_equal(a, b)  # the model really ran in bf16


def test_accumulation_equals_one_big_batch():
    one = _fit(steps=20)
    four = _fit(steps=20, micro_batches=4)
    # Same draws, gradient averaged over 4 slices: float32 reassociation only.
    chex.assert_trees_all_close(
        one.state.params, four.state.params, rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="micro_batches"):
        _fit(micro_batches=3)


def test_metrics_lines_have_the_observability_fields():
    record = _fit().history[-1]
    keys = {"step", "loss", "grad_norm", "lr", "steps_per_sec", "examples_per_sec"}
    assert keys | {"skipped_steps"} <= set(record)
    assert record["examples_per_sec"] == pytest.approx(record["steps_per_sec"] * 64)


def test_tensorboard_needs_tensorboardx(tmp_path):
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="tensorboardX"):
            _fit(out_dir=tmp_path, tensorboard=True)
    else:
        _fit(out_dir=tmp_path, tensorboard=True)
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
