"""Stable matching: no blocking pair, proposer-optimal, greedy when there are no ties.

Stability is checked directly: a pair `(i, j)` blocks `sigma` when both would rather
be together than with their partners. `test_the_checker_finds_blocking_pairs` shows
that the check has power: on small matrices every other permutation is flagged.
"""

import itertools

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


def _greedy(cost: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Take the cheapest remaining pair first (the stable matching without ties).

    `order`: the flat indices of the pairs in the order to take them (default by
    cost, ties in row-major order).
    """
    n = len(cost)
    sigma, free_rows, free_cols = -np.ones(n, int), set(range(n)), set(range(n))
    if order is None:
        order = np.argsort(cost, axis=None, kind="stable")
    for flat in order:
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


# Small matrices: all 5! = 120 permutations are enumerated, as a reference.
SMALL = 5
PERMUTATIONS = np.array(list(itertools.permutations(range(SMALL))))


def _ranks(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strict ranks with the docstring's tie rule: ties go to the lower index.

    `row_rank[i, j]` is the place of column `j` in row `i`'s list (by `(C_ij, j)`),
    `col_rank[i, j]` the place of row `i` in column `j`'s list (by `(C_ij, i)`).
    """
    n = len(cost)
    row_rank = np.empty((n, n), int)
    col_rank = np.empty((n, n), int)
    for i in range(n):
        row_rank[i, sorted(range(n), key=lambda j: (cost[i, j], j))] = range(n)
    for j in range(n):
        col_rank[sorted(range(n), key=lambda i: (cost[i, j], i)), j] = range(n)
    return row_rank, col_rank


def _stable_permutations(row_pref: np.ndarray, col_pref: np.ndarray) -> np.ndarray:
    """Every permutation of `PERMUTATIONS` with no pair `(i, j)` such that
    `row_pref[i, j] < row_pref[i, sigma(i)]` and `col_pref[i, j] <
    col_pref[sigma^-1(j), j]` (lower is preferred)."""
    rows = np.arange(SMALL)
    inverse = np.argsort(PERMUTATIONS, axis=1)
    row_held = row_pref[rows, PERMUTATIONS]  # (perm, i): row i's partner
    col_held = col_pref[inverse, rows]  # (perm, j): column j's partner
    blocks = (row_pref[None] < row_held[:, :, None]) & (
        col_pref[None] < col_held[:, None, :]
    )
    return PERMUTATIONS[~blocks.any(axis=(1, 2))]


@given(
    hnp.arrays(
        np.float64,
        (SMALL, SMALL),
        elements=st.floats(0, 10, allow_subnormal=False),
        unique=True,
    )
)
def test_the_checker_finds_blocking_pairs(cost):
    """Distinct costs shared by both sides: exactly one stable matching, `sigma`.

    A common cost ranks all pairs in one order, so the cheapest pair must be
    matched in any stable matching, then the cheapest among the rest, ...: the
    greedy matching is the only stable one. Both checkers flag every one of the
    other 119 permutations (the identity among them, unless it is the greedy one).
    """
    sigma = np.asarray(match(jnp.asarray(cost)))
    stable = _stable_permutations(cost, cost)
    np.testing.assert_array_equal(stable, sigma[None])
    np.testing.assert_array_equal(sigma, _greedy(cost))
    for tau in PERMUTATIONS:
        assert (_blocking_pairs(cost, tau) == []) == np.array_equal(tau, sigma)


def test_the_identity_has_blocking_pairs():
    """On 20 random 7 x 7 matrices the identity is never stable; `sigma` always is."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        cost = rng.uniform(size=(N, N))
        assert _blocking_pairs(cost, np.arange(N)) != []
        assert _blocking_pairs(cost, np.asarray(match(jnp.asarray(cost)))) == []


@given(hnp.arrays(np.float64, (SMALL, SMALL), elements=st.integers(0, 2).map(float)))
def test_ties_go_to_the_lower_index(cost):
    """Many ties: `sigma` is the one matching stable for the docstring's rule.

    With ties broken towards the lower index, row `i` ranks `(i, j)` before
    `(i, j')` when `(C_ij, j) < (C_ij', j')`, and column `j` ranks `(i, j)` before
    `(i', j)` when `(C_ij, i) < (C_i'j, i')`. Both agree with one order of all
    pairs, by `(C_ij, i + j)` (two pairs tied in it share no row or column, so no
    one compares them), so the stable matching for these strict preferences is
    unique: the greedy one in that order. A rule that broke ties otherwise on
    either side gives another matching on many of these matrices.
    """
    row_rank, col_rank = _ranks(cost)
    sigma = np.asarray(match(jnp.asarray(cost)))
    np.testing.assert_array_equal(_stable_permutations(row_rank, col_rank), sigma[None])
    i, j = np.divmod(np.arange(SMALL * SMALL), SMALL)
    order = np.lexsort((i + j, cost.reshape(-1)))  # by cost, then i + j
    np.testing.assert_array_equal(sigma, _greedy(cost, order))
    # Stable in the weak sense too (strict < in cost), as in `test_no_blocking_pair`.
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
