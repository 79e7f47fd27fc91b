"""One process of a multi-host test: fit 20 steps and print the loss trajectory.

Started by `test_multihost.py` with `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`
and `JAX_PROCESS_ID` (or none of them, for the single-process reference).
"""

import json

import jax

from flowlab.training import initialize_distributed

started = initialize_distributed()

import jax.numpy as jnp  # noqa: E402

import flowlab as fl  # noqa: E402
from flowlab import data, models, paths, schedules  # noqa: E402

module = models.MLP(width=32, depth=2, activation="silu")
model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(2))
loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
result = fl.fit(
    model_fn,
    params,
    loss,
    source=data.Gaussian(2),
    target=data.Moons(),
    key=jax.random.key(1),
    steps=20,
    batch_size=64,
    steps_per_call=1,
    log_every=1,
    progress=False,
)
record = {
    "process": jax.process_index(),
    "devices": jax.device_count(),
    "distributed": started,
    "losses": [r["loss"] for r in result.history],
}
print("RESULT " + json.dumps(record))  # noqa: T201 - the parent reads this line
