r"""Riemannian products $M = M_1 \times \dots \times M_k$ of manifolds.

A point of the product is one flat vector: each factor's point flattened and
concatenated in order (a point of $S^2 \times T^1$ has shape `(4,)`; a factor with
matrix points, such as SO(3)'s `(3, 3)`, contributes its 9 entries). Tangent vectors
are laid out the same way. Every method splits its input into the factors (static
offsets, from the factors' shapes), applies each factor's own method, and joins the
results; the metric is the sum of the factors' metrics, so

$$\exp_x(u) = \big(\exp_{x_i}(u_i)\big)_i, \qquad
\langle u, v\rangle_x = \sum_i \langle u_i, v_i\rangle_{x_i}, \qquad
d(x, y) = \Big(\sum_i d_i(x_i, y_i)^2\Big)^{1/2}.$$

The distance uses each factor's own (stable) `dist`, under a square root with a
zero gradient at `x = y`.

A product of compact manifolds is compact. That is a fact about the type (code such
as `isinstance(m, AbstractCompactManifold)` decides on it), so there are two final
classes behind one base: `CompactProduct`, which also draws uniform points and knows
its volume, and `ProductManifold` for the rest. `Product(m1, m2, ...)` is the
constructor to call: it returns whichever of the two the factors allow.
"""

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .. import _checks, registry
from ._base import (
    AbstractCompactManifold,
    AbstractManifold,
    Point,
    Scalar,
    Tangent,
    safe_sqrt,
)

__all__ = ["AbstractProduct", "CompactProduct", "Product", "ProductManifold"]

_EXAMPLE = "manifolds.Product(manifolds.Sphere(2), manifolds.FlatTorus(1))"


def _as_factors(factors: Any) -> tuple[AbstractManifold, ...]:
    """`factors` as a tuple of at least two manifolds, or an error naming them."""
    if isinstance(factors, AbstractManifold | str) or not isinstance(factors, Sequence):
        raise TypeError(
            "factors must be a sequence of at least two flowlab manifolds (e.g. "
            f"{_EXAMPLE}), got {type(factors).__name__}."
        )
    factors = tuple(factors)
    for i, factor in enumerate(factors):
        if isinstance(factor, Sequence) and not isinstance(factor, str):
            raise TypeError(
                f"factors[{i}] is a {type(factor).__name__}; pass each manifold as "
                "its own argument, Product(*factors), not Product(factors)."
            )
        if isinstance(factor, str):
            raise TypeError(
                f"factors[{i}] must be a manifold object, got the name {factor!r}: "
                "build it first (e.g. manifolds.Sphere(2)); names with dimensions "
                "are not accepted for product factors yet."
            )
        _checks.instance_of(
            f"factors[{i}]",
            factor,
            AbstractManifold,
            "flowlab.manifolds.AbstractManifold",
            "manifolds.Sphere(2)",
        )
    if len(factors) < 2:
        raise ValueError(
            f"factors must hold at least two manifolds (e.g. {_EXAMPLE}), got "
            f"{len(factors)}; a single manifold needs no product."
        )
    return factors


def _as_compact_factors(factors: Any) -> tuple[AbstractCompactManifold, ...]:
    """`_as_factors`, and each factor compact (else an error pointing to `Product`)."""
    factors = _as_factors(factors)
    for i, factor in enumerate(factors):
        if not isinstance(factor, AbstractCompactManifold):
            raise TypeError(
                f"factors[{i}] must be compact (an AbstractCompactManifold) in a "
                f"CompactProduct, got {type(factor).__name__}; Product(...) builds "
                "a ProductManifold when a factor is not compact."
            )
    return factors


class AbstractProduct(AbstractManifold):
    r"""The Riemannian product of `factors`, points as one flat vector.

    Attributes:
        factors: the manifolds $M_1, \dots, M_k$ ($k \ge 2$), in the order their
            coordinates are concatenated.
        dim: $\sum_i \dim M_i$.
        shape: `(n,)` with $n$ the total number of the factors' coordinates.

    Besides the manifold interface, `split(x)` cuts a point (or a tangent vector)
    into the factors' arrays, each of its factor's shape, and `join(*parts)` is
    its inverse.
    """

    factors: eqx.AbstractVar[tuple[AbstractManifold, ...]]

    @property
    def dim(self) -> int:
        return sum(factor.dim for factor in self.factors)

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(math.prod(factor.shape) for factor in self.factors),)

    @property
    def injectivity_radius(self) -> float:
        """The smallest of the factors': a shorter vector is short in each factor."""
        return min(factor.injectivity_radius for factor in self.factors)

    @property
    def _offsets(self) -> tuple[int, ...]:
        """Where each factor's coordinates start, and the end: `k + 1` ints."""
        offsets = [0]
        for factor in self.factors:
            offsets.append(offsets[-1] + math.prod(factor.shape))
        return tuple(offsets)

    def split(self, x: Float[ArrayLike, " n"]) -> tuple[Float[Array, "..."], ...]:
        """The factors' parts of `x`, each of its factor's `shape`.

        Args:
            x: a point or a tangent vector of the product, of shape `self.shape`.

        Returns:
            One array per factor, in order (reshaped: `(3, 3)` for SO(3)).
        """
        return self._split(x, "x")

    def _split(self, a: Float[ArrayLike, " n"], name: str) -> tuple[Array, ...]:
        """`split`, with the argument's name for the error on a wrong shape."""
        a = jnp.asarray(a)
        if a.shape != self.shape:
            raise ValueError(
                f"{name} must be one point (or tangent vector) of the product, of "
                f"shape {self.shape}, got {a.shape}; batch with jax.vmap."
            )
        o = self._offsets
        return tuple(
            a[o[i] : o[i + 1]].reshape(factor.shape)
            for i, factor in enumerate(self.factors)
        )

    def join(self, *parts: Float[ArrayLike, "..."]) -> Float[Array, " n"]:
        """One flat array of the product from one array per factor (`split`'s inverse).

        Args:
            *parts: one array per factor, of that factor's `shape`.

        Returns:
            The parts flattened and concatenated, of shape `self.shape`.
        """
        if len(parts) != len(self.factors):
            raise ValueError(
                f"join takes one array per factor ({len(self.factors)}), got "
                f"{len(parts)}."
            )
        flat = []
        for i, (factor, part) in enumerate(zip(self.factors, parts, strict=True)):
            part = jnp.asarray(part)
            if part.shape != factor.shape:
                raise ValueError(
                    f"parts[{i}] must be a point (or tangent vector) of "
                    f"{type(factor).__name__}, of shape {factor.shape}, got "
                    f"{part.shape}."
                )
            flat.append(part.reshape(-1))
        return jnp.concatenate(flat)

    def _zip(self, **arrays: ArrayLike) -> zip:
        """Rows `(factor, part of each array, ...)`, the arrays split by name."""
        parts = (self._split(a, name) for name, a in arrays.items())
        return zip(self.factors, *parts, strict=True)

    def expmap(self, x: Point, u: Tangent) -> Point:
        return self.join(*(f.expmap(xi, ui) for f, xi, ui in self._zip(x=x, u=u)))

    def logmap(self, x: Point, y: Point) -> Tangent:
        return self.join(*(f.logmap(xi, yi) for f, xi, yi in self._zip(x=x, y=y)))

    def projx(self, x) -> Point:
        return self.join(*(f.projx(xi) for f, xi in self._zip(x=x)))

    def proju(self, x: Point, u) -> Tangent:
        return self.join(*(f.proju(xi, ui) for f, xi, ui in self._zip(x=x, u=u)))

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        rows = self._zip(x=x, u=u, v=v)
        return sum(f.inner(xi, ui, vi) for f, xi, ui, vi in rows)

    def dist(self, x: Point, y: Point) -> Scalar:
        r"""$\big(\sum_i d_i(x_i, y_i)^2\big)^{1/2}$, with each factor's own `dist`."""
        rows = self._zip(x=x, y=y)
        return safe_sqrt(sum(f.dist(xi, yi) ** 2 for f, xi, yi in rows))

    def features(self, x: Point) -> Float[Array, " k"]:
        """Each factor's features of its part of `x`, flattened and concatenated."""
        parts = (f.features(xi).reshape(-1) for f, xi in self._zip(x=x))
        return jnp.concatenate(list(parts))

    def origin(self, dtype=float) -> Point:
        """The factors' origins, joined."""
        return self.join(*(f.origin(dtype) for f in self.factors))

    def is_point(self, x: Float[ArrayLike, " n"], atol: float = 1e-5) -> Bool:
        """Whether every factor's part of `x` is a point of that factor."""
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.asarray(False)
        rows = self._zip(x=x)
        return jnp.all(jnp.stack([f.is_point(xi, atol) for f, xi in rows]))

    def is_tangent(
        self, x: Point, u: Float[ArrayLike, " n"], atol: float = 1e-5
    ) -> Bool:
        """Whether every factor's part of `u` is tangent to that factor."""
        u = jnp.asarray(u)
        if u.shape != self.shape:
            return jnp.asarray(False)
        rows = self._zip(x=x, u=u)
        return jnp.all(jnp.stack([f.is_tangent(xi, ui, atol) for f, xi, ui in rows]))


class ProductManifold(AbstractProduct):
    """A product not known to be compact (`Product` builds it when a factor is not).

    Attributes:
        factors: a tuple of at least two `AbstractManifold`s.

    Example:
        >>> from flowlab import manifolds
        >>> m = manifolds.Product(manifolds.Euclidean(2), manifolds.Sphere(1))
        >>> type(m).__name__, m.dim, m.shape
        ('ProductManifold', 3, (4,))
        >>> m.origin().tolist()  # the origin of R^2, then the north pole of S^1
        [0.0, 0.0, 0.0, 1.0]
    """

    factors: tuple[AbstractManifold, ...] = eqx.field(converter=_as_factors)


class CompactProduct(AbstractProduct, AbstractCompactManifold):
    r"""A product of compact manifolds: compact, with the product's uniform law.

    Attributes:
        factors: a tuple of at least two `AbstractCompactManifold`s.

    The volume is the product of the factors' volumes, and a uniform point is one
    uniform point of each factor, drawn with independent keys.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> m = manifolds.Product(manifolds.Sphere(2), manifolds.FlatTorus(1))
        >>> type(m).__name__, m.dim, m.shape
        ('CompactProduct', 3, (4,))
        >>> x = m.join(jnp.array([0.0, 0.0, 1.0]), jnp.array([0.5]))
        >>> y = m.join(jnp.array([1.0, 0.0, 0.0]), jnp.array([1.5]))
        >>> round(m.dist(x, y).item(), 4)  # sqrt((pi / 2)^2 + 1^2)
        1.8621
        >>> round(m.log_volume().item(), 4)  # log(4 pi) + log(2 pi)
        4.3689
    """

    factors: tuple[AbstractCompactManifold, ...] = eqx.field(
        converter=_as_compact_factors
    )

    def random_uniform(self, key: PRNGKeyArray, dtype=float) -> Point:
        key = _checks.key(key)
        keys = jax.random.split(key, len(self.factors))
        rows = zip(self.factors, keys, strict=True)
        return self.join(*(f.random_uniform(k, dtype) for f, k in rows))

    def log_volume(self) -> Scalar:
        r"""$\sum_i \log \operatorname{vol}(M_i)$."""
        return sum(f.log_volume() for f in self.factors)


def Product(*factors: AbstractManifold) -> AbstractProduct:
    r"""The Riemannian product $M_1 \times \dots \times M_k$ of two or more manifolds.

    A constructor, written as a function because the class depends on the factors:
    a `CompactProduct` (an `AbstractCompactManifold`) when every factor is compact,
    a `ProductManifold` otherwise; both are `AbstractProduct`s.

    Args:
        *factors: at least two `flowlab.manifolds.AbstractManifold`s, in the order
            their coordinates are concatenated (products nest).

    Returns:
        The product manifold; its points have shape `(n,)`, the factors' points
        flattened and concatenated.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> m = manifolds.Product(manifolds.Sphere(2), manifolds.FlatTorus(2))
        >>> m.shape, m.dim, isinstance(m, manifolds.AbstractCompactManifold)
        ((5,), 4, True)
        >>> x = m.join(jnp.array([0.0, 0.0, 1.0]), jnp.array([0.1, 6.2]))
        >>> tuple(p.size for p in m.split(x))
        (3, 2)
    """
    factors = _as_factors(factors)
    if all(isinstance(f, AbstractCompactManifold) for f in factors):
        return CompactProduct(factors)
    return ProductManifold(factors)


@registry.register("manifold", "product")
def _product_from_config(factors: Sequence[AbstractManifold]) -> AbstractProduct:
    """`Product(*factors)`, as `registry.build("manifold", "product", factors=...)`.

    The factors are manifold objects; naming them (with their dimensions) in a
    config file is not supported yet.
    """
    return Product(*_as_factors(factors))
