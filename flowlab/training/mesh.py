"""Device meshes and shardings for data-parallel (and FSDP-style) training.

One process drives every local device through `jax.jit` over a
`jax.sharding.Mesh` with a single `data` axis: the batch is split along it, and
parameters and optimiser state are replicated or, with `shard_params=True`, split
along the same axis (each leaf on its largest dimension divisible by the device
count). Many hosts run the same program after `jax.distributed.initialize()`.
"""

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "initialize_distributed",
    "make_mesh",
    "put_global",
    "replicated",
    "state_sharding",
    "to_local",
]

DATA_AXIS = "data"


def make_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first `devices` global devices (default: all of them)."""
    available = jax.devices()
    n = len(available) if devices is None else devices
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(available):
        hint = ""
        if isinstance(n, int) and n > len(available) and available[0].platform == "cpu":
            hint = (
                f"; for {n} CPU devices set XLA_FLAGS=--xla_force_host_platform_"
                f"device_count={n} before JAX starts, e.g. `XLA_FLAGS=--xla_force_"
                f"host_platform_device_count={n} flowlab info --devices {n}`"
            )
        raise ValueError(
            f"devices must be an int from 1 to {len(available)} (the visible device "
            f"count), got {devices!r}{hint}."
        )
    if n % jax.process_count():
        raise ValueError(
            f"devices={n} must be a multiple of the process count "
            f"{jax.process_count()}."
        )
    return Mesh(np.array(available[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Split the batch axis (after `leading` unsplit axes) over `data`."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), DATA_AXIS))


def _leaf_sharding(leaf: Any, mesh: Mesh, shard: bool) -> NamedSharding:
    shape = np.shape(leaf)
    n = mesh.shape[DATA_AXIS]
    if not shard or not shape or n == 1:
        return replicated(mesh)
    divisible = [i for i, size in enumerate(shape) if size % n == 0 and size >= n]
    if not divisible:
        return replicated(mesh)
    axis = max(divisible, key=lambda i: shape[i])
    spec = [None] * len(shape)
    spec[axis] = DATA_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def state_sharding(state: PyTree, mesh: Mesh, shard_params: bool = False) -> PyTree:
    """Shardings for a `TrainState`: replicated, or FSDP-style with `shard_params`.

    With `shard_params`, every parameter, optimiser and EMA leaf is split over the
    `data` axis on its largest dimension divisible by the device count (leaves with
    none stay replicated); the step counter and key are always replicated.
    """
    return jax.tree_util.tree_map(
        lambda x: _leaf_sharding(x, mesh, shard_params), state
    )


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def put_global(tree: PyTree, shardings: PyTree) -> PyTree:
    """Place a pytree (the same value on every process) on `shardings`, as copies.

    On one process this is `jax.device_put` of a copy (so donating the result never
    consumes the caller's arrays). With many processes each one fills the shards it
    owns from its own copy of the value, which `device_put` cannot do for devices
    of other hosts. PRNG key arrays are carried through their raw key data.
    """

    def put(x, sharding):
        if _is_key(x):
            impl = jax.random.key_impl(x)
            data = put(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=impl)
        if jax.process_count() == 1:
            return jax.device_put(jnp.copy(x), sharding)
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree_util.tree_map(put, tree, shardings)


def to_local(tree: PyTree) -> PyTree:
    """A pytree of global arrays as arrays every process holds whole.

    On one process this returns `tree` unchanged. With many processes, shards that
    live on other hosts are gathered, so the result can be used in computations
    that only this process runs (sampling, evaluation, plotting).
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def gather(x):
        if _is_key(x):
            impl = jax.random.key_impl(x)
            return jax.random.wrap_key_data(gather(jax.random.key_data(x)), impl=impl)
        return jnp.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(gather, tree)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Start multi-host JAX when asked to; returns whether it was started.

    Explicit arguments win; otherwise `jax.distributed.initialize()` reads the
    cluster from its environment (SLURM, TPU pods, or `JAX_COORDINATOR_ADDRESS`,
    `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`). Nothing happens on a single host with
    none of these set.
    """
    if coordinator_address is not None:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
        return True
    env = os.environ
    if "JAX_COORDINATOR_ADDRESS" in env:
        jax.distributed.initialize(
            env["JAX_COORDINATOR_ADDRESS"],
            int(env["JAX_NUM_PROCESSES"]),
            int(env["JAX_PROCESS_ID"]),
        )
        return True
    if int(env.get("SLURM_NTASKS", "1")) > 1 or "TPU_WORKER_HOSTNAMES" in env:
        jax.distributed.initialize()
        return True
    return False
