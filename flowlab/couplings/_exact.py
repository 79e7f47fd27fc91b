r"""Exact minibatch optimal transport: the optimal permutation of a batch (OT-CFM)."""

from typing import TYPE_CHECKING

import equinox as eqx
from jaxtyping import Array, Float, Int

from .. import registry
from ._assignment import linear_assignment
from ._base import AbstractPermutationCoupling, costs, ground_cost

if TYPE_CHECKING:
    from ..manifolds import AbstractManifold

__all__ = ["ExactOT", "exact_ot"]


class ExactOT(AbstractPermutationCoupling):
    r"""Re-pair `x1` to `x0` by the assignment of least total cost.

    With uniform weights on two batches of `n` rows, an optimal transport plan is a
    permutation (Birkhoff), so exact batch OT is the linear assignment

    $$\sigma^\star = \arg\min_{\sigma \in S_n} \sum_{i=1}^n c(x_0^i, x_1^{\sigma(i)}).$$

    `x0` keeps its order and `x1` is permuted, `x1 <- x1[sigma]`; both marginals are
    preserved exactly. The assignment is solved on device, inside `jit`, by an
    ε-scaling auction finished with Hungarian shortest augmenting paths
    (`flowlab.couplings.linear_assignment`) on integer-quantised costs, refined
    until a certificate computed in compensated floating point shows the
    permutation optimal to within half the costs' machine epsilon of its cost
    (float32's without x64, where the quantisation alone is too coarse on 1-D
    data). The key is not used.

    Attributes:
        cost_fn: the ground cost, an ott-jax `CostFn`. The default, squared
            Euclidean, makes the batch plan the empirical $W_2$ plan.
    """

    cost_fn: "costs.CostFn" = eqx.field(default_factory=lambda: costs.SqEuclidean())

    def permutation(self, cost: Float[Array, "n n"]) -> Int[Array, " n"]:
        return linear_assignment(cost)


@registry.register("coupling", "exact_ot")
def exact_ot(
    cost_fn: "costs.CostFn | None" = None,
    *,
    manifold: "AbstractManifold | str | None" = None,
) -> ExactOT:
    r"""The exact minibatch OT coupling (OT-CFM): an optimal permutation of `x1`.

    Args:
        cost_fn: an ott-jax `CostFn`; `None` for `costs.SqEuclidean()`,
            $c(x, y) = \|x - y\|^2$.
        manifold: points on a manifold (a `flowlab.manifolds` manifold or its
            registry name): the cost is `GeodesicCost(manifold)`, the squared
            geodesic distance $d(x, y)^2$, so the plan is the manifold's empirical
            $W_2$ plan (Riemannian OT-CFM). Give `cost_fn` or `manifold`, not both.

    Example:
        >>> import jax, flowlab as fl
        >>> k0, k1 = jax.random.split(jax.random.key(0))
        >>> x0, x1 = jax.random.normal(k0, (64, 2)), jax.random.normal(k1, (64, 2))
        >>> x0, x1 = jax.jit(fl.couplings.exact_ot())(jax.random.key(1), x0, x1)
        >>> s2 = fl.manifolds.Sphere(2)  # on the sphere, geodesic squared distance
        >>> y0 = jax.vmap(s2.random_uniform)(jax.random.split(k0, 64))
        >>> y1 = jax.vmap(s2.random_uniform)(jax.random.split(k1, 64))
        >>> y0, y1 = fl.couplings.exact_ot(manifold=s2)(jax.random.key(1), y0, y1)
    """
    return ExactOT(ground_cost(cost_fn, manifold))
