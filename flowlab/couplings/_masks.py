r"""Masks and degradations for the data-dependent couplings.

A mask function `mask_fn(key, event_shape) -> mask` returns a boolean mask of one
sample, True where a value is observed (kept from $x_1$) and False where it is
missing (drawn as noise); `pool_upsample` is a degradation for super-resolution.
"""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

__all__ = [
    "SIDES",
    "MaskFn",
    "box_mask",
    "coordinate_mask",
    "half_mask",
    "mask_mixture",
    "pool_upsample",
]

MaskFn = Callable[[PRNGKeyArray, tuple[int, ...]], Bool[Array, "*event"]]
"""`mask_fn(key, event_shape) -> mask`: 1 (True) where observed, 0 where missing."""

SIDES = ("top", "bottom", "left", "right")


def _image_shape(shape: tuple[int, ...] | None, event_shape: tuple[int, ...]):
    """The (h, w[, c]) image layout of an event, checked against its size."""
    image = tuple(event_shape) if shape is None else tuple(shape)
    if len(image) not in (2, 3):
        raise ValueError(
            f"image masks need an (h, w) or (h, w, channels) layout, got the event "
            f"shape {tuple(event_shape)}; pass shape=(h, w) for flattened images."
        )
    if shape is not None and _size(image) != _size(event_shape):
        raise ValueError(
            f"shape={image} has {_size(image)} entries but the event shape "
            f"{tuple(event_shape)} has {_size(event_shape)}."
        )
    return image


def _size(shape: Sequence[int]) -> int:
    size = 1
    for s in shape:
        size *= s
    return size


def _uniform_int(u: Array, count: Any) -> Array:
    """A uniform integer in `[0, count)` from a uniform `u` in `[0, 1)`."""
    return jnp.minimum(jnp.floor(u * count).astype(jnp.int32), count - 1)


def _on_image(keep: Bool[Array, "h w"], image, event_shape) -> Bool[Array, "*event"]:
    keep = jnp.broadcast_to(keep[..., None], image) if len(image) == 3 else keep
    return keep.reshape(event_shape)


class _CoordinateMask(eqx.Module):
    num_missing: int | None = eqx.field(static=True)
    p_missing: float = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, event_shape: tuple[int, ...]) -> Array:
        size = _size(event_shape)
        if self.num_missing is None:
            keep = jax.random.uniform(key, (size,)) >= self.p_missing
        else:
            if self.num_missing > size:
                raise ValueError(
                    f"num_missing={self.num_missing} exceeds the {size} coordinates "
                    "of a sample."
                )
            rank = jnp.argsort(jnp.argsort(jax.random.uniform(key, (size,))))
            keep = rank >= self.num_missing
        return keep.reshape(event_shape)


def coordinate_mask(num_missing: int | None = None, *, p_missing: float = 0.5):
    """Random coordinates missing: exactly `num_missing` of them, or each w.p. `p`.

    Args:
        num_missing: how many coordinates of each sample are missing, chosen
            uniformly; `None` draws each coordinate independently instead.
        p_missing: the probability a coordinate is missing (when `num_missing` is
            `None`).
    """
    if num_missing is not None and (
        isinstance(num_missing, bool) or not isinstance(num_missing, int)
    ):
        raise TypeError(f"num_missing must be an int or None, got {num_missing!r}.")
    if num_missing is not None and num_missing < 0:
        raise ValueError(f"num_missing must be >= 0, got {num_missing}.")
    if not 0.0 <= p_missing <= 1.0:
        raise ValueError(f"p_missing must lie in [0, 1], got {p_missing!r}.")
    return _CoordinateMask(num_missing, float(p_missing))


class _HalfMask(eqx.Module):
    missing: tuple[str, ...] = eqx.field(static=True)
    shape: tuple[int, ...] | None = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, event_shape: tuple[int, ...]) -> Array:
        image = _image_shape(self.shape, event_shape)
        h, w = image[:2]
        rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
        halves = {
            "top": rows >= h // 2,
            "bottom": rows < h // 2,
            "left": cols >= w // 2,
            "right": cols < w // 2,
        }
        keeps = jnp.stack(
            [jnp.broadcast_to(halves[side], (h, w)) for side in self.missing]
        )
        return _on_image(
            keeps[_uniform_int(jax.random.uniform(key), len(self.missing))],
            image,
            event_shape,
        )


def half_mask(
    missing: str | Sequence[str] = SIDES, *, shape: tuple[int, ...] | None = None
):
    """Half of an image missing: one of the sides in `missing`, uniformly.

    The top (left) half is the first `h // 2` rows (`w // 2` columns), the bottom
    (right) half the rest. Images are `(h, w)` or `(h, w, channels)`.

    Args:
        missing: a side or sides among `"top"`, `"bottom"`, `"left"`, `"right"`.
        shape: the image layout of flattened samples, e.g. `(8, 8)` for `(64,)`.
    """
    missing = (missing,) if isinstance(missing, str) else tuple(missing)
    if not missing or any(side not in SIDES for side in missing):
        raise ValueError(f"missing must name sides among {SIDES}, got {missing!r}.")
    return _HalfMask(missing, None if shape is None else tuple(shape))


class _BoxMask(eqx.Module):
    min_size: int = eqx.field(static=True)
    max_size: int | None = eqx.field(static=True)
    shape: tuple[int, ...] | None = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, event_shape: tuple[int, ...]) -> Array:
        image = _image_shape(self.shape, event_shape)
        u = jax.random.uniform(key, (2, 2))
        inside = jnp.ones(image[:2], bool)
        for axis in range(2):
            n = image[axis]
            hi = n if self.max_size is None else min(self.max_size, n)
            if self.min_size > hi:
                raise ValueError(
                    f"min_size={self.min_size} exceeds the image side {n} (or "
                    f"max_size)."
                )
            size = self.min_size + _uniform_int(u[axis, 0], hi - self.min_size + 1)
            first = _uniform_int(u[axis, 1], n - size + 1)
            idx = jnp.arange(n)
            along = (idx >= first) & (idx < first + size)
            inside = inside & (along[:, None] if axis == 0 else along[None, :])
        return _on_image(~inside, image, event_shape)


def box_mask(
    min_size: int = 1,
    max_size: int | None = None,
    *,
    shape: tuple[int, ...] | None = None,
):
    """A random axis-aligned rectangle of an image missing.

    Each side length is uniform in `[min_size, max_size]` (capped by the image),
    the position uniform among those that fit.

    Args:
        min_size: the shortest side of the rectangle (>= 1).
        max_size: the longest side (default: the image side).
        shape: the image layout of flattened samples, e.g. `(8, 8)` for `(64,)`.
    """
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"min_size must be an int >= 1, got {min_size!r}.")
    if max_size is not None and (not isinstance(max_size, int) or max_size < min_size):
        raise ValueError(
            f"max_size must be an int >= min_size ({min_size}), got {max_size!r}."
        )
    return _BoxMask(min_size, max_size, None if shape is None else tuple(shape))


class _MaskMixture(eqx.Module):
    mask_fns: tuple[MaskFn, ...] = eqx.field(static=True)
    probs: tuple[float, ...] = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, event_shape: tuple[int, ...]) -> Array:
        k_pick, k_mask = jax.random.split(key)
        pick = jax.random.choice(k_pick, len(self.mask_fns), p=jnp.asarray(self.probs))
        branches = [
            lambda k, f=f: jnp.asarray(f(k, event_shape)).astype(bool)
            for f in self.mask_fns
        ]
        return jax.lax.switch(pick, branches, k_mask)


def mask_mixture(*mask_fns: MaskFn, probs: Sequence[float] | None = None):
    """Each row's mask from one of `mask_fns`, picked with probabilities `probs`.

    Args:
        *mask_fns: mask functions, e.g. `half_mask()` and `box_mask(2, 5)`.
        probs: their probabilities (default uniform); must sum to one.
    """
    if not mask_fns or not all(callable(f) for f in mask_fns):
        raise TypeError("mask_mixture needs one or more mask_fn callables.")
    probs = (1.0 / len(mask_fns),) * len(mask_fns) if probs is None else tuple(probs)
    if len(probs) != len(mask_fns) or any(p < 0 for p in probs):
        raise ValueError(
            f"probs must be {len(mask_fns)} non-negative numbers, got {probs!r}."
        )
    if abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"probs must sum to 1, got {sum(probs)}.")
    return _MaskMixture(tuple(mask_fns), tuple(float(p) for p in probs))


class _PoolUpsample(eqx.Module):
    factor: int = eqx.field(static=True)
    shape: tuple[int, ...] | None = eqx.field(static=True)

    def __call__(self, x: Float[Array, "*event"]) -> Float[Array, "*event"]:
        image = _image_shape(self.shape, x.shape)
        h, w, f = image[0], image[1], self.factor
        if h % f or w % f:
            raise ValueError(
                f"pool_upsample: the image sides {(h, w)} must divide by factor={f}."
            )
        img = x.reshape(h // f, f, w // f, f, -1)
        low = img.mean(axis=(1, 3), keepdims=True)
        return jnp.broadcast_to(low, img.shape).reshape(x.shape)


def pool_upsample(factor: int, *, shape: tuple[int, ...] | None = None):
    """`factor`×`factor` average pooling, then nearest up-sampling to the same size.

    Args:
        factor: the pooling factor; the image sides must divide by it.
        shape: the image layout of flattened samples, e.g. `(8, 8)` for `(64,)`.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1, got {factor!r}.")
    return _PoolUpsample(factor, None if shape is None else tuple(shape))
