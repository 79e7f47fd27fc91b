"""The uniform distribution on a compact manifold: the usual source on curved spaces."""

import jax
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _checks, registry
from ..manifolds import AbstractCompactManifold
from ._base import check_n
from .manifold_sets import AbstractManifoldSampler

__all__ = ["Uniform"]


class Uniform(AbstractManifoldSampler):
    """Points uniform by the Riemannian volume of a compact manifold, exact `log_prob`.

    Registered as `"uniform"`: in a config, `data.source = "uniform"` draws on the
    manifold of `data.target`.

    Attributes:
        manifold: a `flowlab.manifolds.AbstractCompactManifold` (the sphere, the
            torus, SO(3), a product of them).

    Example:
        >>> import jax
        >>> from flowlab import data, manifolds
        >>> x = data.Uniform(manifolds.Sphere(2)).sample(jax.random.key(0), 5)
        >>> x.shape
        (5, 3)
    """

    manifold: AbstractCompactManifold

    def __check_init__(self):
        _checks.instance_of(
            "manifold",
            self.manifold,
            AbstractCompactManifold,
            "compact flowlab manifold (one with a uniform distribution)",
            "manifolds.Sphere(2)",
        )

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n *shape"]:
        n = check_n(n)
        keys = jax.random.split(_checks.key(key), n)
        return jax.vmap(self.manifold.random_uniform)(keys)

    def log_prob(self, x: Float[Array, "*shape"]) -> Float[Array, ""]:
        """`-log vol(M)`, the same at every point."""
        return self.manifold.uniform_log_prob(x)


def _uniform(manifold: AbstractCompactManifold | None = None) -> Uniform:
    """The `"uniform"` data set: on the manifold a config's target lies on."""
    if manifold is None:
        raise ValueError(
            "data.source = 'uniform' draws on the manifold of data.target, but the "
            "target is a Euclidean data set: use 'gaussian' there."
        )
    return Uniform(manifold)


registry.register("data", "uniform", _uniform)
