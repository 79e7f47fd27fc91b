r"""A network on a manifold: its output made a tangent vector at its input.

`TangentModel(model_fn, manifold)` is a model (`model_fn(params, t, x, cond)`) whose
network reads the manifold's `features(x)` (the ambient coordinates, or a continuous
embedding such as $(\cos\theta, \sin\theta)$ on the torus) and returns a vector $o$ in
the features' space; the model's value is its pull-back to $x$, projected on the
tangent space:

$$v(t, x) = \mathrm{proju}_x\big(D\phi(x)^\top o\big), \qquad \phi = \text{features},$$

one `jax.vjp` of the features (the identity where they are the coordinates, so
$v = \mathrm{proju}_x(o)$). Flow matching on a `GeodesicPath` and the manifold
samplers then see a field tangent to the manifold everywhere.
"""

from typing import Any

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from ..manifolds import AbstractManifold

__all__ = ["TangentModel", "init_tangent_model"]


class TangentModel(eqx.Module):
    """A model whose output lies in the tangent space at its input (module docstring).

    Attributes:
        model_fn: the network, `model_fn(params, t, features, cond)`, returning a
            vector of the features' shape.
        manifold: the manifold of the inputs.
    """

    model_fn: Any = eqx.field(static=True)
    manifold: AbstractManifold

    def __call__(self, params: PyTree, t: Array, x: Array, cond: Any = None) -> Array:
        features, pull_back = jax.vjp(self.manifold.features, x)
        out = self.model_fn(params, t, features, cond)
        if out.shape != features.shape:
            raise ValueError(
                f"the network must return a vector of the features' shape "
                f"{features.shape} on {self.manifold!r}, got {out.shape}."
            )
        (ambient,) = pull_back(out.astype(features.dtype))
        return self.manifold.proju(x, ambient)


def init_tangent_model(
    module: nn.Module,
    manifold: AbstractManifold,
    key: PRNGKeyArray,
    x: Array,
    cond: Any = None,
) -> tuple[TangentModel, PyTree]:
    """`init_model` for a network on `manifold`: `(TangentModel, params)`.

    Args:
        module: a flax module `(t, features, cond) -> vector` of the features' shape
            (`MLP` is).
        manifold: the manifold.
        key: the initialisation key.
        x: an example point (one sample, no batch axis).
        cond: an example condition, or `None`.
    """
    from . import init_model

    features = manifold.features(jnp.asarray(x))
    model_fn, params = init_model(module, key, features, cond)
    return TangentModel(model_fn, manifold), params
