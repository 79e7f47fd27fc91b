r"""Conditional couplings: never across labels, trading off a continuous condition."""

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .. import registry
from ._base import (
    AbstractCostCoupling,
    AbstractCoupling,
    Coupled,
    batch_size,
    take_rows,
)
from ._exact import ExactOT

if TYPE_CHECKING:
    from ..manifolds import AbstractManifold

__all__ = ["Conditional", "conditional", "default_condition"]

ConditionFn = Callable[[PyTree], Array | None]


def default_condition(tree: PyTree) -> Array | None:
    """The condition of a batch given as `(points, condition)`; `None` otherwise."""
    if isinstance(tree, tuple | list) and len(tree) == 2 and tree[1] is not None:
        return jnp.asarray(tree[1])
    return None


def _is_label(c: Array) -> bool:
    return jnp.issubdtype(c.dtype, jnp.integer) or jnp.issubdtype(c.dtype, jnp.bool_)


def _split(c: Array | None, name: str, fn_name: str):
    """`(labels, condition)` of one side from the default condition's dtype."""
    if c is None:
        return None, None
    if _is_label(c):
        if c.ndim != 1:
            raise ValueError(
                f"labels of {name} must have shape (n,), got {c.shape}; pass "
                f"{fn_name} to pick them."
            )
        return c, None
    return None, c.reshape(c.shape[0], -1)


class Conditional(AbstractCoupling):
    r"""A cost-based coupling on the cost augmented by the conditions of the rows.

    With labels $l$ (integers) and a continuous condition $c$ on each row,

    $$\tilde C_{ij} = C_{ij} + \lambda \|c_0^i - c_1^j\|^2
      + \infty \cdot [l_0^i \ne l_1^j],$$

    and the base coupling (exact OT, Sinkhorn, stable matching, …) runs on
    $\tilde C$: it never pairs rows of different labels, and trades distance in the
    continuous condition against distance in the points with weight $\lambda$.

    Where the conditions come from: `label_fn(tree)` and `cond_fn(tree)` on `x0` and
    on `x1` (each returns an array with the batch axis, or `None`). By default both
    read the second element of a pair `(points, condition)`: an integer condition is
    a label, a floating one a continuous condition. When `x0` has none (e.g. noise
    drawn independently of the condition), row `k` of `x0` takes the condition of
    row `k` of `x1`, a uniformly random assignment of conditions to source draws.

    On a manifold the base carries the geometry (e.g. `exact_ot(manifold=M)`:
    $C_{ij} = d(x_0^i, x_1^j)^2$); the continuous condition's term stays
    Euclidean in the condition's own coordinates.

    Requirement: a base that pairs every row once (exact OT, stable matching,
    `hard` Sinkhorn, balanced Sinkhorn) needs every label as often in `x0` as in
    `x1`; this is checked inside `jit` and raises an error naming both counts'
    mismatch. Unbalanced and partial bases only need each row to have a partner.

    Attributes:
        base: the coupling run on the augmented cost.
        weight: $\lambda \ge 0$ for the continuous condition.
        label_fn: labels of a batch, `(n,)` integers, or `None`.
        cond_fn: continuous condition of a batch, `(n, ...)`, or `None`.
    """

    base: AbstractCostCoupling
    weight: float = 1.0
    label_fn: ConditionFn | None = eqx.field(static=True, default=None)
    cond_fn: ConditionFn | None = eqx.field(static=True, default=None)
    repairs_rows: ClassVar[bool] = True

    def __check_init__(self):
        if not isinstance(self.base, AbstractCostCoupling):
            raise TypeError(
                "the base of a conditional coupling must be cost based (exact_ot, "
                f"sinkhorn, unbalanced, partial, stable_matching), got {self.base!r}."
            )
        if isinstance(self.weight, int | float) and self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight!r}.")

    def conditions(self, tree: PyTree, name: str):
        """`(labels, condition)` of one side, either possibly `None`."""
        if self.label_fn is None and self.cond_fn is None:
            return _split(default_condition(tree), name, "label_fn / cond_fn")
        labels = None if self.label_fn is None else self.label_fn(tree)
        cond = None if self.cond_fn is None else self.cond_fn(tree)
        if labels is not None:
            labels = jnp.asarray(labels)
            if not _is_label(labels) or labels.ndim != 1:
                raise TypeError(
                    f"label_fn must return integer labels of shape (n,) for {name}, "
                    f"got {labels.dtype} {labels.shape}."
                )
        if cond is not None:
            cond = jnp.asarray(cond)
            cond = cond.reshape(cond.shape[0], -1)
        return labels, cond

    def cost_matrix(self, x0: PyTree, x1: PyTree) -> Float[Array, "n m"]:
        """The base cost plus the condition terms (`+inf` across labels)."""
        n0 = batch_size(x0, "x0")
        l0, c0 = self.conditions(x0, "x0")
        l1, c1 = self.conditions(x1, "x1")
        if l1 is None and c1 is None:
            raise ValueError(
                "the conditional coupling found no condition in x1: pass x1 as "
                "(points, condition) or give label_fn / cond_fn."
            )
        for got, want, what in ((l0, l1, "labels"), (c0, c1, "a condition")):
            if got is not None and want is None:
                raise ValueError(f"x0 has {what} but x1 has none.")
        inherit = l0 is None and c0 is None
        if inherit and batch_size(x1, "x1") != n0:
            raise ValueError(
                "x0 has no condition, so it takes x1's row by row; that needs as "
                f"many rows in x0 as in x1, got {n0} and {batch_size(x1, 'x1')}."
            )
        if inherit:
            l0, c0 = l1, c1
        cost = self.base.cost_matrix(x0, x1)
        if c1 is not None:
            if c0 is None or c0.shape[1:] != c1.shape[1:]:
                raise ValueError("x0 and x1 need conditions of the same shape.")
            gap = jnp.sum((c0[:, None, :] - c1[None, :, :]) ** 2, axis=-1)
            cost = cost + self.weight * gap.astype(cost.dtype)
        if l1 is not None:
            if l0 is None:
                raise ValueError("x1 has labels but x0 has none.")
            cross = l0[:, None] != l1[None, :]
            cost = jnp.where(cross, jnp.inf, cost)
            if self.base.square or getattr(self.base, "balanced", True):
                same = jnp.all(jnp.sort(l0) == jnp.sort(l1))
                cost = eqx.error_if(
                    cost,
                    ~same,
                    "conditional coupling: every label must occur as often in x0 as "
                    "in x1 for this base coupling (it pairs every row within its "
                    "label); draw x0 per label, or let x0 inherit x1's labels.",
                )
        return cost

    def couple(self, key: PRNGKeyArray, x0: PyTree, x1: PyTree) -> Coupled:
        self.base.check_sizes(x0, x1)
        rows0, rows1, stats = self.base.match(key, self.cost_matrix(x0, x1))
        return Coupled(take_rows(x0, rows0), take_rows(x1, rows1), stats)


def conditional(
    base: AbstractCostCoupling | None = None,
    *,
    weight: float = 1.0,
    label_fn: ConditionFn | None = None,
    cond_fn: ConditionFn | None = None,
) -> Conditional:
    r"""A conditional coupling: `base` on the cost with the rows' conditions.

    Args:
        base: a cost-based coupling; `None` for `exact_ot()`. (Configs name it:
            `coupling_args.base`, built through `flowlab.registry`.)
        weight: $\lambda$ for a continuous condition.
        label_fn: `tree -> (n,) int labels or None`; default: the second element
            of `(points, condition)` when it is integer.
        cond_fn: `tree -> (n, ...) condition or None`; default: the second element
            of `(points, condition)` when it is floating.

    Example:
        >>> import jax, jax.numpy as jnp, flowlab as fl
        >>> x0 = jax.random.normal(jax.random.key(0), (8, 2))
        >>> x1 = (jax.random.normal(jax.random.key(1), (8, 2)), jnp.arange(8) % 2)
        >>> x0, (x1, labels) = fl.couplings.conditional(fl.couplings.exact_ot())(
        ...     jax.random.key(2), x0, x1)
    """
    return Conditional(ExactOT() if base is None else base, weight, label_fn, cond_fn)


@registry.register("coupling", "conditional")
def _conditional_by_name(
    base: str | AbstractCostCoupling = "exact_ot",
    *,
    weight: float = 1.0,
    label_fn: ConditionFn | None = None,
    cond_fn: ConditionFn | None = None,
    manifold: "AbstractManifold | str | None" = None,
) -> Conditional:
    """`conditional` with its base given by name (configs, the command line).

    `manifold` is passed to the base's factory (`get("conditional",
    base="exact_ot", manifold=manifolds.Sphere(2))`), so it needs a base given
    by name; a base object is built with its own `manifold=` instead.
    """
    if manifold is not None:
        if not isinstance(base, str):
            raise ValueError(
                "manifold= is passed to a base given by name, e.g. "
                "base='exact_ot'; for a base object build it with the manifold, "
                f"e.g. exact_ot(manifold=...), got base={base!r}."
            )
        base = registry.build("coupling", base, manifold=manifold)
    base = registry.resolve("coupling", base)
    return conditional(base, weight=weight, label_fn=label_fn, cond_fn=cond_fn)
