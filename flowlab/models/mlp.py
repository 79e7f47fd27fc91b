"""A multilayer perceptron velocity field with a time embedding."""

import math
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .. import registry

__all__ = ["ACTIVATIONS", "MLP", "selu", "sinusoidal_embedding"]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x: Array) -> Array:
    r"""SELU, $\lambda x$ for $x > 0$ and $\lambda\alpha(e^x - 1)$ otherwise.

    The same function as `jax.nn.selu`, written with `exp` instead of `expm1`:
    XLA's CPU `expm1` is about twice as slow as `exp` (5–9% of a small 2-D model's
    training step), and `exp(x) - 1` is accurate to float32 rounding in absolute
    terms, which is what an activation needs.
    """
    negative = _SELU_ALPHA * (jnp.exp(jnp.minimum(x, 0)) - 1)
    return _SELU_SCALE * jnp.where(x > 0, x, negative)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "selu": selu,
    "silu": nn.silu,
    "gelu": nn.gelu,
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
}
"""Activation names accepted by `MLP`."""


def sinusoidal_embedding(
    t: Float[ArrayLike, ""], dim: int, max_period: float = 1e4
) -> Float[Array, " dim"]:
    r"""Transformer-style features $[\cos(\omega_k t), \sin(\omega_k t)]$ of a time.

    Frequencies are geometric from 1 to `max_period`; times in $[0, 1]$ are scaled by
    1000 first, as in diffusion models, so the low frequencies resolve the unit
    interval. A vector of times (a flow map's start time and gap) gives the
    features of each, concatenated: `dim` per time.
    """
    if dim % 2:
        raise ValueError(f"the time embedding dimension must be even, got {dim}.")
    t = jnp.asarray(t)
    if t.ndim == 1:  # several times (a flow map's (t, s - t)): features of each
        return jnp.concatenate([sinusoidal_embedding(ti, dim, max_period) for ti in t])
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / half)
    angles = 1000.0 * t * freqs
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)])


class MLP(nn.Module):
    """An MLP `(t, x, cond) -> v` on one sample, output shaped like `x`.

    `t` is a scalar, or a vector of times whose features are concatenated (a
    flow-map network reads `(t, s - t)`, `flowlab.flowmaps`).

    Attributes:
        width: hidden layer width.
        depth: number of hidden layers (torchcfm's 2-D model is width 64, depth 3).
        activation: a name in `ACTIVATIONS`.
        time_embedding: `"identity"` appends `t` to the input (torchcfm's model);
            `"sinusoidal"` appends `sinusoidal_embedding(t, time_dim)`.
        time_dim: size of the sinusoidal embedding.
        num_classes: when set, `cond` is an integer label embedded in `time_dim`
            features; otherwise a float `cond` is flattened and appended.
    """

    width: int = 64
    depth: int = 3
    activation: str = "selu"
    time_embedding: str = "identity"
    time_dim: int = 16
    num_classes: int | None = None

    def two_time_params(self, params, event_size: int):
        """`params` of this network on one time, as parameters for two times.

        The features of the second time (a flow map's gap $s - t$) get zero
        weights, so the two-time network computes, for every gap, what `params`
        computes at `t`: the flow map `flowmaps.AverageVelocityMap` of the result
        starts as one Euler step of the velocity model (how a flow map is
        initialised from a teacher, `flowmaps.init_flow_map(velocity_params=)`).
        """
        k = 1 if self.time_embedding == "identity" else self.time_dim
        kernel = params["Dense_0"]["kernel"]
        at = event_size + k  # after the sample's and the first time's features
        gap = jnp.zeros((k, kernel.shape[1]), kernel.dtype)
        first = {
            **params["Dense_0"],
            "kernel": jnp.concatenate([kernel[:at], gap, kernel[at:]]),
        }
        return {**params, "Dense_0": first}

    @nn.compact
    def __call__(
        self,
        t: Float[ArrayLike, ""],
        x: Float[Array, "*event"],
        cond: ArrayLike | None = None,
    ) -> Float[Array, "*event"]:
        """Evaluate the field at one time and one sample."""
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation!r}."
            )
        t = jnp.asarray(t, x.dtype)
        if t.ndim > 1:
            raise ValueError(
                "MLP acts on one sample: t must be a scalar (or a vector of times, "
                f"a flow map's (t, s - t)), got shape {t.shape}."
            )
        if self.time_embedding == "identity":
            t_features = t.reshape(-1)
        elif self.time_embedding == "sinusoidal":
            t_features = sinusoidal_embedding(t, self.time_dim).astype(x.dtype)
        else:
            raise ValueError(
                "time_embedding must be 'identity' or 'sinusoidal', "
                f"got {self.time_embedding!r}."
            )
        features = [x.reshape(-1), t_features]
        if cond is not None:
            if self.num_classes is not None:
                label = jnp.asarray(cond).reshape(())
                features.append(nn.Embed(self.num_classes, self.time_dim)(label))
            else:
                features.append(jnp.asarray(cond, x.dtype).reshape(-1))
        h = jnp.concatenate(features)
        act = ACTIVATIONS[self.activation]
        for _ in range(self.depth):
            h = act(nn.Dense(self.width, param_dtype=x.dtype)(h))
        out = nn.Dense(x.size, param_dtype=x.dtype)(h)
        return out.reshape(x.shape)


registry.register("model", "mlp", MLP)
