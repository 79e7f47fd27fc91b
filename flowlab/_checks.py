"""Argument checks shared across flowlab: each raises an error that names the argument.

They run at trace time (on Python values and shapes), before any work is done.
"""

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = [
    "callables",
    "instance_of",
    "is_number",
    "key",
    "positive_int",
    "sampler",
    "scalar_time",
]


def is_number(value: Any) -> bool:
    """Whether `value` is a Python int or float (not a bool, not an array)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(name: str, value: Any, what: str = "a positive int") -> int:
    """`value` if it is a Python int >= 1, else a `ValueError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return value


def instance_of(name: str, value: Any, cls: type, what: str, example: str) -> None:
    """Raise a `TypeError` naming `name` unless `value` is a `cls` (called `what`)."""
    if not isinstance(value, cls):
        raise TypeError(
            f"{name} must be a {what} (e.g. {example}), got {type(value).__name__}."
        )


def callables(**fns: Any) -> None:
    """Raise a `TypeError` for the first argument that is not a `name(t, x, args)`."""
    for name, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"{name} must be a callable {name}(t, x, args).")


def key(value: Any, name: str = "key") -> PRNGKeyArray:
    """A single JAX PRNG key (new-style, or a legacy `uint32[2]` one, wrapped)."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if jnp.shape(value) != ():
            raise ValueError(
                f"{name} must be a single key, got an array of keys of shape "
                f"{jnp.shape(value)}; pass one key (jax.vmap over keys to draw "
                "batches of batches)."
            )
        return value
    if dtype == jnp.uint32 and jnp.ndim(value) == 1:
        try:
            return jax.random.wrap_key_data(value)
        except (TypeError, ValueError):
            pass
    got = type(value).__name__
    if dtype is not None:
        got += f" of dtype {dtype} and shape {jnp.shape(value)}"
    elif is_number(value):
        got += f" {value!r}"
    raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed)), got {got}.")


def sampler(
    name: str, value: Any, cls: type, *, none: bool = False, batches: bool = False
) -> None:
    """Raise a `TypeError` naming `name` unless `value` is a sampler `cls`.

    `none`: `None` is allowed too; `batches`: any iterable but an array is too (an
    iterable of batches). An array is always refused with the fix: a data set is
    `flowlab.data.Empirical(points)`, which draws its rows, not an array.
    """
    if isinstance(value, cls) or (none and value is None):
        return
    also = " or None" if none else ""
    also += " or an iterable of batches" if batches else ""
    what = f"{name} must be a flowlab.data.AbstractSampler{also}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # jax, numpy arrays
        raise TypeError(
            f"{what}, got an array of shape {tuple(value.shape)}. To draw from a "
            f"data set, wrap it: {name}=flowlab.data.Empirical(points) (uniform "
            "draws of its rows)."
        )
    if batches and isinstance(value, Iterable) and not isinstance(value, str):
        return
    raise TypeError(f"{what}, got {type(value).__name__}.")


def float_array(name: str, a: ArrayLike, shape: tuple[int, ...], what: str) -> Array:
    """`a` as a floating array of `shape` (integers are cast); else a `ValueError`.

    The message names `name`, says what it must be (`what`, e.g. "a rotation
    matrix"), the shape expected and the shape received.
    """
    a = jnp.asarray(a)
    if a.shape != tuple(shape):
        raise ValueError(
            f"{name} must be {what}, of shape {tuple(shape)}, got shape {a.shape}; "
            "one sample per call (batch with jax.vmap)."
        )
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    return a


def scalar_time(t: Float[ArrayLike, ""], name: str = "t") -> Float[Array, ""]:
    """`t` as a scalar floating array; a batch of times is an error (vmap instead)."""
    t = jnp.asarray(t)
    if t.ndim != 0:
        raise ValueError(
            f"{name} must be a scalar time for one sample, got shape {t.shape}; "
            "batch with jax.vmap over samples and times."
        )
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return t
