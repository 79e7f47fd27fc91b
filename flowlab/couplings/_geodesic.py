r"""The geodesic cost on a manifold: couplings of points on a curved space.

`GeodesicCost(manifold)` is an ott-jax `CostFn` with

$$c(x, y) = d_{\mathcal M}(x, y)^2,$$

the squared geodesic distance of `manifold` (`manifold.dist`, in its own metric).
Every cost coupling takes it as `cost_fn`, or builds it from `manifold=`:
`couplings.exact_ot(manifold=manifolds.Sphere(2))` is Riemannian OT-CFM's
minibatch plan (the empirical $W_2$ plan of the manifold), `sinkhorn(...,
manifold=...)` its entropic version.

This module imports ott-jax when it is imported (the class subclasses
`ott.geometry.costs.CostFn`); `flowlab.couplings` reaches it only on first use of
`GeodesicCost` or of a factory's `manifold=` argument.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float
from ott.geometry import costs

from ..manifolds import AbstractManifold

__all__ = ["GeodesicCost"]


class GeodesicCost(eqx.Module, costs.CostFn):
    r"""The squared geodesic distance $c(x, y) = d(x, y)^2$ of a manifold.

    A coupling's cost reads the first leaf of `x0` and `x1` flattened per row
    (`(n, 3, 3)` rotations arrive as `(n, 9)`), so `__call__` reshapes each row
    back to `manifold.shape` before `manifold.dist`. The points must lie on the
    manifold: `dist` is evaluated as given, never projected (for points off it the
    value is whatever the closed form gives, e.g. not a distance on the sphere).

    It is an `equinox.Module` (a pytree whose leaves are the manifold's, so a
    coupling holding it is one too) and an ott-jax `CostFn`: `all_pairs(x, y)` is
    `vmap` over both batches, `(n, d), (m, d) -> (n, m)`, and works under `jit`,
    `vmap` and `shard_map`. On `Euclidean(d)` it is `costs.SqEuclidean()`.

    Scale: the cost is in the manifold's squared units, at most the squared
    diameter: $\pi^2$ on the unit sphere and on SO(3) (whose `dist` is the
    rotation angle, for the metric $\frac12\operatorname{tr}(u^\top v)$), $d\pi^2$
    on the flat torus $T^d$. An entropic coupling's `epsilon` is in these units.

    Attributes:
        manifold: a `flowlab.manifolds.AbstractManifold`.

    Example:
        >>> import jax, flowlab as fl
        >>> s2 = fl.manifolds.Sphere(2)
        >>> k0, k1 = jax.random.split(jax.random.key(0))
        >>> x0 = jax.vmap(s2.random_uniform)(jax.random.split(k0, 64))
        >>> x1 = jax.vmap(s2.random_uniform)(jax.random.split(k1, 64))
        >>> ot = fl.couplings.exact_ot(cost_fn=fl.couplings.GeodesicCost(s2))
        >>> x0, x1 = jax.jit(ot)(jax.random.key(1), x0, x1)
    """

    manifold: AbstractManifold

    def __check_init__(self):
        if not isinstance(self.manifold, AbstractManifold):
            raise TypeError(
                "manifold must be a flowlab.manifolds.AbstractManifold (e.g. "
                f"manifolds.Sphere(2)), got {type(self.manifold).__name__}."
            )

    def __call__(
        self, x: Float[Array, " d"], y: Float[Array, " d"]
    ) -> Float[Array, ""]:
        r"""$d(x, y)^2$ for two points given flattened (or in `manifold.shape`)."""
        shape = self.manifold.shape
        size = math.prod(shape)
        for name, p in (("x", x), ("y", y)):
            if jnp.size(p) != size:
                raise ValueError(
                    f"GeodesicCost on {self.manifold!r} compares points of shape "
                    f"{shape} ({size} numbers per row), got {name} of shape "
                    f"{jnp.shape(p)}; the first leaf of x0 and x1 must hold the "
                    "manifold's points, (n, *manifold.shape)."
                )
        x, y = jnp.reshape(x, shape), jnp.reshape(y, shape)
        return jnp.square(self.manifold.dist(x, y))

    # ott-jax's own pytree methods (CostFn's return no children); JAX flattens
    # this class as an equinox Module, these only keep a direct call consistent.
    def tree_flatten(self):  # noqa: D102
        leaves, treedef = jax.tree_util.tree_flatten(self)
        return leaves, treedef

    @classmethod
    def tree_unflatten(cls, aux_data, children):  # noqa: D102
        return jax.tree_util.tree_unflatten(aux_data, children)
