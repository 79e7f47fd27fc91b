"""The exact OT coupling: optimal, a permutation, rows together, any ott cost."""

import chex
import coupling_cases as cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import costs

from flowlab import couplings

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: exact OT at the input shapes several tests use; they are never
# in the persistent XLA cache (equinox's `error_if` is a host callback), so a second
# worker compiled them again.
pytestmark = pytest.mark.xdist_group("exact_ot")

# x64 (the suite's default): the assignment is certified optimal to eps64 / 2 of its
# cost; 1e-12 covers the float64 sums that compare it with scipy's (n * eps64).
REL = 1e-12
couple = jax.jit(couplings.exact_ot())  # one compilation per input shape


def _pairs_cost(x0, x1):
    return float(((np.asarray(x0) - np.asarray(x1)) ** 2).sum(-1).sum())


@pytest.mark.parametrize("kind", ["gaussian_shift", "moons_normal"])
def test_cost_is_optimal_and_x1_is_permuted(kind, key):
    x0, x1 = cases.batch(kind, 32, 11)
    y0, y1 = couple(key, jnp.asarray(x0), jnp.asarray(x1))
    np.testing.assert_array_equal(y0, x0)  # x0 keeps its order
    np.testing.assert_array_equal(  # marginals: x1's rows, each once
        np.sort(np.asarray(y1), axis=0), np.sort(x1, axis=0)
    )
    best = cases.optimum(cases.sq_cost(x0, x1))
    assert _pairs_cost(y0, y1) <= best * (1 + REL)


def test_rows_move_together(key):
    n = 32
    x0, x1 = cases.batch("gaussian_shift", n, 12)
    ids = np.arange(n)
    cond = (x1 * 10).astype(np.float32)  # a float leaf derived from the row
    xs = (jnp.asarray(x0), {"id": jnp.asarray(ids)})
    ys = (jnp.asarray(x1), (jnp.asarray(ids + 100), jnp.asarray(cond), None))
    out0, out1 = jax.jit(couplings.exact_ot())(key, xs, ys)
    points, (row_id, row_cond, none) = out1
    assert none is None
    np.testing.assert_array_equal(out0[1]["id"], ids)
    np.testing.assert_array_equal(np.asarray(points), x1[np.asarray(row_id) - 100])
    np.testing.assert_array_equal(np.asarray(row_cond), cond[np.asarray(row_id) - 100])


def test_multi_dimensional_points_are_flattened(key):
    x0, x1 = cases.batch("gaussian_shift", 16, 13)
    img0, img1 = x0.reshape(16, 1, 2, 1), x1.reshape(16, 2, 1)
    y0, y1 = jax.jit(couplings.exact_ot())(key, jnp.asarray(img0), jnp.asarray(img1))
    assert y1.shape == img1.shape
    best = cases.optimum(cases.sq_cost(x0, x1))
    assert _pairs_cost(y0.reshape(16, 2), y1.reshape(16, 2)) <= best * (1 + REL)


@pytest.mark.parametrize(
    ("cost_fn", "reference"),
    [
        (costs.Euclidean(), lambda d: np.sqrt((d**2).sum(-1))),
        pytest.param(
            costs.PNormP(1.0), lambda d: np.abs(d).sum(-1), marks=pytest.mark.slow
        ),
    ],
)
def test_any_ott_cost(cost_fn, reference, key):
    x0, x1 = cases.batch("moons_normal", 48, 14)
    coupling = couplings.exact_ot(cost_fn)
    _, y1 = jax.jit(coupling)(key, jnp.asarray(x0), jnp.asarray(x1))
    matrix = reference(x0[:, None, :] - x1[None, :, :])
    got = reference(x0 - np.asarray(y1)).sum()
    assert got <= cases.optimum(matrix) * (1 + REL)


def test_float32_in_float32_out(key):
    # multiples of 1/256 in [-4, 4]: float32 costs exact in any summation order, so
    # the reference sees the matrix the jitted coupling saw
    x0, x1 = (
        np.clip(np.round(a * 256), -1024, 1024) / 256
        for a in cases.batch("gaussian_shift", 32, 15)
    )
    with jax.enable_x64(False):
        y0, (y1, ids) = jax.jit(couplings.exact_ot())(
            key,
            jnp.asarray(x0, jnp.float32),
            (jnp.asarray(x1, jnp.float32), jnp.arange(32)),
        )
    assert y0.dtype == y1.dtype == jnp.float32
    assert cases.is_permutation(ids)
    np.testing.assert_array_equal(y1, x1[np.asarray(ids)])
    # optimal for its float32 costs to 1e-7 (their certified resolution, 6e-8)
    cost = cases.sq_cost(x0, x1)
    assert cost[np.arange(32), np.asarray(ids)].sum() <= cases.optimum(cost) * (
        1 + 1e-7
    )


def test_second_call_does_not_retrace(key):
    coupling = couplings.exact_ot()
    traced = chex.assert_max_traces(lambda k, a, b: coupling(k, a, b), n=1)
    run = jax.jit(traced)
    x0, x1 = cases.batch("gaussian_same", 32, 16)
    for shift in (0.0, 1.0):
        run(key, jnp.asarray(x0), jnp.asarray(x1 + shift))


@pytest.mark.slow  # eager while-loops compile op by op: ~3 s
def test_jit_and_eager_agree(key):
    x0, x1 = (jnp.asarray(a) for a in cases.batch("gaussian_same", 4, 17))
    eager = couplings.exact_ot()(key, x0, x1)
    jitted = jax.jit(couplings.exact_ot())(key, x0, x1)
    chex.assert_trees_all_equal(eager, jitted)


def test_unequal_batches_name_x0_and_x1(key):
    with pytest.raises(ValueError, match=r"x0 \[\(10, 2\)\] and x1 \[\(12, 2\)\]"):
        couplings.exact_ot()(key, jnp.zeros((10, 2)), jnp.zeros((12, 2)))


def test_leaves_must_share_the_batch(key):
    with pytest.raises(ValueError, match="share the batch"):
        couplings.exact_ot()(key, jnp.zeros((4, 2)), (jnp.zeros((4, 2)), jnp.ones(5)))


def test_points_must_be_floating(key):
    with pytest.raises(TypeError, match="floating"):
        couplings.exact_ot()(key, jnp.zeros((4, 2)), (jnp.arange(4), jnp.ones((4, 2))))
