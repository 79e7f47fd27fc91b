"""The coupling interfaces, the independent coupling and shared row helpers."""

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .. import _lazy, registry

if TYPE_CHECKING:
    from ..manifolds import AbstractManifold

# ott-jax is imported when a cost is first computed (flowlab._lazy).
costs = _lazy.module("ott.geometry.costs")
pointcloud = _lazy.module("ott.geometry.pointcloud")

__all__ = [
    "AbstractCostCoupling",
    "AbstractCoupling",
    "AbstractPermutationCoupling",
    "Coupled",
    "FunctionCoupling",
    "Independent",
    "Matching",
    "as_coupling",
    "batch_size",
    "ground_cost",
    "independent",
    "points",
    "take_rows",
]

Stats = dict[str, Float[Array, ""]]
"""What a coupling reports about one call: non-negative scalars, larger is worse."""


class Coupled(NamedTuple):
    """The re-paired batch and what the coupling reports about it.

    Attributes:
        x0: the source rows, re-paired.
        x1: the target rows, re-paired (row `k` of each is a pair).
        stats: scalars for the training metrics, e.g. `unconverged` (1 when an
            iterative solver stopped before its tolerance) and `marginal_error`.
            Every value is a non-negative figure of trouble (larger is worse), so
            a sharded coupling reports the largest over its shards.
    """

    x0: PyTree
    x1: PyTree
    stats: Stats = {}


class Matching(NamedTuple):
    """Row indices from a cost matrix: pair `k` is `(x0[rows0[k]], x1[rows1[k]])`.

    Attributes:
        rows0: rows of `x0`, or `None` to keep `x0` as it is.
        rows1: rows of `x1`.
        stats: as `Coupled.stats`.
    """

    rows0: Int[Array, " k"] | None
    rows1: Int[Array, " k"]
    stats: Stats = {}


def batch_size(tree: PyTree, name: str) -> int:
    """The leading size shared by every leaf of `tree` (checked at trace time)."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"{name} has no arrays; pass a batch (n, ...) or a pytree.")
    shapes = [jnp.shape(leaf) for leaf in leaves]
    if any(len(shape) == 0 for shape in shapes):
        raise ValueError(
            f"every leaf of {name} needs a leading batch axis, got shapes {shapes}."
        )
    sizes = {shape[0] for shape in shapes}
    if len(sizes) != 1:
        raise ValueError(
            f"the leaves of {name} must share the batch size (rows move together), "
            f"got shapes {shapes}."
        )
    return sizes.pop()


def points(tree: PyTree, name: str) -> Float[Array, "n d"]:
    """The first leaf of `tree`, flattened per row: what the cost reads."""
    first = jnp.asarray(jax.tree_util.tree_leaves(tree)[0])
    if not jnp.issubdtype(first.dtype, jnp.floating):
        raise TypeError(
            f"the first leaf of {name} holds the points the cost compares and must "
            f"be floating point, got {first.dtype}; put points first, e.g. "
            f"(points, labels)."
        )
    return first.reshape(first.shape[0], -1)


def take_rows(tree: PyTree, rows: Int[Array, " k"] | None) -> PyTree:
    """Rows `rows` of every leaf (all of them, unchanged, when `rows` is None)."""
    if rows is None:
        return tree
    return jax.tree_util.tree_map(lambda leaf: jnp.take(leaf, rows, axis=0), tree)


def ground_cost(
    cost_fn: "costs.CostFn | None", manifold: "AbstractManifold | str | None"
) -> "costs.CostFn":
    r"""The ground cost a factory's `cost_fn=` and `manifold=` ask for.

    Neither: `costs.SqEuclidean()`, $\|x - y\|^2$. `manifold=M` (a manifold, or its
    name in `flowlab.registry`, kind `manifold`, built with its defaults):
    `GeodesicCost(M)`, $d_M(x, y)^2$. Both at once is an error.
    """
    if manifold is None:
        return costs.SqEuclidean() if cost_fn is None else cost_fn
    if cost_fn is not None:
        raise ValueError(
            "pass cost_fn or manifold, not both: manifold=M is short for "
            f"cost_fn=couplings.GeodesicCost(M), got cost_fn={cost_fn!r} and "
            f"manifold={manifold!r}."
        )
    from ._geodesic import GeodesicCost  # imports ott-jax

    return GeodesicCost(registry.resolve("manifold", manifold))


class AbstractCoupling(eqx.Module):
    """A re-pairing of a minibatch: `coupling(key, x0, x1) -> (x0, x1)`.

    `x0` and `x1` are arrays `(n, ...)` or pytrees whose leaves share the batch axis
    (e.g. `(points, cond)`, where `cond` may be `None`); rows move together.

    Subclasses implement `couple`, which also returns what the coupling reports
    (the trainer logs it), and say with `repairs_rows` whether they pair rows with
    one another (a batch split over devices is then coupled per shard, see
    `couplings.sharded`) or act on each row alone.
    """

    repairs_rows: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def couple(self, key: PRNGKeyArray, x0: PyTree, x1: PyTree) -> Coupled:
        """The re-paired `(x0, x1)` and the coupling's stats."""

    def __call__(
        self, key: PRNGKeyArray, x0: PyTree, x1: PyTree
    ) -> tuple[PyTree, PyTree]:
        """Return the re-paired `(x0, x1)`: row `k` of each output is a pair."""
        x0, x1, _ = self.couple(key, x0, x1)
        return x0, x1


class AbstractCostCoupling(AbstractCoupling):
    r"""A coupling computed from the cost matrix $C_{ij} = c(x_0^i, x_1^j)$.

    The cost reads the first leaf of `x0` and of `x1`, flattened per row, through an
    ott-jax `CostFn` (`costs.SqEuclidean()` unless given; `GeodesicCost(manifold)`
    for points on a manifold). Subclasses implement
    `pair`, from the cost matrix to row indices; `+inf` entries are forbidden pairs
    (the conditional coupling relies on this).
    """

    cost_fn: eqx.AbstractVar["costs.CostFn"]
    repairs_rows: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def square(self) -> bool:
        """Whether `x0` and `x1` need the same number of rows."""

    @abc.abstractmethod
    def match(self, key: PRNGKeyArray, cost: Float[Array, "n m"]) -> Matching:
        """Row indices (and stats) from the cost matrix; `+inf` forbids a pair."""

    def pair(
        self, key: PRNGKeyArray, cost: Float[Array, "n m"]
    ) -> tuple[Int[Array, " k"] | None, Int[Array, " k"]]:
        """Rows `(i, j)`: pair `k` is `(x0[i[k]], x1[j[k]])`; `i=None` keeps x0."""
        rows0, rows1, _ = self.match(key, cost)
        return rows0, rows1

    def cost_matrix(self, x0: PyTree, x1: PyTree) -> Float[Array, "n m"]:
        """The cost between every row of `x0` and every row of `x1`."""
        y0, y1 = points(x0, "x0"), points(x1, "x1")
        if y0.shape[1] != y1.shape[1]:
            raise ValueError(
                f"the points of x0 and x1 must have the same size per row, got "
                f"x0 {y0.shape} and x1 {y1.shape} (flattened)."
            )
        dtype = jnp.result_type(y0, y1)
        cloud = pointcloud.PointCloud(
            y0.astype(dtype), y1.astype(dtype), cost_fn=self.cost_fn
        )
        return cloud.cost_matrix

    def check_sizes(self, x0: PyTree, x1: PyTree) -> None:
        """Raise at trace time when the batch sizes do not suit this coupling."""
        n0, n1 = batch_size(x0, "x0"), batch_size(x1, "x1")
        if self.square and n0 != n1:
            shapes = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(x0)]
            others = [jnp.shape(leaf) for leaf in jax.tree_util.tree_leaves(x1)]
            raise ValueError(
                f"{type(self).__name__} pairs every row once, so x0 and x1 need the "
                f"same number of rows, got x0 {shapes} and x1 {others}."
            )

    def couple(self, key: PRNGKeyArray, x0: PyTree, x1: PyTree) -> Coupled:
        self.check_sizes(x0, x1)
        rows0, rows1, stats = self.match(key, self.cost_matrix(x0, x1))
        return Coupled(take_rows(x0, rows0), take_rows(x1, rows1), stats)


class AbstractPermutationCoupling(AbstractCostCoupling):
    """A cost coupling that keeps `x0` in order and permutes `x1`.

    Both batches have `n` rows and both marginals are kept exactly. Subclasses
    implement `permutation`, from the square cost matrix to `sigma` with `x1[sigma]`
    paired to `x0`; the key is not used.
    """

    square: ClassVar[bool] = True

    @abc.abstractmethod
    def permutation(self, cost: Float[Array, "n n"]) -> Int[Array, " n"]:
        """`sigma` with `sigma[i]` the row of `x1` paired to row `i` of `x0`."""

    def match(self, key: PRNGKeyArray, cost: Float[Array, "n n"]) -> Matching:
        del key
        return Matching(None, self.permutation(cost))


class Independent(AbstractCoupling):
    """The independent coupling: rows stay as drawn (I-CFM)."""

    repairs_rows: ClassVar[bool] = False

    def couple(self, key: PRNGKeyArray, x0: Any, x1: Any) -> Coupled:
        del key
        return Coupled(x0, x1)


class FunctionCoupling(AbstractCoupling):
    """A plain function `fn(key, x0, x1) -> (x0, x1)` as a coupling (no stats).

    It may pair rows with one another, so on several devices it is coupled per
    shard like the other re-pairing couplings.
    """

    fn: Callable[[PRNGKeyArray, Any, Any], tuple[Any, Any]] = eqx.field(static=True)
    repairs_rows: ClassVar[bool] = True

    def couple(self, key: PRNGKeyArray, x0: Any, x1: Any) -> Coupled:
        x0, x1 = self.fn(key, x0, x1)
        return Coupled(x0, x1)


def as_coupling(coupling: Any) -> AbstractCoupling:
    """A coupling object from a coupling or a plain function `(key, x0, x1)`."""
    if isinstance(coupling, AbstractCoupling):
        return coupling
    if callable(coupling):
        return FunctionCoupling(coupling)
    raise TypeError(
        "coupling must be a flowlab.couplings.AbstractCoupling or a function "
        f"coupling(key, x0, x1) -> (x0, x1), got {type(coupling).__name__}."
    )


@registry.register("coupling", "independent")
def independent() -> Independent:
    r"""The independent coupling $\pi = p_0 \otimes p_1$: pairs stay as drawn."""
    return Independent()
