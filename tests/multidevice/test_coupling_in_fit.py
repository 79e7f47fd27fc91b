"""`fit` on 8 devices couples each device's shard by default, or the global batch.

Collected only with 8 devices (see `conftest.py`); float32, as users train.

The pairs `fit` trains on are read from its first loss: with the Cond-OT path the
velocity target is `x1 - x0` at every `t`, so a model that outputs zero at step 0
has loss `sum_i |x1_i - x0_i|^2 / (N D)`, the cost of the pairing the coupling made.
"""

from typing import ClassVar

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import linear_sum_assignment

import flowlab as fl
from flowlab import couplings, data, models, paths, schedules
from flowlab.training import make_mesh, make_train_step
from flowlab.training.step import _mesh_coupling

N, D, SHARDS = 64, 2, 8
LOSS = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))


class Fixed(data.AbstractSampler):
    """Always the same rows, in order: the test knows which rows each shard holds."""

    points: jax.Array

    @property
    def event_shape(self):
        return self.points.shape[1:]

    def sample(self, key, n):
        del key
        return self.points[:n]


class Blockwise(couplings.AbstractCoupling):
    """One device doing what per-shard coupling does on `blocks` devices."""

    coupling: couplings.AbstractCoupling
    blocks: int = eqx.field(static=True)
    repairs_rows: ClassVar[bool] = True

    def couple(self, key, x0, x1):
        def blocks(tree):  # (n, ...) -> (blocks, n / blocks, ...)
            return jax.tree_util.tree_map(
                lambda a: a.reshape(self.blocks, -1, *a.shape[1:]), tree
            )

        keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(self.blocks))
        # lax.map, not vmap: exact_ot's solver loops do not terminate under vmap.
        out = jax.lax.map(lambda a: self.coupling(*a), (keys, blocks(x0), blocks(x1)))
        y0, y1 = jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[2:]), out)
        return couplings.Coupled(y0, y1)


def _points():
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = np.asarray(jax.random.normal(k0, (N, D)))
    x1 = np.asarray(jax.random.normal(k1, (N, D))) + np.array([2.0, -1.0])
    return x0, x1


def _optimal_cost(x0, x1):
    cost = ((x0[:, None] - x1[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def _zero_model(params, t, x, cond):
    return params * x


def _first_loss(**kwargs):
    """The loss of step 0: the mean pair cost of the coupled batch, over N D."""
    x0, x1 = _points()
    result = fl.fit(
        _zero_model,
        jnp.zeros(()),
        LOSS,
        source=Fixed(jnp.asarray(x0)),
        target=Fixed(jnp.asarray(x1)),
        key=jax.random.key(1),
        steps=1,
        batch_size=N,
        steps_per_call=1,
        log_every=1,
        progress=False,
        coupling=couplings.exact_ot(),
        **kwargs,
    )
    return result.history[0]["loss"]


def test_per_shard_by_default_global_on_request():
    x0, x1 = _points()
    rows = N // SHARDS
    per_shard = sum(
        _optimal_cost(x0[s * rows : (s + 1) * rows], x1[s * rows : (s + 1) * rows])
        for s in range(SHARDS)
    )
    best = _optimal_cost(x0, x1)
    # Shards of 8 rows pair far worse than the whole batch: the check can tell.
    assert per_shard > 1.2 * best
    # Costs are O(10) per row; float32 sums of 64 of them: rtol 1e-5.
    default = _first_loss()
    assert default == pytest.approx(per_shard / (N * D), rel=1e-5)
    glob = _first_loss(global_coupling=True)
    assert glob == pytest.approx(best / (N * D), rel=1e-5)


def _trajectory(devices, coupling, **kwargs):
    module = models.MLP(width=32, depth=2, activation="silu")
    model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(D))
    result = fl.fit(
        model_fn,
        params,
        LOSS,
        source=data.Gaussian(D),
        target=data.Moons(),
        key=jax.random.key(2),
        steps=20,
        batch_size=N,
        steps_per_call=10,
        log_every=1,
        devices=devices,
        coupling=coupling,
        progress=False,
        **kwargs,
    )
    return np.array([r["loss"] for r in result.history]), result.state.params


def test_per_shard_run_equals_a_one_device_run_coupling_blocks():
    """8 devices coupling their shards = 1 device coupling 8 blocks of the batch.

    Same keys (the shard's key is folded with its index), same rows per block. The
    coupling only sees the drawn x0 and x1, not the parameters, so the pairs agree
    exactly and the runs differ only by float32 reassociation of the cross-device
    sums: 1e-5, as in `test_sharded_training.py`. (The global mode's pairs are
    checked against the global optimum above.)
    """
    exact = couplings.exact_ot()
    per_shard = _trajectory(8, exact)
    blockwise = _trajectory(1, Blockwise(exact, SHARDS))
    np.testing.assert_allclose(per_shard[0], blockwise[0], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(per_shard[1], blockwise[1], rtol=1e-5, atol=1e-5)


def test_an_already_sharded_coupling_is_used_as_it_is():
    mesh = make_mesh()
    per_shard = couplings.sharded(couplings.exact_ot(), mesh)
    kwargs = dict(source=data.Gaussian(D), coupling=per_shard, mesh=mesh)
    make_train_step(_zero_model, LOSS, optax.adam(1e-3), **kwargs)
    with pytest.raises(ValueError, match="global_coupling=True"):
        make_train_step(
            _zero_model, LOSS, optax.adam(1e-3), global_coupling=True, **kwargs
        )


def test_only_couplings_that_pair_rows_are_sharded():
    mesh = make_mesh()
    exact = couplings.exact_ot()
    wrapped = _mesh_coupling(exact, mesh)
    assert isinstance(wrapped, couplings.Sharded)
    assert not wrapped.global_batch
    assert _mesh_coupling(exact, mesh, global_coupling=True).global_batch
    assert _mesh_coupling(exact, make_mesh(1)) is exact  # one device: as it is
    # Row-wise couplings pair nothing across rows: left to XLA's partitioning, so
    # they draw what they draw on one device.
    rowwise = couplings.inpainting(couplings.coordinate_mask(1))
    for coupling in (None, couplings.independent(), rowwise):
        assert _mesh_coupling(coupling, mesh) is coupling
