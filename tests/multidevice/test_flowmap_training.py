"""Flow-map losses on 8 fake CPU devices: the same run as on one device.

Collected only with 8 devices (see `conftest.py`); float32. The flow-map losses'
batched times (`FlowMapTimes`) and their jvp-based targets run inside the sharded
step like any loss.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

import flowlab as fl
from flowlab import data, flowmaps, models


def _run(devices, loss, steps=10):
    net = models.MLP(width=32, depth=2, activation="silu", time_embedding="identity")
    _, model_fn, params = flowmaps.init_flow_map(
        net, jax.random.key(0), jnp.zeros(2, jnp.float32)
    )
    result = fl.fit(
        model_fn, params, loss, source=data.Gaussian(2), target=data.Moons(),
        key=jax.random.key(1), steps=steps, batch_size=64, steps_per_call=1,
        log_every=1, devices=devices, progress=False,
    )  # fmt: skip
    return np.array([r["loss"] for r in result.history]), result.state


def test_a_mean_flow_run_does_not_depend_on_the_device_count():
    loss = flowmaps.MeanFlowLoss()  # jvp targets and two-time rows inside the step
    single, state_1 = _run(1, loss)
    sharded, state_8 = _run(8, loss)
    np.testing.assert_allclose(sharded, single, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(state_8.params, state_1.params, rtol=1e-4, atol=1e-5)
