"""Riemannian flow matching on 8 fake CPU devices: the same run as on one device.

Collected only with 8 devices (see `conftest.py`); float32, as users train. The
sphere's geodesic path, the tangent-projected model, the metric loss and the
geodesic-cost OT coupling (each device couples its own shard, or the global batch)
all run inside the sharded step.
"""

import chex
import jax
import numpy as np
import pytest

import flowlab as fl
from flowlab import couplings, data, manifolds, models, paths, schedules

S2 = manifolds.Sphere(2)
LOSS = fl.FlowMatchingLoss(paths.GeodesicPath(schedules.cond_ot(), S2))


def _run(devices, coupling=None, global_coupling=False, steps=30):
    model_fn, params = models.init_tangent_model(
        models.MLP(width=64, depth=2, activation="silu"),
        S2,
        jax.random.key(0),
        S2.origin(),
    )
    result = fl.fit(
        model_fn,
        params,
        LOSS,
        source=data.Uniform(S2),
        target=data.vmf_mixture(),
        key=jax.random.key(1),
        steps=steps,
        batch_size=128,
        steps_per_call=1,
        log_every=1,
        devices=devices,
        coupling=coupling,
        global_coupling=global_coupling,
        progress=False,
    )
    return np.array([r["loss"] for r in result.history]), result.state


@pytest.fixture(scope="module")
def one_device():
    return _run(1)


def test_the_loss_trajectory_does_not_depend_on_the_device_count(one_device):
    losses, state = _run(8)
    np.testing.assert_allclose(losses, one_device[0], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(
        state.params, one_device[1].params, rtol=1e-5, atol=1e-5
    )


def test_a_global_geodesic_ot_coupling_is_the_one_device_coupling():
    ot = couplings.exact_ot(manifold=S2)
    single, _ = _run(1, ot, steps=10)
    sharded, _ = _run(8, ot, global_coupling=True, steps=10)
    np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)
    independent, _ = _run(1, steps=10)
    assert sharded[0] < 0.8 * independent[0]  # OT pairs are closer: a smaller loss
