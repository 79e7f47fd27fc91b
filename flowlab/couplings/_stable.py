r"""Stable matching (multisample flow matching's "Stable" coupling): Gale–Shapley."""

from typing import TYPE_CHECKING, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int

from .. import registry
from ._base import AbstractPermutationCoupling, costs, ground_cost

if TYPE_CHECKING:
    from ..manifolds import AbstractManifold

__all__ = ["StableMatching", "stable_match", "stable_matching"]


class _State(NamedTuple):
    next: Int[Array, " n"]  # position in each proposer's list of its next proposal
    partner: Int[Array, " n"]  # target held by each proposer, or -1
    holder: Int[Array, " n"]  # proposer held by each target, or n


def stable_match(cost: Float[Array, "n n"]) -> Int[Array, " n"]:
    r"""The proposer-optimal stable matching for preferences by increasing cost.

    Row $i$ (a proposer) ranks the columns by $C_{i\cdot}$, column $j$ ranks the rows
    by $C_{\cdot j}$; ties go to the lower index. Gale–Shapley with parallel rounds
    (McVitie–Wilson): every free row proposes to the best column it has not yet
    proposed to, and each column keeps the best of its holder and its proposers.
    The order of proposals does not change the result. At most $n^2$ proposals.

    Args:
        cost: a square cost matrix.

    Returns:
        `sigma` with `sigma[i]` the column matched to row `i`: a permutation with no
        blocking pair $(i, j)$, $C_{ij} < C_{i\sigma(i)}$ and $C_{ij} <
        C_{\sigma^{-1}(j) j}$.
    """
    n = cost.shape[0]
    if cost.ndim != 2 or cost.shape[1] != n:
        raise ValueError(f"cost must be a square matrix, got shape {cost.shape}.")
    rows = jnp.arange(n, dtype=jnp.int32)
    order = jnp.argsort(cost, axis=1, stable=True).astype(jnp.int32)
    inf = jnp.asarray(jnp.inf, cost.dtype)

    def propose(s: _State) -> _State:
        free = s.partner < 0
        target = order[rows, jnp.minimum(s.next, n - 1)]
        offer = jnp.where(free, cost[rows, target], inf)
        best = jnp.full(n, inf, cost.dtype).at[target].min(offer)
        first = free & (offer == best[target])
        winner = jnp.full(n, n, jnp.int32).at[target].min(jnp.where(first, rows, n))
        held = s.holder < n
        held_cost = jnp.where(held, cost[jnp.minimum(s.holder, n - 1), rows], inf)
        accept = (winner < n) & (
            (best < held_cost) | ((best == held_cost) & (winner < s.holder))
        )
        dropped = jnp.where(accept & held, s.holder, n)
        partner = s.partner.at[dropped].set(-1, mode="drop")
        partner = partner.at[jnp.where(accept, winner, n)].set(rows, mode="drop")
        return _State(
            next=jnp.where(free, s.next + 1, s.next),
            partner=partner,
            holder=jnp.where(accept, winner, s.holder),
        )

    start = _State(jnp.zeros(n, jnp.int32), jnp.full(n, -1, jnp.int32), rows * 0 + n)
    return lax.while_loop(lambda s: jnp.any(s.partner < 0), propose, start).partner


class StableMatching(AbstractPermutationCoupling):
    r"""Re-pair `x1` to `x0` by a stable matching of the cost preferences.

    Each `x0` row prefers the `x1` rows of lower cost and vice versa; the matching
    is stable: no pair $(i, j)$ would both rather be together than with their
    partners. `x0` proposes (Gale–Shapley), keeps its order, and `x1` is permuted,
    so both marginals are preserved. With costs that are symmetric in this sense and
    without ties the stable matching is unique: the greedy matching that takes the
    cheapest remaining pair first. The key is not used.

    Attributes:
        cost_fn: the ground cost (an ott-jax `CostFn`, squared Euclidean by
            default); row `i` of the cost ranks the `x1` rows for `x0[i]` and
            column `j` ranks the `x0` rows for `x1[j]`, so only its order matters.
    """

    cost_fn: "costs.CostFn" = eqx.field(default_factory=lambda: costs.SqEuclidean())

    def permutation(self, cost: Float[Array, "n n"]) -> Int[Array, " n"]:
        return stable_match(cost)


@registry.register("coupling", "stable_matching")
def stable_matching(
    cost_fn: "costs.CostFn | None" = None,
    *,
    manifold: "AbstractManifold | str | None" = None,
) -> StableMatching:
    """The stable-matching coupling (multisample flow matching, "Stable").

    Args:
        cost_fn: an ott-jax `CostFn`; `None` for `costs.SqEuclidean()`.
        manifold: points on a manifold: the preferences rank the squared
            geodesic distance, `GeodesicCost(manifold)` (see `exact_ot`).
    """
    return StableMatching(ground_cost(cost_fn, manifold))
