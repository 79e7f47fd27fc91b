"""Flax networks behind flowlab's framework-free model contract.

The core of flowlab sees a model as a pure per-sample function
`model_fn(params, t, x, cond)` and a `params` pytree. `init_model` turns any flax
module whose `__call__(t, x, cond)` acts on one sample into that pair.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from .mlp import ACTIVATIONS, MLP, selu, sinusoidal_embedding
from .tangent import TangentModel, init_tangent_model

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "TangentModel",
    "apply_fn",
    "init_model",
    "init_tangent_model",
    "selu",
    "sinusoidal_embedding",
]


def apply_fn(module: nn.Module):
    """The per-sample `model_fn(params, t, x, cond)` of a flax module."""

    def model_fn(params: PyTree, t: Array, x: Array, cond: Any = None) -> Array:
        return module.apply({"params": params}, t, x, cond)

    return model_fn


def init_model(
    module: nn.Module, key: PRNGKeyArray, x: Array, cond: Any = None
) -> tuple[Any, PyTree]:
    """Initialise `module` on one example sample `x` (event shape, no batch axis).

    Returns:
        `(model_fn, params)` with `model_fn(params, t, x, cond)` per sample.
    """
    x = jnp.asarray(x)
    variables = module.init(key, jnp.zeros((), x.dtype), x, cond)
    return apply_fn(module), variables["params"]
