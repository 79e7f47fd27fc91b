r"""What an entropic coupling does when Sinkhorn stops before its tolerance.

An entropic coupling (`EntropicOT`) draws its pairs from the plan, checks that plan
and reports the result in `Matching.stats` (the trainer logs them as
`coupling_<stat>`):

- `unconverged`: 1 when ott-jax's Sinkhorn stopped at `max_iterations` with its
  error above `threshold`, or when the plan is not finite (NaN or overflow); else 0.
- `marginal_error`: the L1 distance of the plan's marginals to the marginals its
  optimality conditions demand, summed over both sides (`inf` for a non-finite
  plan). See `EntropicOT.marginal_error`.

Its `on_unconverged` policy then decides what becomes of the pairs. No policy is
silent: every one reports the stats above, and the default raises.

| name | class | the pairs of an unconverged plan |
| :--- | :--- | :--- |
| `"raise"` (default) | `RaiseUnconverged` | an error inside `jit`, with the fixes |
| `"exact_ot"` | `ExactOTFallback` | the optimal permutation of the same cost |
| `"independent"` | `IndependentFallback` | drawn from the uniform plan |
| `"accept"` | `AcceptUnconverged` | used anyway (chosen and reported) |

The fallbacks add the stat `fallback` (1 when they replaced the pairs) and run
under `lax.cond`, so they cost nothing when Sinkhorn converged (under `vmap` the
condition becomes a select and both branches run).
"""

import abc
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray

from .. import registry
from .._checks import is_number as _number
from ._assignment import linear_assignment
from ._base import Matching

__all__ = [
    "AbstractFallback",
    "AbstractUnconvergedPolicy",
    "AcceptUnconverged",
    "ExactOTFallback",
    "IndependentFallback",
    "RaiseUnconverged",
    "as_unconverged_policy",
]


class AbstractUnconvergedPolicy(eqx.Module):
    """What an entropic coupling does with pairs drawn from an unconverged plan.

    A policy is called inside the coupling's `match`, after the pairs were drawn
    from the plan and `matching.stats` says whether the plan converged
    (`unconverged`, `marginal_error`). It returns the pairs to use, with those
    stats and any of its own.
    """

    @abc.abstractmethod
    def __call__(
        self,
        coupling: Any,
        key: PRNGKeyArray,
        cost: Float[Array, "n m"],
        matching: Matching,
    ) -> Matching:
        """The pairs to use given `matching` drawn from the plan of `coupling`.

        Args:
            coupling: the `EntropicOT` that drew `matching`.
            key: the key the pairs were drawn with (a replacement may reuse it:
                only one set of pairs is kept).
            cost: the cost matrix the plan was solved for (`+inf`: forbidden).
            matching: the pairs drawn from the plan, with `stats["unconverged"]`
                and `stats["marginal_error"]`.
        """


def _unconverged(matching: Matching) -> Array:
    return matching.stats["unconverged"] > 0


def _setting(coupling: Any, name: str) -> str:
    value = getattr(coupling, name)
    return f"{name}={value!r}" if _number(value) else f"{name} (traced)"


def _message(coupling: Any) -> str:
    settings = ", ".join(
        _setting(coupling, name) for name in ("epsilon", "threshold", "max_iterations")
    )
    return (
        f"{type(coupling).__name__}: Sinkhorn did not converge ({settings}): it "
        "stopped at max_iterations with its marginal error above threshold, or its "
        "plan is not finite, so pairs drawn from it would not follow the entropic "
        "plan. Fixes: raise epsilon (it is in cost units, and the iterations "
        "needed grow as it shrinks against the costs; SB-CFM uses 2 * sigma**2), "
        "raise max_iterations or threshold, use couplings.exact_ot() (the "
        "epsilon -> 0 limit), or choose a "
        "policy: on_unconverged='exact_ot' or 'independent' (fall back to those "
        "pairs) or 'accept' (use the plan anyway). Every policy reports "
        "coupling_unconverged and coupling_marginal_error in the training metrics."
    )


class RaiseUnconverged(AbstractUnconvergedPolicy):
    """Raise an error when the plan did not converge (the default).

    Inside `jit` this is `eqx.error_if`: a call under `jax.jit` raises
    `jax.errors.JaxRuntimeError`, under `eqx.filter_jit` `eqx.EquinoxRuntimeError`
    (both `RuntimeError`s) with a message that names the coupling's settings and
    the fixes.
    """

    def __call__(self, coupling, key, cost, matching):
        del key, cost
        rows1 = eqx.error_if(matching.rows1, _unconverged(matching), _message(coupling))
        return matching._replace(rows1=rows1)


class AcceptUnconverged(AbstractUnconvergedPolicy):
    """Use the pairs drawn from the plan whether or not it converged.

    Not silent: `unconverged` and `marginal_error` still go into the metrics, and
    this is never the default. It suits a deliberately small iteration budget
    (e.g. `max_iterations=50` for speed), where an approximate plan is the point.
    With a NaN plan (reported as `marginal_error = inf`) the pairs are meaningless.
    """

    def __call__(self, coupling, key, cost, matching):
        del coupling, key, cost
        return matching


class AbstractFallback(AbstractUnconvergedPolicy):
    """Replace the pairs by those of another coupling when the plan did not converge.

    Subclasses implement `fallback`, the replacement pairs in the layout of the
    coupling's own (`rows0` is `None` for `hard=True`). The stat `fallback` is 1
    when they were used. The replacement runs under `lax.cond`: free when Sinkhorn
    converged.
    """

    @abc.abstractmethod
    def fallback(
        self, coupling: Any, key: PRNGKeyArray, cost: Float[Array, "n m"]
    ) -> Matching:
        """The replacement pairs (without stats)."""

    def __call__(self, coupling, key, cost, matching):
        failed = _unconverged(matching)
        dtype = matching.rows1.dtype

        def replace():
            rows0, rows1, _ = self.fallback(coupling, key, cost)
            rows0 = None if rows0 is None else rows0.astype(dtype)
            return rows0, rows1.astype(dtype)

        rows0, rows1 = lax.cond(
            failed, replace, lambda: (matching.rows0, matching.rows1)
        )
        stats = {**matching.stats, "fallback": failed.astype(cost.dtype)}
        return Matching(rows0, rows1, stats)


class ExactOTFallback(AbstractFallback):
    r"""Fall back to the optimal permutation of the same cost (`exact_ot()`).

    This is the limit $\varepsilon \to 0$ of the balanced entropic plan, the plan
    Sinkhorn was failing to reach at a small $\varepsilon$. It is solved by
    `linear_assignment` on the cost as given, so a conditional coupling's `+inf`
    blocks stay forbidden. It needs a balanced plan (an unbalanced or partial plan
    has no permutation limit) and as many rows in `x0` as in `x1`. With
    `hard=False` the pairs are `(x0[i], x1[sigma(i)])` for every row `i`.
    """

    def fallback(self, coupling, key, cost):
        del key
        n, m = cost.shape
        if not coupling.balanced:
            raise ValueError(
                "on_unconverged='exact_ot' falls back to a permutation, which needs "
                "a balanced plan (tau_a = tau_b = 1 and mass = 1); use "
                "on_unconverged='independent' or 'raise' for unbalanced and partial "
                "plans."
            )
        if n != m:
            raise ValueError(
                "on_unconverged='exact_ot' falls back to a permutation, which needs "
                f"as many rows in x0 as in x1, got {n} and {m}; use "
                "on_unconverged='independent' for batches of different sizes."
            )
        sigma = linear_assignment(cost)
        return Matching(None if coupling.hard else jnp.arange(n), sigma)


class IndependentFallback(AbstractFallback):
    r"""Fall back to pairs drawn from the uniform plan on the allowed pairs.

    $\pi_{ij} \propto [C_{ij} < \infty]$: the independent coupling (within each
    label, for a conditional coupling's `+inf` blocks), which is the limit
    $\varepsilon \to \infty$ of the entropic plan, and what torchcfm's
    `OTPlanSampler` reverts to on a numerical failure. The pairs are drawn by the
    coupling's own sampler: with replacement for `hard=False`, a permutation for
    `hard=True`.
    """

    def fallback(self, coupling, key, cost):
        uniform = jnp.where(jnp.isfinite(cost), 0.0, -jnp.inf).astype(cost.dtype)
        return coupling.sample(key, uniform)


registry.register("unconverged", "raise", RaiseUnconverged)
registry.register("unconverged", "accept", AcceptUnconverged)
registry.register("unconverged", "exact_ot", ExactOTFallback)
registry.register("unconverged", "independent", IndependentFallback)


def as_unconverged_policy(value: Any) -> AbstractUnconvergedPolicy:
    """A policy from a policy or its name in `flowlab.registry` (kind `unconverged`).

    Raises:
        ValueError: for an unknown name, naming `on_unconverged` and the names.
        TypeError: for anything else that is not an `AbstractUnconvergedPolicy`.
    """
    try:
        policy = registry.resolve("unconverged", value)
    except ValueError as err:
        raise ValueError(f"on_unconverged: {err}") from None
    if not isinstance(policy, AbstractUnconvergedPolicy):
        raise TypeError(
            "on_unconverged must be an AbstractUnconvergedPolicy or one of the names "
            f"{list(registry.names('unconverged'))}, got {value!r}."
        )
    return policy
