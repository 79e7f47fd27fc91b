"""Type aliases shared across flowlab."""

from collections.abc import Callable
from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

__all__ = ["Array", "ArrayLike", "PRNGKeyArray", "PyTree", "Scalar", "VelocityFn", "X"]

X: TypeAlias = Float[Array, "..."]
"""One sample (event shape) or a batch of samples."""

Scalar: TypeAlias = Float[ArrayLike, ""]
"""A scalar time or coefficient."""

VelocityFn: TypeAlias = Callable[[Scalar, X, Any], X]
"""A per-sample vector field with diffrax's signature ``v(t, x, args)``."""
