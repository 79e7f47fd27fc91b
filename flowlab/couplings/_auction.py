r"""The ε-scaling auction with shortest-path tails on integer benefits, inside `jit`.

`solve(problem, start, scan)` maximises $\sum_i a_{i\sigma(i)}$ over permutations
for integer benefits $a_{ij} \in [-C, 0]$ ($C$ = `Problem.span`) and returns a
complete assignment with its prices $p$ in ε-complementary slackness for
$\varepsilon = 1$ (1-CS: every row holds a column within 1 of its best value $a_{ij}
- p_j$), so within $n$ of the optimum (Bertsekas 1988). `linear_assignment`
(`_assignment.py`) quantises a cost matrix into such problems and refines.

**Auction (Bertsekas).** Phases divide ε by `THETA` down to 1; each keeps the pairs
that still satisfy ε-CS, then every free row bids at once (Jacobi): row $i$ offers
for its best column $j$ the price $p_j + v_1 - v_2 + \varepsilon$ ($v_1, v_2$: its
best and second values), each column goes to its highest bidder, the previous
holder becomes free. Among equal values a row takes a tie at or after its own
index, so duplicated points do not all bid for one column. Few free rows bid from
gathered rows of $a$ (`LADDER`, `LADDER_SCAN`); all rows bid in one pass over the
columns. On a CPU both are loops over the columns that update every row's best and
second values elementwise, which vectorises where row-wise reductions do not.

**Starting prices.** Column reduction ($p_j = \max_i a_{ij}$) leaves every row
wanting the same few columns when the two batches are apart (a translated cloud),
and Jacobi rounds then place a handful of rows each. Instead `entropic_start` runs
`SINKHORN` log-domain Sinkhorn sweeps at the first phase's regularisation, whose
column potentials give prices that spread the rows' choices, made exact by a column
c-transform (each column's best row takes it, with exact CS). `warm_start` starts
from a given assignment at zero prices instead (the refinement stages of
`linear_assignment`, whose residual costs already have the previous prices in them).

**Shortest-path tails.** Jacobi rounds end a phase with long single-bidder price
wars. Phases other than the last `PATHS` stop bidding at `TAIL` free rows and hand
them to the next phase (ε-scaling needs no complete assignment until the end). The
last phases, and any phase whose rounds stall (`STALL` rounds without fewer free
rows, as among duplicated points), place the remaining rows by Hungarian steps:
Dijkstra from the free rows over the reduced costs $r_{ij} = c_{ij} + p_j -
\min_k(c_{ik} + p_k) \ge 0$ ($c = -a$, matched pairs counted 0) to the nearest
free column, then $p_j \mathrel{+}= D - d_j$ on the scanned columns. This keeps
ε-CS for every matched pair and makes the new pairs tight (so they survive the
next division of ε), and the last phase ends with a complete assignment in 1-CS.

Benefits equal to `forbidden(dtype)` mark forbidden pairs (the conditional
coupling): they must form blocks (pairs across the classes of an equivalence
relation), each block with as many rows as columns. Prices are then renormalised per
block at each phase. Prices stay within $3C$ of their minimum, so $C$ at most
`iinfo.max / 16` (`/ 64` with forbidden pairs) cannot overflow.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Int

__all__ = ["Problem", "State", "entropic_start", "forbidden", "solve", "warm_start"]

THETA = 8  # ε shrinks by this factor per phase
TAIL = 8  # free rows a phase leaves to the next one, or to shortest augmenting paths
PATHS = 3  # the last phases complete their assignment by shortest augmenting paths
STALL = 32  # bidding rounds without fewer free rows: shortest paths take over
LADDER = (16, 64, 256)  # compacted bidding rounds (row reductions): each ≤ n / 16
LADDER_SCAN = (16, 64, 128, 256)  # compacted bidding rounds (column scans): ≤ n / 2
EPS0 = 64  # the first phase has ε = C / EPS0
SINKHORN = 3  # entropic iterations for the starting prices, at regularisation C / EPS0


class State(NamedTuple):
    prices: Int[Array, " n"]  # p_j of each column
    owner: Int[Array, " n"]  # row holding column j, or -1
    col: Int[Array, " n"]  # column held by row i, or -1
    eps: Int[Array, ""]


class Problem(NamedTuple):
    a: Int[Array, "n n"]  # benefits a_ij (rows: persons, columns: objects)
    at: Int[Array, "n n"]  # a transposed, for the CPU's full bidding round
    span: Int[Array, ""]  # range C of the allowed benefits
    blocks: Bool[Array, ""]  # whether some pairs are forbidden


def forbidden(dtype) -> int:
    """The benefit of a forbidden pair: below every allowed value minus any price."""
    return -(jnp.iinfo(dtype).max // 4)


def _inf(dtype):
    """Distances' infinity."""
    return jnp.asarray(jnp.iinfo(dtype).max, dtype)


def _low(dtype) -> int:
    """A value below every benefit minus any price (masks in the reductions)."""
    return -(jnp.iinfo(dtype).max // 2)


def _top2(v: Int[Array, "k n"], rows: Int[Array, " k"]):
    """Best column, best and second values of each row of `v` (ties: see module)."""
    n = v.shape[1]
    cols = jnp.arange(n, dtype=jnp.int32)
    v1 = v.max(axis=1)
    rel = cols[None, :] - rows[:, None]  # the first tie at or after the row's index
    rel = jnp.where(rel < 0, rel + n, rel)
    j1 = jnp.min(jnp.where(v == v1[:, None], rel, n), axis=1) + rows
    j1 = jnp.where(j1 >= n, j1 - n, j1)
    v2 = jnp.max(jnp.where(cols[None, :] == j1[:, None], _low(v.dtype), v), axis=1)
    return j1, v1, v2


def _free_rows(size: int, s: State):
    """The first `size` free rows (padded with row 0) and which of them are real."""
    free = s.col < 0
    rows = jnp.nonzero(free, size=size, fill_value=0)[0].astype(jnp.int32)
    return rows, jnp.arange(size) < free.sum()


def _bid_compact(size: int, prob: Problem, s: State):
    """Bids of up to `size` free rows by row-wise reductions (accelerators)."""
    rows, valid = _free_rows(size, s)
    return rows, valid, *_top2(prob.a[rows] - s.prices[None, :], rows)


def _bid_all_rows(prob: Problem, s: State):
    """Bids of every row at once by row-wise reductions (accelerators)."""
    rows = jnp.arange(prob.a.shape[0], dtype=jnp.int32)
    return rows, s.col < 0, *_top2(prob.a - s.prices[None, :], rows)


def _scan_top2(at: Int[Array, "n k"], prices: Int[Array, " n"], rows: Int[Array, " k"]):
    """Best column, best and second values of `rows`, from their columns `at`.

    A loop over the columns that updates every row's best and second values
    elementwise vectorises well on a CPU, where three row-wise reductions do not.
    Ties: the last tied column at or after the row's index, else the first one.
    """
    n = at.shape[0]
    low = jnp.full(rows.shape, _low(at.dtype), at.dtype)

    def body(j, carry):
        v1, v2, j1 = carry
        v = at[j] - prices[j]
        gt = v > v1
        better = gt | ((v == v1) & (j >= rows))
        v2 = jnp.where(gt, v1, jnp.maximum(v2, v))
        return jnp.maximum(v, v1), v2, jnp.where(better, j, j1)

    v1, v2, j1 = lax.fori_loop(0, n, body, (low, low, rows * 0), unroll=16)
    return j1, v1, v2


def _bid_compact_scan(size: int, prob: Problem, s: State):
    """Bids of up to `size` free rows: their rows of `a`, transposed, scanned (CPU)."""
    rows, valid = _free_rows(size, s)
    return rows, valid, *_scan_top2(prob.a[rows].T, s.prices, rows)


def _bid_all_scan(prob: Problem, s: State):
    """Bids of every row at once: one pass over the columns of `a` (CPU)."""
    rows = jnp.arange(prob.a.shape[0], dtype=jnp.int32)
    return rows, s.col < 0, *_scan_top2(prob.at, s.prices, rows)


def _round(prob: Problem, s: State, scan: bool) -> State:
    """One Jacobi bidding round of every free row (compacted when few are free)."""
    n = prob.a.shape[0]
    low = _low(prob.a.dtype)
    if scan:
        ladder = [k for k in LADDER_SCAN if k <= n // 2]
        compact, full = _bid_compact_scan, _bid_all_scan
    else:
        ladder = [k for k in LADDER if k <= n // 16]
        compact, full = _bid_compact, _bid_all_rows

    def settle(bids):
        rows, valid, j1, v1, v2 = bids
        v2 = jnp.maximum(v2, v1 - prob.span - s.eps)  # if the second is forbidden
        bid = jnp.where(valid, s.prices[j1] + v1 - v2 + s.eps, low)
        best = jnp.full(n, low, prob.a.dtype).at[j1].max(bid)
        win = (
            jnp.full(n, n, jnp.int32)
            .at[j1]
            .min(jnp.where(valid & (bid == best[j1]), rows, n))
        )
        return best, win

    branches = [lambda k=k: settle(compact(k, prob, s)) for k in ladder]
    branches.append(lambda: settle(full(prob, s)))
    count = (s.col < 0).sum()
    which = jnp.searchsorted(jnp.asarray(ladder + [n], jnp.int32), count)
    best, win = lax.switch(which, branches)
    got = win < n
    cols = jnp.arange(n, dtype=jnp.int32)
    col = s.col.at[jnp.where(got & (s.owner >= 0), s.owner, n)].set(-1, mode="drop")
    col = col.at[jnp.where(got, win, n)].set(cols, mode="drop")
    return s._replace(
        prices=jnp.where(got, best, s.prices),
        owner=jnp.where(got, win, s.owner),
        col=col,
    )


def _reduced(prob: Problem, prices, rows):
    r"""Reduced costs $r_{ij} = c_{ij} + p_j - \min_k (c_{ik} + p_k)$ of `rows`."""
    dtype = prob.a.dtype
    a = prob.a[rows]
    allowed = a > forbidden(dtype)
    reduced = prices.reshape((1,) * (a.ndim - 1) + (-1,)) - a
    low = jnp.min(jnp.where(allowed, reduced, _inf(dtype)), axis=-1, keepdims=True)
    return jnp.where(allowed, reduced - low, _inf(dtype))


def _augment(prob: Problem, s: State) -> State:
    """Place one free row along a shortest augmenting path (Hungarian step).

    Dijkstra from every free row at once over the reduced costs (matched pairs
    count 0) until it reaches a free column; the scanned columns' prices rise by
    $D - d_j$. Every matched pair keeps ε-CS and the new pairs are tight, so an
    auction phase can go on from the result.
    """
    n = prob.a.shape[0]
    dtype = prob.a.dtype
    inf = _inf(dtype)
    free = s.col < 0
    rows = jnp.nonzero(free, size=TAIL, fill_value=0)[0].astype(jnp.int32)
    valid = jnp.arange(TAIL) < free.sum()
    start = jnp.where(valid[:, None], _reduced(prob, s.prices, rows), inf)
    best = jnp.argmin(start, axis=0)
    dist, pred = jnp.take_along_axis(start, best[None], 0)[0], rows[best]

    def scan(c):
        dist, pred, done, _ = c
        k = jnp.argmin(jnp.where(done, inf, dist)).astype(jnp.int32)
        done = done.at[k].set(True)
        holder = s.owner[k]
        base = dist[k]
        cand = base + jnp.minimum(
            _reduced(prob, s.prices, jnp.maximum(holder, 0)), inf - base
        )
        better = ~done & (holder >= 0) & (cand < dist)
        dist = jnp.where(better, cand, dist)
        pred = jnp.where(better, holder, pred)
        return dist, pred, done, jnp.where(holder < 0, k, -1)

    def searching(c):  # until a free column, or no unscanned column is reachable:
        # no free row (a finished problem under vmap, which runs every element
        # until all are done) or an infeasible one
        dist, _, done, target = c
        return (target < 0) & jnp.any(~done & (dist < inf))

    c = (dist, pred, jnp.zeros(n, bool), jnp.int32(-1))
    dist, pred, done, target = lax.while_loop(searching, scan, c)
    found = target >= 0
    target = jnp.maximum(target, 0)
    prices = jnp.where(done & found, s.prices + dist[target] - dist, s.prices)

    def walk(c):  # back along the path; pred < 0 only if infeasible (stop)
        owner, col, j, _ = c
        i = pred[j]
        done = (i < 0) | (col[jnp.maximum(i, 0)] < 0)
        owner = owner.at[j].set(i, mode="drop")
        return owner, col.at[i].set(j, mode="drop"), col[jnp.maximum(i, 0)], done

    owner, col, _, _ = lax.while_loop(
        lambda c: ~c[-1], walk, (s.owner, s.col, target, ~found)
    )
    return s._replace(prices=prices, owner=owner, col=col)


def _start_phase(prob: Problem, s: State) -> State:
    """Shrink ε, renormalise prices per block, keep the pairs that satisfy ε-CS."""
    n = prob.a.shape[0]
    dtype = prob.a.dtype
    inf = jnp.asarray(jnp.iinfo(dtype).max, dtype)
    eps = jnp.maximum(s.eps // THETA, 1)
    cols = jnp.arange(n, dtype=jnp.int32)

    def per_block(prices):  # the lowest price each column's holder may pay
        allowed = prob.at > forbidden(dtype)  # (column, row)
        low = jnp.min(jnp.where(allowed, prices[:, None], inf), axis=0)
        return prices - jnp.where(s.owner >= 0, low[jnp.maximum(s.owner, 0)], 0)

    prices = lax.cond(prob.blocks, per_block, lambda p: p - p.min(), s.prices)
    best = jnp.max(prob.at - prices[:, None], axis=0)
    held = jnp.maximum(s.col, 0)
    keep = (s.col >= 0) & (prob.a[cols, held] - prices[held] >= best - eps)
    col = jnp.where(keep, s.col, -1)
    owner = (
        jnp.full(n, -1, jnp.int32).at[jnp.where(keep, col, n)].set(cols, mode="drop")
    )
    return State(prices, owner, col, eps)


def entropic_start(prob: Problem) -> State:
    r"""Starting prices and pairs from a few entropic (Sinkhorn) iterations.

    Log-domain Sinkhorn on the benefits scaled to $[-1, 0]$, at the regularisation
    of the first phase, gives column potentials $g$ whose prices $p = -g$ leave the
    rows' best columns spread over all columns (plain column reduction leaves every
    row wanting the same few columns when the two batches are apart). A column
    c-transform then makes them exact: with the rows' best values $\pi_i = \max_j
    (a_{ij} - p_j)$, $p_j = \max_i (a_{ij} - \pi_i)$, and each column's best row
    takes it (the first such column per row), with exact CS.
    """
    n = prob.a.shape[0]
    dtype = prob.a.dtype
    span = prob.span.astype(jnp.float32)
    a = prob.a.astype(jnp.float32) / span
    reg = 1.0 / EPS0

    def sweep(_, g):
        f = -reg * jax.nn.logsumexp((a + g[None, :]) / reg, axis=1)
        return -reg * jax.nn.logsumexp((a + f[:, None]) / reg, axis=0)

    g = lax.fori_loop(0, SINKHORN, sweep, jnp.zeros(n, jnp.float32))
    profit = jnp.max(prob.a - jnp.round(-g * span).astype(dtype)[None, :], axis=1)
    values = prob.at - profit[None, :]  # (column, row)
    prices = jnp.max(values, axis=1)
    best = jnp.argmax(values, axis=1).astype(jnp.int32)
    cols = jnp.arange(n, dtype=jnp.int32)
    first = jnp.full(n, n, jnp.int32).at[best].min(cols)
    col = jnp.where(first < n, first, -1)
    owner = jnp.where(first[best] == cols, best, -1)
    eps0 = jnp.maximum(prob.span // EPS0, 1) * THETA
    return State(prices, owner, col, eps0.astype(dtype))


def warm_start(prob: Problem, col: Int[Array, " n"]) -> State:
    """Start from the complete assignment `col` at zero prices (first phase's ε)."""
    n = prob.a.shape[0]
    dtype = prob.a.dtype
    owner = jnp.zeros(n, jnp.int32).at[col].set(jnp.arange(n, dtype=jnp.int32))
    eps0 = jnp.maximum(prob.span // EPS0, 1) * THETA
    return State(jnp.zeros(n, dtype), owner, col, eps0.astype(dtype))


def solve(prob: Problem, start: State, scan: bool) -> State:
    """A complete assignment `col` with its `prices` in 1-CS, from `start`.

    `scan` picks the CPU's bidding rounds (column scans) over the accelerators'
    (row-wise reductions); both give an assignment in 1-CS.
    """
    paths = THETA ** (PATHS - 1)  # phases with ε at most this augment

    def bidding(c):  # until at most TAIL rows are free, or STALL rounds free none
        s, fewest, since = c
        return ((s.col < 0).sum() > TAIL) & (since < STALL)

    def bid(c):
        s, fewest, since = c
        s = _round(prob, s, scan)
        free = (s.col < 0).sum()
        return s, jnp.minimum(free, fewest), jnp.where(free < fewest, 0, since + 1)

    def phase(s):
        s = _start_phase(prob, s)
        s, _, since = lax.while_loop(bidding, bid, (s, (s.col < 0).sum(), 0))
        complete = (s.eps <= paths) | (since >= STALL)
        return lax.while_loop(
            lambda s: complete & (s.col < 0).any(), lambda s: _augment(prob, s), s
        )

    return lax.while_loop(lambda s: s.eps > 1, phase, start)
