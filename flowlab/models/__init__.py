"""Flax networks behind flowlab's framework-free model contract.

The core of flowlab sees a model as a pure per-sample function
`model_fn(params, t, x, cond)` and a `params` pytree. `init_model` turns any flax
module whose `__call__(t, x, cond)` acts on one sample into that pair.
"""

from typing import Any

import equinox as eqx
import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree

from .mlp import ACTIVATIONS, MLP, selu, sinusoidal_embedding
from .tangent import TangentModel, init_tangent_model
from .unet import UNet

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "TangentModel",
    "UNet",
    "apply_fn",
    "init_model",
    "init_tangent_model",
    "selu",
    "sinusoidal_embedding",
]


class _Applied(eqx.Module):
    """`module.apply` as a per-sample model; equal for equal modules.

    A module rather than a closure: two models of the same flax module compare
    equal, so `sample_ode`, `log_likelihood` and `fit` reuse their compiled code for
    a newly initialised model of the same architecture.
    """

    module: nn.Module = eqx.field(static=True)

    def __call__(self, params: PyTree, t: Array, x: Array, cond: Any = None) -> Array:
        return self.module.apply({"params": params}, t, x, cond)


def apply_fn(module: nn.Module):
    """The per-sample `model_fn(params, t, x, cond)` of a flax module."""
    return _Applied(module)


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
