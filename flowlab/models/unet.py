r"""A small U-Net velocity field for low-resolution images, on one sample.

The network reads one image (flat, e.g. a 64-vector, or already in `image_shape`),
and returns a field of the same shape. Each resolution has a residual block of two
$3\times 3$ convolutions with group normalisation; a time embedding (sinusoidal
features through a two-layer MLP) and, optionally, a label embedding are added
together into one vector $e$ that modulates every block (FiLM):

$$h \leftarrow \mathrm{GN}(h)\,(1 + \gamma(e)) + \beta(e).$$

With the default `channel_mult=(1, 2, 2)` an 8×8 image goes 8×8 → 4×4 → 2×2 by
strided convolutions and back up by nearest-neighbour upsampling, with the skip
connections of a U-Net.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .. import registry
from .mlp import ACTIVATIONS, sinusoidal_embedding

__all__ = ["UNet"]


class _ResBlock(nn.Module):
    """Two 3×3 convolutions with group norm, FiLM by the embedding, and a skip."""

    channels: int
    groups: int
    activation: str

    @nn.compact
    def __call__(self, h: Array, emb: Array) -> Array:
        dtype = h.dtype
        act = ACTIVATIONS[self.activation]
        norm = dict(num_groups=self.groups, reduction_axes=(-3, -2, -1))
        skip = h
        h = act(nn.GroupNorm(**norm, param_dtype=dtype)(h))
        h = nn.Conv(self.channels, (3, 3), param_dtype=dtype)(h)
        scale, shift = jnp.split(
            nn.Dense(2 * self.channels, param_dtype=dtype)(act(emb)), 2
        )
        h = nn.GroupNorm(**norm, param_dtype=dtype)(h)
        h = h * (1 + scale[None, None]) + shift[None, None]  # over the pixels
        h = nn.Conv(self.channels, (3, 3), param_dtype=dtype)(act(h))
        if skip.shape[-1] != self.channels:
            skip = nn.Conv(self.channels, (1, 1), param_dtype=dtype)(skip)
        return (skip + h) / math.sqrt(2.0)


class UNet(nn.Module):
    r"""A U-Net `(t, x, cond) -> v` on one image, output shaped like `x`.

    Attributes:
        image_shape: `(height, width, channels)` of one image; `x` may be any
            array of that many entries (a flat 64-vector for the 8×8 digits).
            Height and width must be divisible by `2 ** (len(channel_mult) - 1)`.
        width: the channels at full resolution.
        channel_mult: channels of each resolution as multiples of `width`; each
            entry after the first halves the resolution.
        groups: groups of every group norm (must divide each level's channels).
        activation: a name in `flowlab.models.ACTIVATIONS`.
        time_dim: size of the sinusoidal time features.
        num_classes: when set, `cond` is an integer label in
            $0, \dots,$ `num_classes - 1`, whose row of a learnt table is added to
            the time embedding; a model for classifier-free guidance counts the
            null label too (`flowlab.conditioning.Labels(K).embedding_size`,
            $K + 1$). `cond=None` adds no label. Without `num_classes` a float
            `cond` is flattened and mapped there by a dense layer.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import models
        >>> net = models.UNet(num_classes=11)  # 8x8 images, ten digits and a null label
        >>> model_fn, params = models.init_model(net, jax.random.key(0), jnp.zeros(64))
        >>> model_fn(params, 0.5, jnp.zeros(64), 3).shape
        (64,)
    """

    image_shape: Sequence[int] = (8, 8, 1)
    width: int = 16
    channel_mult: Sequence[int] = (1, 2, 2)
    groups: int = 8
    activation: str = "silu"
    time_dim: int = 64
    num_classes: int | None = None

    def _check(self, t: Array, x: Array) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation!r}."
            )
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(
                "image_shape must be (height, width, channels), got "
                f"{tuple(self.image_shape)}."
            )
        if t.ndim > 1:
            raise ValueError(
                "UNet acts on one sample: t must be a scalar (or a vector of times, "
                f"a flow map's (t, s - t)), got shape {t.shape}."
            )
        if x.size != math.prod(self.image_shape):
            raise ValueError(
                f"UNet acts on one image of image_shape {tuple(self.image_shape)} "
                f"({math.prod(self.image_shape)} entries), got x of shape "
                f"{x.shape}; pass one sample (vmap over a batch) or set "
                "image_shape."
            )
        if not self.channel_mult or self.width < 1 or min(self.channel_mult) < 1:
            raise ValueError(
                "width and every channel_mult entry must be positive, got "
                f"width={self.width}, channel_mult={tuple(self.channel_mult)}."
            )
        factor = 2 ** (len(self.channel_mult) - 1)
        height, width_, _ = self.image_shape
        if height % factor or width_ % factor:
            raise ValueError(
                f"image_shape {tuple(self.image_shape)}: height and width must be "
                f"divisible by {factor} for {len(self.channel_mult)} resolutions "
                "(channel_mult); use fewer levels."
            )
        for mult in self.channel_mult:
            if (self.width * mult) % self.groups:
                raise ValueError(
                    f"groups={self.groups} must divide every level's channels "
                    f"(width * channel_mult = {self.width * mult})."
                )

    def _embedding(self, t: Array, cond: ArrayLike | None, dtype) -> Array:
        dim = 4 * self.width
        act = ACTIVATIONS[self.activation]
        e = sinusoidal_embedding(t, self.time_dim).astype(dtype)
        e = nn.Dense(dim, param_dtype=dtype)(e)
        e = nn.Dense(dim, param_dtype=dtype)(act(e))
        if self.num_classes is not None:
            table = self.param(
                "label_embedding",
                nn.initializers.normal(1.0),
                (self.num_classes, dim),
                dtype,
            )
            if cond is not None:
                label = jnp.asarray(cond)
                if not jnp.issubdtype(label.dtype, jnp.integer) or label.size != 1:
                    raise TypeError(
                        f"with num_classes={self.num_classes}, cond must be one "
                        f"integer label in 0..{self.num_classes - 1} or None, got "
                        f"dtype {label.dtype} and shape {label.shape}."
                    )
                e = e + table[label.reshape(())]
        elif cond is not None:
            c = jnp.asarray(cond, dtype).reshape(-1)
            e = e + nn.Dense(dim, param_dtype=dtype)(c)
        return e

    @nn.compact
    def __call__(
        self,
        t: Float[ArrayLike, ""],
        x: Float[Array, "*event"],
        cond: ArrayLike | None = None,
    ) -> Float[Array, "*event"]:
        """Evaluate the field at one time and one image."""
        x = jnp.asarray(x)
        t = jnp.asarray(t, x.dtype)
        self._check(t, x)
        dtype = x.dtype
        emb = self._embedding(t, cond, dtype)
        h = nn.Conv(self.width, (3, 3), param_dtype=dtype)(
            x.reshape(tuple(self.image_shape))
        )
        block = lambda mult: _ResBlock(  # noqa: E731
            self.width * mult, self.groups, self.activation
        )
        skips = []
        for level, mult in enumerate(self.channel_mult):
            if level:  # halve the resolution
                h = nn.Conv(
                    self.width * mult, (3, 3), strides=(2, 2), param_dtype=dtype
                )(h)
            h = block(mult)(h, emb)
            skips.append(h)
        h = block(self.channel_mult[-1])(h, emb)  # the middle
        for level in reversed(range(len(self.channel_mult))):
            mult = self.channel_mult[level]
            h = block(mult)(jnp.concatenate([h, skips[level]], axis=-1), emb)
            if level:  # double the resolution
                h = jnp.repeat(jnp.repeat(h, 2, axis=-3), 2, axis=-2)
        act = ACTIVATIONS[self.activation]
        h = act(
            nn.GroupNorm(self.groups, reduction_axes=(-3, -2, -1), param_dtype=dtype)(h)
        )
        out = nn.Conv(self.image_shape[-1], (3, 3), param_dtype=dtype)(h)
        return out.reshape(x.shape)


registry.register("model", "unet", UNet)
