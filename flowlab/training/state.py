"""The training state: everything a step reads and returns."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

__all__ = ["TrainState", "init_state"]


class TrainState(NamedTuple):
    """Parameters, optimiser state, EMA parameters, step counter and root key.

    The key is the run's root key and never changes: step `n` draws from
    `jax.random.fold_in(key, n)`, so a resumed run reproduces an uninterrupted one.
    """

    params: PyTree
    opt_state: optax.OptState
    ema_params: PyTree
    step: Int[Array, ""]
    key: PRNGKeyArray


def init_state(
    key: PRNGKeyArray, params: PyTree, optimizer: optax.GradientTransformation
) -> TrainState:
    """A fresh `TrainState` at step 0; `key` becomes the root key of the run."""
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        ema_params=jax.tree_util.tree_map(jnp.copy, params),
        step=jnp.zeros((), jnp.int32),
        key=key,
    )
