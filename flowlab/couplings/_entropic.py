r"""Entropic couplings through ott-jax: Sinkhorn, unbalanced and partial plans."""

from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .. import _lazy, registry
from .._checks import is_number as _number
from ._base import AbstractCostCoupling, Matching, costs, ground_cost
from ._convergence import (
    AbstractUnconvergedPolicy,
    RaiseUnconverged,
    as_unconverged_policy,
)

if TYPE_CHECKING:
    from ..manifolds import AbstractManifold

geometry = _lazy.module("ott.geometry.geometry")
unbalanced_functions = _lazy.module("ott.math.unbalanced_functions")
linear_problem = _lazy.module("ott.problems.linear.linear_problem")
ott_sinkhorn = _lazy.module("ott.solvers.linear.sinkhorn")

__all__ = ["EntropicOT", "partial", "sinkhorn", "unbalanced"]

_MARGIN = 50.0  # forbidden and dummy pairs cost this many ε above the others


class EntropicOT(AbstractCostCoupling):
    r"""Pairs drawn from an entropic optimal transport plan, solved by ott-jax.

    With uniform weights $a = \mathbf{1}/n$, $b = \mathbf{1}/m$ the plan solves

    $$\pi^\star = \arg\min_{\pi \ge 0} \langle C, \pi \rangle
      - \varepsilon H(\pi) + \rho_a \mathrm{KL}(\pi\mathbf{1} \| a)
      + \rho_b \mathrm{KL}(\pi^\top\mathbf{1} \| b),$$

    balanced ($\pi\mathbf{1} = a$, $\pi^\top\mathbf{1} = b$) when $\tau_a = \tau_b =
    1$, with ott-jax's $\tau = \rho / (\rho + \varepsilon)$. It is computed by
    `ott.solvers.linear.sinkhorn.Sinkhorn` on a `LinearProblem` over the cost
    matrix, and $\log\pi_{ij} = (f_i + g_j - C_{ij})/\varepsilon$ from the dual
    potentials. With `mass` $= s < 1$ the plan is partial: it minimises the same
    entropic objective over plans of total mass $s$ with $\pi\mathbf{1} \le a$,
    $\pi^\top\mathbf{1} \le b$, solved as a balanced problem with one dummy point on
    each side holding mass $1 - s$ at zero cost to the real points (Chapel et al.
    2020): the rows that are costliest to transport are left out.

    Sampling: `hard=False` draws `n` pairs $(i, j) \sim \pi / \pi(\mathbf{1})$ with
    replacement (torchcfm's `OTPlanSampler`), so marginals hold in expectation.
    `hard=True` (balanced only) draws a permutation instead: the rows in a random
    order each take a still-free column $j$ with probability proportional to
    $\pi_{ij}$. Both marginals are then exact and the pairs follow the
    plan; as $\varepsilon \to 0$ it tends to the optimal permutation.

    Convergence: every call checks the plan and reports, in the stats the trainer
    logs as `coupling_<stat>`, `unconverged` (1 when ott-jax's Sinkhorn stopped at
    `max_iterations` with its error above `threshold`, or the plan is not finite)
    and `marginal_error` (see `marginal_error`). What happens to the pairs of an
    unconverged plan is the policy `on_unconverged`: raise (the default), fall
    back to exact OT or to the independent coupling (stat `fallback`), or accept
    the plan. A small $\varepsilon$ needs many iterations: at SB-CFM's $\sigma =
    5 \cdot 10^{-4}$ ($\varepsilon = 5 \cdot 10^{-7}$) Sinkhorn on 256 normal and
    two-moons points stops at 2000 iterations with the column marginals off by
    1.33 (L1, of at most 2).

    Attributes:
        epsilon: entropic regularisation $\varepsilon > 0$, in cost units
            (Schrödinger-bridge CFM with noise $\sigma$ uses $2\sigma^2$). It is
            absolute, never rescaled by the costs, so with `GeodesicCost` it is in
            squared geodesic units; there $2\sigma^2$ is the Brownian bridge's
            value only to leading order in $\sigma$ (Varadhan: $-2t \log
            p_t(x, y) \to d(x, y)^2$ as $t \to 0$), exact only on $\mathbb{R}^d$.
        cost_fn: the ground cost, an ott-jax `CostFn`.
        tau_a, tau_b: marginal relaxations in $(0, 1]$; 1 is balanced.
        mass: the transported mass $s \in (0, 1]$; below 1 the plan is partial.
        hard: draw a permutation instead of pairs with replacement.
        threshold: Sinkhorn's stopping tolerance on the marginal error (L1).
        max_iterations: Sinkhorn's iteration cap.
        on_unconverged: what to do when Sinkhorn has not converged: an
            `AbstractUnconvergedPolicy` or its name, `"raise"` (default),
            `"exact_ot"`, `"independent"` or `"accept"`.
    """

    epsilon: float
    cost_fn: "costs.CostFn" = eqx.field(default_factory=lambda: costs.SqEuclidean())
    tau_a: float = eqx.field(static=True, default=1.0)  # ott branches on these
    tau_b: float = eqx.field(static=True, default=1.0)
    mass: float = eqx.field(static=True, default=1.0)
    hard: bool = eqx.field(static=True, default=False)
    threshold: float = 1e-3
    max_iterations: int = eqx.field(static=True, default=2000)
    on_unconverged: AbstractUnconvergedPolicy = eqx.field(
        default_factory=RaiseUnconverged, converter=as_unconverged_policy
    )

    def __check_init__(self):
        checks = [
            ("epsilon", self.epsilon, lambda v: v > 0, "> 0"),
            ("tau_a", self.tau_a, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("tau_b", self.tau_b, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("mass", self.mass, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("threshold", self.threshold, lambda v: v > 0, "> 0"),
        ]
        for name, value, ok, rule in checks:
            if _number(value) and not ok(value):
                raise ValueError(f"{name} must be {rule}, got {value!r}.")
        if not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise ValueError(
                f"max_iterations must be a positive int, got {self.max_iterations!r}."
            )
        if self.hard and not self.balanced:
            raise ValueError(
                "hard=True draws a permutation, which needs a balanced plan "
                "(tau_a = tau_b = 1 and mass = 1)."
            )

    @property
    def balanced(self) -> bool:
        """Whether the plan has both marginals fixed (no relaxation, full mass)."""
        return all(_number(v) and v == 1 for v in (self.tau_a, self.tau_b, self.mass))

    @property
    def square(self) -> bool:  # a permutation needs equal batches
        return self.hard

    def solve_cost(
        self, cost: Float[Array, "n m"]
    ) -> tuple["ott_sinkhorn.SinkhornOutput", Float[Array, "n m"]]:
        r"""Sinkhorn's output and the log-plan $\log\pi$ for a cost matrix."""
        n, m = cost.shape
        forbidden = ~jnp.isfinite(cost)
        low = jnp.min(jnp.where(forbidden, jnp.inf, cost))
        high = jnp.max(jnp.where(forbidden, -jnp.inf, cost))
        # forbidden pairs: costly enough that the plan puts ~exp(-50) mass on them
        finite = jnp.where(forbidden, high + _MARGIN * self.epsilon, cost)
        a = b = None
        if _number(self.mass) and self.mass == 1:
            full = finite
        else:  # partial: one dummy point per side, free to pair with real ones
            dummy = (high - low) + 2 * _MARGIN * self.epsilon
            full = jnp.pad(finite - low, ((0, 1), (0, 1))).at[n, m].set(dummy)
            a = jnp.append(jnp.full(n, 1 / n, cost.dtype), 1 - self.mass)
            b = jnp.append(jnp.full(m, 1 / m, cost.dtype), 1 - self.mass)
        geom = geometry.Geometry(cost_matrix=full, epsilon=self.epsilon)
        problem = linear_problem.LinearProblem(
            geom, a=a, b=b, tau_a=self.tau_a, tau_b=self.tau_b
        )
        solver = ott_sinkhorn.Sinkhorn(
            threshold=self.threshold, max_iterations=self.max_iterations
        )
        with jax.numpy_rank_promotion("allow"):  # ott-jax's unbalanced updates
            out = solver(problem)
        logits = (out.f[:, None] + out.g[None, :] - full) / geom.epsilon
        logits = jnp.where(forbidden, -jnp.inf, logits[:n, :m])
        return out, logits

    def solve(
        self, x0: PyTree, x1: PyTree
    ) -> tuple["ott_sinkhorn.SinkhornOutput", Float[Array, "n m"]]:
        """Sinkhorn's output and the log-plan for two batches (for inspection)."""
        return self.solve_cost(self.cost_matrix(x0, x1))

    def marginal_error(self, out: "ott_sinkhorn.SinkhornOutput") -> Float[Array, ""]:
        r"""The L1 distance of the plan's marginals to what optimality demands.

        $\|\pi\mathbf 1 - a'\|_1 + \|\pi^\top\mathbf 1 - b'\|_1$ on the problem
        Sinkhorn solved, with $\pi_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)$.
        Balanced: $a' = a$, $b' = b$, the marginals. Partial: the same on the
        balanced problem with the dummy row and column (the real rows may send
        less than $a$ on purpose; with the dummies every marginal is fixed).
        Unbalanced: the marginals are relaxed on purpose, so the check is the
        first-order optimality condition of the KL terms, $a'_i = a_i
        e^{-f_i/\rho_a}$ (ott-jax's `grad_of_marginal_fit`), which is ott-jax's
        own error for unbalanced problems. For balanced problems ott-jax checks
        only the column side (the last update fixes the rows); this sums both, so
        a converged plan may exceed `threshold` by float rounding. A non-finite
        plan gives `inf`.
        """
        problem, geom = out.ot_prob, out.ot_prob.geom
        eps = geom.epsilon
        log_plan = (out.f[:, None] + out.g[None, :] - geom.cost_matrix) / eps
        rows = jnp.exp(logsumexp(log_plan, axis=1))
        cols = jnp.exp(logsumexp(log_plan, axis=0))
        want_a = unbalanced_functions.grad_of_marginal_fit(
            problem.a, out.f, problem.tau_a, eps
        )
        want_b = unbalanced_functions.grad_of_marginal_fit(
            problem.b, out.g, problem.tau_b, eps
        )
        error = jnp.sum(jnp.abs(rows - want_a)) + jnp.sum(jnp.abs(cols - want_b))
        return jnp.where(jnp.isnan(error), jnp.inf, error)

    def sample(self, key: PRNGKeyArray, logits: Float[Array, "n m"]) -> Matching:
        """Pairs drawn from the plan `softmax(logits)` (no stats, no checks).

        `hard=False`: `n` pairs with replacement, a row from the row marginals,
        then a column given it. `hard=True`: a permutation (`rows0` is `None`).
        """
        n, m = logits.shape
        if not self.hard:  # a row from the row marginals, then a column given it
            k_row, k_col = jax.random.split(key)
            rows = _draw(_uniform(k_row, (n,), logits.dtype), logsumexp(logits, axis=1))
            cols = _draw(_uniform(k_col, (n,), logits.dtype), logits[rows])
            return Matching(rows, cols)
        k_order, k_draw = jax.random.split(key)
        order = jax.random.permutation(k_order, n)
        u = _uniform(k_draw, (n,), logits.dtype)

        def take(used, step):
            row, u_row = step
            j = _draw(u_row, jnp.where(used, -jnp.inf, logits[row]))
            return used.at[j].set(True), j

        _, cols = lax.scan(take, jnp.zeros(m, bool), (order, u))
        return Matching(None, jnp.zeros(n, cols.dtype).at[order].set(cols))

    def match(self, key: PRNGKeyArray, cost: Float[Array, "n m"]) -> Matching:
        """Pairs from the plan, checked and handled by `on_unconverged`."""
        out, logits = self.solve_cost(cost)
        error = self.marginal_error(out)
        unconverged = jnp.logical_or(~out.converged, ~jnp.isfinite(error))
        stats = {
            "unconverged": unconverged.astype(cost.dtype),
            "marginal_error": error.astype(cost.dtype),
        }
        rows0, rows1, _ = self.sample(key, logits)
        return self.on_unconverged(self, key, cost, Matching(rows0, rows1, stats))


def _uniform(key: PRNGKeyArray, shape: tuple[int, ...], dtype) -> Array:
    """Uniforms in (0, 1): one per draw (Gumbel noise would need one per category)."""
    return jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny)


def _draw(u: Float[Array, "*k"], logits: Float[Array, "*k m"]) -> Int[Array, "*k"]:
    """Categorical draws by inverting the CDF of `softmax(logits)` at `u`.

    `logits` is one distribution `(m,)` for every `u`, or one row per `u`.
    """
    m = logits.shape[-1]
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)
    if logits.ndim == 1:
        index = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    else:
        index = jnp.sum(cdf < (u * cdf[:, -1])[:, None], axis=-1)
    return jnp.minimum(index, m - 1).astype(jnp.int32)


def _kw(cost_fn, manifold, threshold, max_iterations, on_unconverged):
    return dict(
        cost_fn=ground_cost(cost_fn, manifold),
        threshold=threshold,
        max_iterations=max_iterations,
        on_unconverged=on_unconverged,
    )


@registry.register("coupling", "sinkhorn")
def sinkhorn(
    epsilon: float = 0.05,
    *,
    cost_fn: "costs.CostFn | None" = None,
    manifold: "AbstractManifold | str | None" = None,
    hard: bool = False,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    on_unconverged: str | AbstractUnconvergedPolicy = "raise",
) -> EntropicOT:
    r"""Entropic OT (Sinkhorn) coupling; SB-CFM with $\varepsilon = 2\sigma^2$.

    Args:
        epsilon: regularisation in cost units (torchcfm's default `reg` is 0.05).
        cost_fn: an ott-jax `CostFn`; `None` for squared Euclidean.
        manifold: points on a manifold (a `flowlab.manifolds` manifold or its
            registry name): the cost is `GeodesicCost(manifold)`, $d(x, y)^2$,
            and `epsilon` is in its units (squared radians on the unit sphere
            and SO(3)). Give `cost_fn` or `manifold`, not both.
        hard: draw a permutation from the plan instead of pairs with replacement.
        threshold: Sinkhorn's tolerance on the marginal error.
        max_iterations: Sinkhorn's iteration cap.
        on_unconverged: what to do when Sinkhorn stops before `threshold`: an
            `AbstractUnconvergedPolicy` or its name (`flowlab.registry` kind
            `unconverged`): `"raise"` (default: an error inside `jit` that says
            how to fix the call), `"exact_ot"` (the optimal permutation of the
            same cost), `"independent"` (pairs from the uniform plan) or
            `"accept"` (use the plan anyway). Every policy reports the stats
            `unconverged` and `marginal_error`, the fallbacks also `fallback`.

    Example:
        >>> import jax, flowlab as fl
        >>> k0, k1 = jax.random.split(jax.random.key(0))
        >>> x0, x1 = jax.random.normal(k0, (64, 2)), jax.random.normal(k1, (64, 2))
        >>> sb = fl.couplings.sinkhorn(2 * 0.5**2, on_unconverged="independent")
        >>> x0, x1, stats = jax.jit(sb.couple)(jax.random.key(1), x0, x1)
    """
    kw = _kw(cost_fn, manifold, threshold, max_iterations, on_unconverged)
    return EntropicOT(epsilon, hard=hard, **kw)


@registry.register("coupling", "unbalanced")
def unbalanced(
    epsilon: float = 0.05,
    tau_a: float = 0.99,
    tau_b: float = 0.99,
    *,
    cost_fn: "costs.CostFn | None" = None,
    manifold: "AbstractManifold | str | None" = None,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    on_unconverged: str | AbstractUnconvergedPolicy = "raise",
) -> EntropicOT:
    r"""Unbalanced entropic OT: marginals relaxed by KL penalties.

    $\tau = \rho/(\rho + \varepsilon) \in (0, 1]$ (ott-jax's convention): 1 keeps a
    marginal fixed, smaller values let the plan drop or duplicate mass of outliers.
    Pairs are drawn from the normalised plan.

    Args:
        epsilon: as `sinkhorn`.
        tau_a: the relaxation of the `x0` marginal (1: fixed).
        tau_b: the relaxation of the `x1` marginal.
        cost_fn: as `sinkhorn`.
        manifold: as `sinkhorn`.
        threshold: as `sinkhorn`.
        max_iterations: as `sinkhorn`.
        on_unconverged: as `sinkhorn`, except `"exact_ot"`, which needs a balanced
            plan. Convergence is checked on the optimality conditions of the
            relaxed marginals (`EntropicOT.marginal_error`).
    """
    kw = _kw(cost_fn, manifold, threshold, max_iterations, on_unconverged)
    return EntropicOT(epsilon, tau_a=tau_a, tau_b=tau_b, **kw)


@registry.register("coupling", "partial")
def partial(
    mass: float = 0.9,
    epsilon: float = 0.05,
    *,
    cost_fn: "costs.CostFn | None" = None,
    manifold: "AbstractManifold | str | None" = None,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    on_unconverged: str | AbstractUnconvergedPolicy = "raise",
) -> EntropicOT:
    r"""Partial entropic OT: only the fraction `mass` of each batch is transported.

    The plan moves total mass $s$ = `mass` at least cost, each row sending at most
    its weight $1/n$ and each column receiving at most $1/m$; pairs are drawn from
    $\pi / s$, so the rows it leaves out (the costliest fraction $1 - s$ to
    transport) are rarely drawn.

    Args:
        mass: the transported fraction $s \in (0, 1]$.
        epsilon: as `sinkhorn`.
        cost_fn: as `sinkhorn`.
        manifold: as `sinkhorn`.
        threshold: as `sinkhorn`.
        max_iterations: as `sinkhorn`.
        on_unconverged: as `sinkhorn`, except `"exact_ot"`, which needs a balanced
            plan. Convergence is checked on the marginals of the problem with the
            dummy row and column (`EntropicOT.marginal_error`).
    """
    kw = _kw(cost_fn, manifold, threshold, max_iterations, on_unconverged)
    return EntropicOT(epsilon, mass=mass, **kw)
