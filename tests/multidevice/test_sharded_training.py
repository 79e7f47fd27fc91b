"""Sharded training on 8 fake CPU devices.

Run in its own process, with the flag set before jax is imported:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python -m pytest tests/multidevice

`tests/test_multidevice.py` does this from the main session, which otherwise does
not collect this folder (see `conftest.py` here).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowlab as fl
from flowlab import data, models, paths, schedules
from flowlab.training import (
    Checkpointer,
    init_state,
    make_mesh,
    make_optimizer,
    make_train_step,
    state_sharding,
)

LOSS = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
# Width 64 divides by 8, so FSDP really splits the hidden layers.
MODULE = models.MLP(width=64, depth=2, activation="silu")


def _model():
    return models.init_model(MODULE, jax.random.key(0), jnp.zeros(2))


def _trajectory(devices, steps=50, **kwargs):
    model_fn, params = _model()
    result = fl.fit(
        model_fn,
        params,
        LOSS,
        source=data.Gaussian(2),
        target=data.Empirical(data.Moons().sample(jax.random.key(5), 4096)),
        key=jax.random.key(1),
        steps=steps,
        batch_size=256,
        steps_per_call=1,
        log_every=1,
        devices=devices,
        progress=False,
        **kwargs,
    )
    return np.array([r["loss"] for r in result.history]), result.state


@pytest.fixture(scope="module")
def one_device():
    return _trajectory(1)


@pytest.mark.parametrize("devices", [2, 4, 8])
def test_loss_trajectory_is_independent_of_device_count(one_device, devices):
    losses, state = _trajectory(devices)
    # Same global batch and keys; only the order of the cross-device sums differs:
    # float32 reassociation over 50 Adam steps stays well inside 1e-5.
    np.testing.assert_allclose(losses, one_device[0], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(
        state.params, one_device[1].params, rtol=1e-5, atol=1e-5
    )


def test_fsdp_matches_replication(one_device):
    losses, state = _trajectory(8, shard_params=True)
    np.testing.assert_allclose(losses, one_device[0], rtol=1e-5, atol=1e-6)
    kernel = state.params["Dense_0"]["kernel"]
    assert len(kernel.sharding.device_set) == 8
    assert kernel.addressable_shards[0].data.shape != kernel.shape  # really split


def test_accumulation_on_a_mesh_equals_one_big_batch(one_device):
    losses, _ = _trajectory(8, micro_batches=4)
    np.testing.assert_allclose(losses, one_device[0], rtol=1e-5, atol=1e-6)


def test_batch_must_divide_by_device_count():
    model_fn, params = _model()
    with pytest.raises(ValueError, match="device count"):
        fl.fit(
            model_fn,
            params,
            LOSS,
            source=data.Gaussian(2),
            target=data.Moons(),
            key=jax.random.key(0),
            steps=2,
            batch_size=100,
            devices=8,
            progress=False,
        )


def test_sharded_step_does_not_recompile():
    model_fn, params = _model()
    mesh = make_mesh(8)
    opt = optax.adam(1e-3)
    state = init_state(jax.random.key(0), params, opt)
    sharding = state_sharding(state, mesh)
    state = jax.device_put(state, sharding)
    step = make_train_step(
        model_fn, LOSS, opt, source=data.Gaussian(2), batch_size=64, mesh=mesh
    )
    jitted = chex.assert_max_traces(step, n=1)
    compiled = jax.jit(jitted, out_shardings=(sharding, None))
    for _ in range(3):
        state, _ = compiled(state, data.Moons())
    assert int(state.step) == 3


def test_checkpoint_from_8_devices_continues_on_1(tmp_path):
    model_fn, params = _model()
    opt, lr = make_optimizer("adamw", 1e-3, total_steps=40)
    common = dict(
        source=data.Gaussian(2),
        target=data.Moons(),
        key=jax.random.key(2),
        batch_size=64,
        optimizer=opt,
        lr_fn=lr,
        steps_per_call=5,
        progress=False,
    )
    fl.fit(
        model_fn,
        params,
        LOSS,
        steps=20,
        devices=8,
        out_dir=tmp_path,
        checkpoint_every=20,
        **common,
    )
    reference = fl.fit(model_fn, params, LOSS, steps=40, devices=8, **common)

    like = jax.device_put(
        init_state(jax.random.key(2), params, opt), make_mesh(1).devices.flat[0]
    )
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=None)
    restored = ckpt.restore(like)
    ckpt.close()
    assert restored.step == 20
    assert len(restored.state.params["Dense_0"]["kernel"].sharding.device_set) == 1
    resumed = fl.fit(
        model_fn, params, LOSS, steps=40, devices=1, state=restored.state, **common
    )
    chex.assert_trees_all_close(
        resumed.state.params, reference.state.params, rtol=1e-5, atol=1e-6
    )
