"""Couplings under a device mesh: per shard (the default) or over the global batch."""

from typing import ClassVar

import equinox as eqx
import jax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PRNGKeyArray, PyTree

from ._base import AbstractCoupling, Coupled

__all__ = ["Sharded", "sharded"]


class Sharded(AbstractCoupling):
    """Run a coupling on each device's shard of the batch, or on the global batch.

    Under a mesh whose `axis` splits the batch, the per-shard mode runs `coupling`
    inside `jax.shard_map` on each device's rows only (no communication; exact OT
    becomes exact within each shard, like a smaller batch), with the key folded with
    the shard's index so shards draw independently. `global_batch=True` instead
    gathers the batch, couples it as one, and splits the result back: one coupling
    over all rows at the cost of an all-gather and of doing the work on every
    device.

    Attributes:
        coupling: the coupling to run.
        mesh: the device mesh.
        global_batch: couple the whole batch instead of each shard.
        axis: the mesh axis that splits the batch.
    """

    coupling: AbstractCoupling
    mesh: Mesh = eqx.field(static=True)
    global_batch: bool = eqx.field(static=True, default=False)
    axis: str = eqx.field(static=True, default="data")
    repairs_rows: ClassVar[bool] = True

    def __check_init__(self):
        if self.axis not in self.mesh.axis_names:
            raise ValueError(
                f"the mesh has axes {self.mesh.axis_names}, not {self.axis!r}; pass "
                "the axis that splits the batch as axis=."
            )

    def couple(self, key: PRNGKeyArray, x0: PyTree, x1: PyTree) -> Coupled:
        rows = PartitionSpec(self.axis)
        if self.global_batch:
            whole = NamedSharding(self.mesh, PartitionSpec())
            split = NamedSharding(self.mesh, rows)
            x0, x1 = jax.tree_util.tree_map(
                lambda a: lax.with_sharding_constraint(a, whole), (x0, x1)
            )
            x0, x1, stats = self.coupling.couple(key, x0, x1)
            x0, x1 = jax.tree_util.tree_map(
                lambda a: lax.with_sharding_constraint(a, split), (x0, x1)
            )
            return Coupled(x0, x1, stats)

        def local(key, x0, x1):
            key = jax.random.fold_in(key, lax.axis_index(self.axis))
            x0, x1, stats = self.coupling.couple(key, x0, x1)
            # The worst shard speaks for the batch (stats: larger is worse).
            stats = {k: lax.pmax(v, self.axis) for k, v in stats.items()}
            return x0, x1, stats

        x0, x1, stats = jax.shard_map(
            local,
            mesh=self.mesh,
            in_specs=(PartitionSpec(), rows, rows),
            out_specs=(rows, rows, PartitionSpec()),
            check_vma=False,
        )(key, x0, x1)
        return Coupled(x0, x1, stats)


def sharded(
    coupling: AbstractCoupling,
    mesh: Mesh,
    *,
    global_batch: bool = False,
    axis: str = "data",
) -> Sharded:
    """Run `coupling` per shard of `mesh`'s `axis` (default) or on the global batch.

    Example:
        >>> from flowlab import couplings
        >>> from flowlab.training import make_mesh
        >>> c = couplings.sharded(couplings.exact_ot(), make_mesh())
    """
    return Sharded(coupling, mesh, global_batch, axis)
