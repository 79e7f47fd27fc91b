"""Stable matching: no blocking pair, a permutation, greedy when there are no ties."""

import coupling_cases as cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flowlab import couplings
from flowlab.couplings import stable_match

N = 7
match = jax.jit(stable_match)


def _blocking_pairs(cost: np.ndarray, sigma: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (i, j) that strictly prefer each other to their partners."""
    n = len(sigma)
    inverse = np.argsort(sigma)
    return [
        (i, j)
        for i in range(n)
        for j in range(n)
        if cost[i, j] < cost[i, sigma[i]] and cost[i, j] < cost[inverse[j], j]
    ]


def _greedy(cost: np.ndarray) -> np.ndarray:
    """Take the cheapest remaining pair first (the stable matching without ties)."""
    n = len(cost)
    sigma, free_rows, free_cols = -np.ones(n, int), set(range(n)), set(range(n))
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), n)
        if i in free_rows and j in free_cols:
            sigma[i] = j
            free_rows.remove(i)
            free_cols.remove(j)
    return sigma


@given(
    hnp.arrays(
        np.float64,
        (N, N),
        # XLA flushes subnormals to zero, so they are left out
        elements=st.one_of(
            st.integers(0, 4).map(float), st.floats(0, 10, allow_subnormal=False)
        ),
    )
)
def test_no_blocking_pair(cost):
    """Random preferences (with ties from the integer draws): stable and one-to-one."""
    sigma = np.asarray(match(jnp.asarray(cost)))
    assert cases.is_permutation(sigma)
    assert _blocking_pairs(cost, sigma) == []


@pytest.mark.parametrize("kind", ["gaussian_shift", "moons_normal"])
def test_equals_greedy_without_ties(kind):
    x0, x1 = cases.batch(kind, 128, 31)
    cost = cases.sq_cost(x0, x1)
    np.testing.assert_array_equal(match(jnp.asarray(cost)), _greedy(cost))


def test_coupling_keeps_x0_and_permutes_x1(key):
    x0, x1 = (jnp.asarray(a) for a in cases.batch("gaussian_shift", 32, 32))
    labels = jnp.arange(32)
    y0, (y1, moved) = jax.jit(couplings.stable_matching())(key, x0, (x1, labels))
    np.testing.assert_array_equal(y0, x0)
    np.testing.assert_array_equal(y1, np.asarray(x1)[np.asarray(moved)])
    assert cases.is_permutation(moved)


def test_unequal_batches_raise(key):
    with pytest.raises(ValueError, match="same number of rows"):
        couplings.stable_matching()(key, jnp.zeros((3, 2)), jnp.zeros((4, 2)))
