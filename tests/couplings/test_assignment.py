"""The on-device linear assignment solver against scipy's `linear_sum_assignment`.

Tolerances. With x64 (the suite's default) the solver refines until its certificate
bounds the excess over the optimum by eps64 / 2 (1.1e-16) of the cost (plus a few
eps64 of the first stage's bound), so what remains is the rounding of the float64
sums that compare the two pairings, at most n * eps64 = 2.3e-13 relative at n = 1024:
1e-12 is above that. Float32 costs (x64 on or off) are certified to eps32 / 2 (6e-8)
of their cost: 1e-7 (the issue's acceptance bound). The x64-off path has its own
file, test_exact_ot_float32.py.
"""

import coupling_cases as cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flowlab.couplings import _assignment, linear_assignment

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: `linear_assignment` at the shapes several tests use; they are
# never in the persistent XLA cache (equinox's `error_if` is a host callback), so a
# second worker compiled them again.
pytestmark = pytest.mark.xdist_group("assignment")

REL = 1e-12  # float64 costs (see the module docstring)
REL32 = 1e-7  # float32 costs
solve = jax.jit(linear_assignment)
certified = jax.jit(lambda c: _assignment._assign(c, scan=True))


def _check_optimal(cost: np.ndarray, sigma, rel=REL):
    assert cases.is_permutation(sigma)
    got = cost[np.arange(len(cost)), np.asarray(sigma)].sum()
    best = cases.optimum(cost)
    assert got <= best + rel * max(abs(best), 1e-12), (got, best)


@pytest.mark.parametrize("kind", cases.KINDS)
@pytest.mark.parametrize(("n", "seed"), [(5, 0), (64, 1), (256, 2)])
def test_matches_scipy(kind, n, seed):
    x0, x1 = cases.batch(kind, n, seed)
    cost = cases.sq_cost(x0, x1)
    _check_optimal(cost, solve(jnp.asarray(cost)))


@pytest.mark.parametrize("kind", ["gaussian_shift", "moons_normal"])
def test_matches_scipy_at_1024(kind):
    x0, x1 = cases.batch(kind, 1024, 3)
    cost = cases.sq_cost(x0, x1)
    _check_optimal(cost, solve(jnp.asarray(cost)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", cases.KINDS)
@pytest.mark.parametrize(("n", "seed"), [(512, 4), (1024, 5), (1000, 6)])
def test_matches_scipy_more(kind, n, seed):
    x0, x1 = cases.batch(kind, n, seed)
    cost = cases.sq_cost(x0, x1)
    _check_optimal(cost, solve(jnp.asarray(cost)))


def test_float32_without_x64_is_exact_and_stays_a_permutation():
    n = 256
    x0, x1 = cases.batch("gaussian_shift", n, 7)
    cost = np.asarray(cases.sq_cost(x0, x1), np.float32)
    with jax.enable_x64(False):
        sigma = jax.jit(linear_assignment)(jnp.asarray(cost))
        assert sigma.dtype == jnp.int32
    _check_optimal(cost.astype(np.float64), sigma, rel=REL32)


def test_x64_float64_costs_are_refined_to_float64():
    """1-D: one stage of 2**44 levels leaves a certificate far above float64's
    resolution of the cost; the refinement reaches it."""
    rng = np.random.default_rng(10)
    x0, x1 = rng.normal(size=256), rng.normal(size=256)
    cost = (x0[:, None] - x1[None, :]) ** 2
    sigma, stages, cert = certified(jnp.asarray(cost))
    got = cost[np.arange(256), np.asarray(sigma)].sum()
    assert int(stages) == 2
    assert float(cert) <= np.finfo(np.float64).eps / 2 * got
    _check_optimal(cost, sigma)


def test_x64_float32_costs_take_one_stage():
    """Float32 costs under x64 are solved in float64 with 64-bit integers: one stage
    already certifies them to float32's resolution (1-D: the hardest case)."""
    rng = np.random.default_rng(11)
    x0, x1 = rng.normal(size=512), rng.normal(size=512)
    cost = ((x0[:, None] - x1[None, :]) ** 2).astype(np.float32)
    sigma, stages, _ = certified(jnp.asarray(cost))
    assert int(stages) == 1
    _check_optimal(cost.astype(np.float64), sigma, rel=REL32)


@given(hnp.arrays(np.int64, (6, 6), elements=st.integers(0, 3)))
def test_small_integer_costs_with_ties(cost):
    _check_optimal(cost.astype(np.float64), solve(jnp.asarray(cost, jnp.float64)))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_and_constant(n):
    sigma = solve(jnp.zeros((n, n)))
    assert cases.is_permutation(sigma)


def test_all_equal_costs_give_a_permutation():
    sigma = solve(jnp.asarray(np.full((64, 64), 3.0)))
    assert cases.is_permutation(sigma)


def test_forbidden_blocks_are_never_used():
    n = 64
    x0, x1 = cases.batch("gaussian_shift", n, 8)
    rng = np.random.default_rng(8)
    l0, l1 = rng.permutation(np.arange(n) % 3), rng.permutation(np.arange(n) % 3)
    cost = cases.sq_cost(x0, x1)
    masked = np.where(l0[:, None] == l1[None, :], cost, np.inf)
    sigma = np.asarray(solve(jnp.asarray(masked)))
    assert cases.is_permutation(sigma)
    assert (l0 == l1[sigma]).all()
    big = np.where(np.isfinite(masked), masked, 1e6)  # scipy needs finite costs
    _check_optimal(big, sigma)


@pytest.mark.parametrize(
    ("kind", "n"), [("moons_normal", 64), ("gaussian_shift", 256), ("duplicates", 128)]
)
def test_row_reduction_path_matches_scipy(kind, n):
    """The accelerator path (row-wise reductions, no column scan), run on CPU."""
    x0, x1 = cases.batch(kind, n, 9)
    cost = cases.sq_cost(x0, x1)
    run = jax.jit(lambda c: _assignment._assign(c, scan=False)[0])
    _check_optimal(cost, run(jnp.asarray(cost)))


def test_non_square_is_rejected():
    with pytest.raises(ValueError, match="square"):
        linear_assignment(jnp.zeros((3, 4)))


def test_a_row_without_finite_costs_raises():
    cost = np.random.default_rng(0).random((8, 8))
    cost[3] = np.nan  # e.g. a NaN input point
    with pytest.raises(Exception, match="no finite entry"):
        jax.block_until_ready(solve(jnp.asarray(cost)))


def test_batched_under_vmap_each_problem_is_optimal():
    """Under `vmap` every element runs until all are done: a finished problem must
    not spin in the shortest-path search (it used to, without any free row)."""
    sizes = jax.random.uniform(jax.random.key(3), (6, 1, 1), minval=0.1, maxval=10)
    costs = jax.random.uniform(jax.random.key(4), (6, 16, 16)) * sizes
    sigmas = jax.jit(jax.vmap(linear_assignment))(costs)
    for cost, sigma in zip(np.asarray(costs), np.asarray(sigmas), strict=True):
        _check_optimal(cost, sigma)
