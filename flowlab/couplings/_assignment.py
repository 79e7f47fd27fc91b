r"""Exact linear assignment inside `jit`: an auction on quantised costs, refined.

`linear_assignment(cost)` returns the permutation $\sigma$ minimising
$\sum_i C_{i\sigma(i)}$, computed on device with `lax.while_loop`s only, in stages:
each solves an integer problem with the auction of `_auction.py` and ends with an
optimality certificate computed in floating point. (This module is the stages; the
auction, ~360 lines, is its own module.)

**Quantisation.** A stage rounds a float matrix $X$ (the costs, then residuals) to
integers $K_{ij} = \mathrm{round}((X_{ij} - \ell) s)$ in $[0, M]$, $s$ a power of
two, and solves the benefits $a = -K$ to 1-CS, so within $n$ of the integer optimum.
$M = 2^{27}$ with 32-bit integers ($2^{25}$ with forbidden pairs: the headroom of
`_auction`), $2^{44}$ (`LEVELS`) with 64-bit ones. The first stage maps the range of
$C$ onto $[0, M]$: without refinement that leaves $\sigma$ up to about $n$ quanta
$(\max C - \min C)/M$ above the optimum, which on 1-D data, where the optimal pairs
cost far less than the range, is $10^{-7}$ to $10^{-4}$ of the optimal cost in
float32. Without x64 the arithmetic is float32 and the integers int32; with x64 the
costs are promoted to float64 and the integers are int64.

**Certificate.** With the auction's prices as duals, $v_j = p_j / s$ (two floats
$v_h + v_l$, so exactly, as float32 has fewer bits than $3M$), the residual $r_{ij}
= X_{ij} + v_j - u_i$, $u_i = \min_j (X_{ij} + v_j)$, is $\ge 0$ with a zero in every
row and differs from $X$ by row and column constants, so $\sigma$ is within $T =
\sum_i r_{i\sigma(i)}$ of the optimum (LP duality: $\sum u - \sum v$ is a lower
bound). The duals are as large as the cost range while the entries that matter are
small, so $r$ is computed with error-free transformations (`_residual`): TwoSum
gives $X + v_h = s + e$ exactly, $s - u$ is exact near the row minimum (Sterbenz),
then $e + v_l$ is added and the row minimum subtracted again; subtracting the
column minima as well (never more than $T$) about halves $T$ for free. Each entry of
$r$ is then correct to a few roundings of itself plus its column's minimum (the
minima sum to at most $T$), so as a bound on the excess over the optimum of $C$,
$T$ is exact up to a few $\epsilon$ times the first stage's $T$ ($\epsilon$:
machine epsilon), far below the tolerance.

**Refinement.** The stages stop once $T \le \epsilon/2 \cdot \sum_i
|C_{i\sigma(i)}|$, with $\epsilon$ the input's (float32's for float32, bfloat16
and float16 costs): optimal to the resolution of the costs' own type (each cost is
itself a rounding, relative $\epsilon/2$, of the exact one). Otherwise the
next stage quantises $r$ with $w = T / (1 - 4(n + 1)/M)$ mapped onto $[0, M/2]$ and
the entries above $w$ (in no optimum: they alone exceed $T$) compressed linearly
into $[M/2, M]$, not clipped to $M$ (a plateau of ties stalls the bidding).
$\sigma$ then costs less than $M/2 - 3n/2$ quantised, so the auction's result,
within $n$ of the quantised optimum, uses no entry above $w$ and is within about
$2n$ quanta $2w/M$ of the optimum of $r$. It starts from $\sigma$ at zero prices (the
residual holds the previous prices) and gains a factor of about $M/n$ per stage
($10^5$ at $n = 1024$ in float32). Measured on batches of 512 to 1024 points
without x64: one stage in 32-D and for the moons of `bench_couplings.py`, two in
1-D and for two 2-D samples of one Gaussian; with x64, one stage for float32 costs
and two for float64 ones. At most `STAGES` stages run, and a stage that does
not lower $T$ ends the refinement with the previous permutation. If $M \le 4(n +
1)$ (beyond $n = 2^{23}$ with int32) a refinement gains nothing and one stage runs.

Costs of $+\infty$ mark forbidden pairs (the conditional coupling): they must form
blocks (pairs across the classes of an equivalence relation), each block with as
many rows as columns, and stay forbidden in every residual.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from ._auction import Problem, entropic_start, forbidden, solve, warm_start

__all__ = ["linear_assignment"]

STAGES = 4  # at most this many auctions: the first on the costs, then refinements
# quantisation levels with 64-bit integers: more only lengthen each auction (one
# phase per factor THETA), and two stages of 2^44 reach float64's resolution
LEVELS = 2**44


def _levels(idtype, headroom: int) -> int:
    """$M$: prices up to $3M$ must fit the integers' headroom (see `_auction`)."""
    return min((jnp.iinfo(idtype).max + 1) // headroom, LEVELS)


def _pow2_at_most(y: Float[Array, ""], levels_bits: int) -> Float[Array, ""]:
    r"""The largest power of two $\le y$ (1 if $y$ is not positive and finite)."""
    info = jnp.finfo(y.dtype)
    _, e = jnp.frexp(jnp.where(jnp.isfinite(y) & (y > 0), y, 1))
    # 2^(e - 1) <= y; the clip keeps prices / scale finite and normal
    e = jnp.clip(e - 1, levels_bits + 2 - info.maxexp + 1, info.maxexp - 2)
    return jnp.ldexp(jnp.ones((), y.dtype), e)


def _quantise(x, low, scale, knee, m, allowed, blocks, idtype) -> Problem:
    r"""Benefits $-K$, $K = \mathrm{round}((x - \ell) s)$ up to the knee.

    Beyond the knee $K$ is compressed linearly into $[\mathrm{knee}, M]$: distinct
    values, not a plateau of ties, which would stall the auction.
    """
    x = jnp.where(allowed, x, low)
    k = (x - low) * scale
    thr = low + knee / scale  # x at the knee
    top = m.astype(x.dtype)
    over = jnp.max(x) - thr
    slope = jnp.where(over > 0, jnp.minimum(scale, (top - knee) / over), 0)
    far = knee + jnp.round(jnp.clip((x - thr) * slope, 0, top - knee))
    k = jnp.clip(jnp.where(k <= knee, jnp.round(k), far), 0, top)
    a = jnp.where(allowed, -k.astype(idtype), forbidden(idtype)).astype(idtype)
    return Problem(a, a.T, m, blocks)


def _residual(
    x: Float[Array, "n n"],
    v: tuple[Float[Array, " n"], Float[Array, " n"]],
    allowed: Bool[Array, "n n"],
) -> Float[Array, "n n"]:
    r"""$x_{ij} + v_j - u_i - w_j \ge 0$, zero in every row and column, accurate.

    Each entry is exact up to a few roundings relative to itself plus its column's
    minimum $w_j$ (at most the certificate, with an auction's duals). The duals are
    unevaluated sums $v = v_h + v_l$ of two floats. TwoSum splits $x + v_h$ into $s +
    e$ exactly; $s - \min_j s$ is exact where it is small (Sterbenz), and only then
    are $e + v_l$ (a few quanta) added. The row minima $u_i$ are subtracted, then
    the column minima $w_j \ge 0$ (a free dual step that about halves $T$).
    """
    vh, vl = (w[None, :] for w in v)
    x = jnp.where(allowed, x, 0)
    s = x + vh
    bb = s - x
    e = ((x - (s - bb)) + (vh - bb)) + vl
    s = jnp.where(allowed, s, jnp.inf)
    r = jnp.where(allowed, (s - s.min(axis=1, keepdims=True)) + e, jnp.inf)
    r = r - r.min(axis=1, keepdims=True)
    return r - r.min(axis=0, keepdims=True)


def _duals(prices: Int[Array, " n"], scale, fdtype):
    """The prices in cost units, $p / s$, exactly as a sum of two floats."""
    high = prices.astype(fdtype)
    low = (prices - high.astype(prices.dtype)).astype(fdtype)
    return high / scale, low / scale


def _assign(cost: Float[Array, "n n"], scan: bool, stages=STAGES):
    """`(sigma, stages run, certificate T)` of the stages of quantised auctions.

    They run until $T$ is within tolerance, stops falling, or `stages` (an int,
    possibly traced) have run.
    """
    n = cost.shape[0]
    fdtype = jnp.promote_types(cost.dtype, jax.dtypes.canonicalize_dtype(jnp.float64))
    idtype = jax.dtypes.canonicalize_dtype(jnp.int64)  # int32 unless x64 is on
    eps = jnp.finfo(jnp.promote_types(cost.dtype, jnp.float32)).eps  # the input's
    cost = cost.astype(fdtype)
    rows = jnp.arange(n)
    allowed = jnp.isfinite(cost)
    blocks = ~jnp.all(allowed)
    dense, sparse = (_levels(idtype, h) for h in (16, 64))
    m = jnp.where(blocks, sparse, dense).astype(idtype)
    if min(dense, sparse) <= 4 * (n + 1):  # too few levels to gain by refining
        stages = 1
    bits = max(dense, sparse).bit_length()
    low = jnp.min(jnp.where(allowed, cost, jnp.inf))
    high = jnp.max(jnp.where(allowed, cost, -jnp.inf))
    mf = m.astype(fdtype)
    margin = 1 - 4 * (n + 1) / mf
    x0 = jnp.where(allowed, cost, jnp.inf)
    scale0 = _pow2_at_most(mf / (high - low), bits)
    # the first stage's start, outside the loop: one entropic start to compile
    start0 = entropic_start(_quantise(x0, low, scale0, mf, m, allowed, blocks, idtype))

    def stage(c):
        x, low, width, col, cert, k, _ = c
        knee = jnp.where(k == 0, mf, mf / 2)  # refinements: [0, width] to [0, M/2]
        scale = _pow2_at_most(knee / width, bits)
        prob = _quantise(x, low, scale, knee, m, allowed, blocks, idtype)
        start = jax.tree.map(
            lambda a, b: jnp.where(k == 0, a, b), start0, warm_start(prob, col)
        )
        s = solve(prob, start, scan)
        r = _residual(x, _duals(s.prices, scale, fdtype), allowed)
        new = jnp.sum(r[rows, s.col])
        better = new < cert
        tol = eps / 2 * jnp.sum(jnp.abs(cost[rows, s.col]))
        done = ~better | (new <= tol) | (k + 1 >= stages)
        return (
            jnp.where(better, r, x),
            jnp.zeros_like(low),
            jnp.where(better, new / margin, width),
            jnp.where(better, s.col, col),
            jnp.minimum(new, cert),
            k + 1,
            done,
        )

    inf = jnp.asarray(jnp.inf, fdtype)
    c = (x0, low, high - low, rows.astype(jnp.int32), inf, jnp.int32(0), False)
    _, _, _, col, cert, k, _ = lax.while_loop(lambda c: ~c[-1], stage, c)
    return col, k, cert


def linear_assignment(cost: Float[Array, "n n"]) -> Int[Array, " n"]:
    r"""The permutation $\sigma$ minimising $\sum_i C_{i\sigma(i)}$, inside `jit`.

    Optimal to the resolution of the costs' float type: the module docstring's
    certificate bounds its excess over the optimum by a quarter of the machine
    epsilon times its cost (plus that epsilon times the first stage's bound).

    Args:
        cost: a square cost matrix; `+inf` marks forbidden pairs (in blocks, see
            the module docstring).

    Returns:
        `sigma` with `sigma[i]` the column assigned to row `i`.
    """
    n = cost.shape[0]
    if cost.ndim != 2 or cost.shape[1] != n:
        raise ValueError(f"cost must be a square matrix, got shape {cost.shape}.")
    if n <= 1:
        return jnp.zeros(n, jnp.int32)
    finite = jnp.isfinite(cost)
    cost = eqx.error_if(
        cost,
        ~(jnp.all(jnp.any(finite, axis=0)) & jnp.all(jnp.any(finite, axis=1))),
        "linear_assignment: a row or column of the cost has no finite entry (NaN "
        "or infinite inputs?), so no assignment exists.",
    )
    return lax.platform_dependent(
        cost,
        cpu=lambda c: _assign(c, scan=True)[0],
        default=lambda c: _assign(c, scan=False)[0],
    )
