r"""Minibatch couplings: how the rows of `x0` and `x1` are paired.

A coupling is `coupling(key, x0, x1) -> (x0, x1)`, a re-pairing of a minibatch that
runs inside `jit`. `x0` and `x1` are arrays `(n, ...)` or pytrees whose leaves share
the batch axis, e.g. `x1 = (points, cond)` with `cond` possibly `None`: rows move
together, and the cost reads the first leaf, flattened per row, through an ott-jax
`CostFn` (squared Euclidean by default). For points on a manifold every cost
coupling takes `manifold=`, short for `cost_fn=GeodesicCost(manifold)`, the squared
geodesic distance: `exact_ot(manifold=manifolds.Sphere(2))`, `sinkhorn(0.05,
manifold=manifolds.SO3())`, `get("conditional", base="exact_ot", manifold=...)`.

| factory | plan | marginals |
| :--- | :--- | :--- |
| `independent()` | $p_0 \otimes p_1$: rows as drawn | exact |
| `exact_ot()` | the optimal permutation (OT-CFM), solved on device | exact |
| `sinkhorn(epsilon)` | pairs drawn from the entropic plan (SB-CFM) | in expectation |
| `sinkhorn(epsilon, hard=True)` | a permutation drawn from the entropic plan | exact |
| `unbalanced(epsilon, tau_a, tau_b)` | pairs from an unbalanced plan | relaxed |
| `partial(mass, epsilon)` | pairs from a plan moving only `mass` | partial |
| `stable_matching()` | Gale–Shapley stable matching | exact |
| `conditional(base, ...)` | `base`, never across labels, λ on a condition | as `base` |
| `sharded(coupling, mesh)` | per device shard, or `global_batch=True` | as `coupling` |

`get(name, **kwargs)` builds one by name for configs (through `flowlab.registry`).
A coupling implements `couple(key, x0, x1) -> Coupled(x0, x1, stats)`; the stats
(e.g. whether Sinkhorn converged) go into the training metrics.
"""

from typing import Any

from .. import registry
from ._assignment import linear_assignment
from ._base import (
    AbstractCostCoupling,
    AbstractCoupling,
    AbstractPermutationCoupling,
    Coupled,
    FunctionCoupling,
    Independent,
    Matching,
    as_coupling,
    independent,
)
from ._conditional import Conditional, conditional, default_condition
from ._convergence import (
    AbstractFallback,
    AbstractUnconvergedPolicy,
    AcceptUnconverged,
    ExactOTFallback,
    IndependentFallback,
    RaiseUnconverged,
)
from ._data_dependent import (
    AbstractDataDependent,
    Degradation,
    Inpainting,
    degradation,
    inpainting,
)
from ._entropic import EntropicOT, partial, sinkhorn, unbalanced
from ._exact import ExactOT, exact_ot
from ._masks import box_mask, coordinate_mask, half_mask, mask_mixture, pool_upsample
from ._sharded import Sharded, sharded
from ._stable import StableMatching, stable_match, stable_matching

__all__ = [
    "AbstractCostCoupling",
    "AbstractCoupling",
    "AbstractDataDependent",
    "AbstractFallback",
    "AbstractPermutationCoupling",
    "AbstractUnconvergedPolicy",
    "AcceptUnconverged",
    "Conditional",
    "Coupled",
    "Degradation",
    "EntropicOT",
    "ExactOT",
    "ExactOTFallback",
    "FunctionCoupling",
    "GeodesicCost",
    "Independent",
    "IndependentFallback",
    "Inpainting",
    "Matching",
    "RaiseUnconverged",
    "Sharded",
    "StableMatching",
    "as_coupling",
    "box_mask",
    "conditional",
    "coordinate_mask",
    "default_condition",
    "degradation",
    "exact_ot",
    "get",
    "half_mask",
    "independent",
    "inpainting",
    "linear_assignment",
    "mask_mixture",
    "partial",
    "pool_upsample",
    "sharded",
    "sinkhorn",
    "stable_match",
    "stable_matching",
    "unbalanced",
]


def get(name: str, **kwargs: Any) -> AbstractCoupling:
    """A coupling by name, e.g. `get("sinkhorn", epsilon=0.1)`.

    Names: `flowlab.registry.names("coupling")` (`independent`, `exact_ot`,
    `sinkhorn`, `unbalanced`, `partial`, `stable_matching`, `conditional`, whose
    `base` may be a name too: `get("conditional", base="exact_ot")`).
    """
    return registry.build("coupling", name, **kwargs)


def __getattr__(name: str):
    if name == "GeodesicCost":  # an ott-jax CostFn: imports ott-jax on first use
        from ._geodesic import GeodesicCost

        globals()[name] = GeodesicCost
        return GeodesicCost
    if name == "conditioned_field":
        raise AttributeError(
            "conditioned_field moved to the sampling side: use "
            "flowlab.sampling.conditioned_field."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
