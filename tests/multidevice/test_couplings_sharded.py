"""Couplings under an 8-device mesh: per shard by default, or over the global batch.

Collected only with 8 devices (see `conftest.py`); float32, as users train.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import flowlab as fl
from flowlab import couplings, data, models, paths, schedules
from flowlab.training import batch_sharding, init_state, make_mesh, make_train_step

N, SHARDS = 64, 8


@pytest.fixture(scope="module")
def mesh():
    return make_mesh()


def _batch(mesh):
    k0, k1 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k0, (N, 2))
    x1 = jax.random.normal(k1, (N, 2)) + 1.0
    labels = jnp.arange(N) % 4
    put = lambda a: jax.device_put(a, batch_sharding(mesh))  # noqa: E731
    return put(x0), (put(x1), put(labels))


@pytest.mark.parametrize(
    "coupling",
    [
        couplings.exact_ot(),
        couplings.stable_matching(),
        couplings.sinkhorn(0.1),
        couplings.conditional(couplings.exact_ot()),  # its label check runs per shard
    ],
    ids=["exact_ot", "stable_matching", "sinkhorn", "conditional"],
)
def test_each_shard_is_coupled_on_its_own(mesh, coupling):
    key = jax.random.key(1)
    x0, x1 = _batch(mesh)
    y0, (y1, labels) = jax.jit(couplings.sharded(coupling, mesh))(key, x0, x1)
    rows = N // SHARDS
    for s in range(SHARDS):
        part = slice(s * rows, (s + 1) * rows)
        want0, (want1, want_labels) = jax.jit(coupling)(
            jax.random.fold_in(key, s), x0[part], (x1[0][part], x1[1][part])
        )
        np.testing.assert_allclose(y0[part], want0, rtol=1e-6)
        np.testing.assert_allclose(y1[part], want1, rtol=1e-6)
        np.testing.assert_array_equal(labels[part], want_labels)


def test_global_batch_is_one_coupling(mesh):
    key = jax.random.key(2)
    x0, x1 = _batch(mesh)
    coupling = couplings.exact_ot()
    got = jax.jit(couplings.sharded(coupling, mesh, global_batch=True))(key, x0, x1)
    whole = jax.jit(coupling)(
        key, np.asarray(x0), (np.asarray(x1[0]), np.asarray(x1[1]))
    )
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, whole)
    assert got[0].sharding.is_equivalent_to(batch_sharding(mesh), 2)


def test_sharded_train_step_runs(mesh):
    """The sharded step regresses each shard's exactly coupled pairs.

    Its loss equals the loss of the pairs coupled here from the step's own keys
    (`fold_in(state.key, step)` split into data, source, coupling and loss keys),
    each shard of 8 rows by SciPy's linear assignment (exact OT keeps `x0` and
    permutes `x1`; it uses no key). Tolerance 1e-5: float32, the mean over the rows
    summed per device, then across devices.
    """
    module = models.MLP(width=16, depth=2, activation="silu")
    model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(2))
    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    opt = optax.adam(1e-3)
    source = data.Gaussian(2)
    # Rows drawn by index, independently (a Moons() batch comes ordered along the
    # moons, so each shard would hold one arc).
    target = data.Empirical(data.Moons().sample(jax.random.key(4), 1000))
    step = make_train_step(
        model_fn,
        loss,
        opt,
        source=source,
        batch_size=N,
        coupling=couplings.sharded(couplings.exact_ot(), mesh),
        mesh=mesh,
    )
    state = init_state(jax.random.key(3), params, opt)
    _, metrics = jax.jit(step)(state, target)
    assert np.isfinite(metrics["loss"])

    key = jax.random.fold_in(state.key, state.step)
    k_data, k_source, _, k_loss = jax.random.split(key, 4)
    x1 = np.asarray(target.sample(k_data, N))
    x0 = np.asarray(source.sample(k_source, N)).astype(x1.dtype)
    rows = N // SHARDS
    perm = np.concatenate(
        [
            s * rows
            + linear_sum_assignment(cdist(x0[part], x1[part], "sqeuclidean"))[1]
            for s in range(SHARDS)
            for part in [slice(s * rows, (s + 1) * rows)]
        ]
    )
    regress = jax.jit(lambda y0, y1: loss(model_fn, params, k_loss, y0, y1)[0])
    coupled, drawn = regress(x0, x1[perm]), regress(x0, x1)
    np.testing.assert_allclose(metrics["loss"], coupled, rtol=1e-5)
    # Coupling within shards of 8 rows still shortens the pairs: at these keys the
    # loss is 3.73 against 7.32 for the drawn pairs, so skipping the coupling fails.
    assert float(coupled) < 0.8 * float(drawn)


def test_axis_must_be_in_the_mesh(mesh):
    with pytest.raises(ValueError, match="axis"):
        couplings.sharded(couplings.exact_ot(), mesh, axis="model")
