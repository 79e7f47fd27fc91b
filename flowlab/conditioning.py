r"""Conditions of a conditional model: labels or vectors, a null condition, dropout.

A conditional model is the same contract as any other, `model_fn(params, t, x,
cond)`, with `cond` one row of a batch of conditions. A condition object says what
such a batch is and what the *null* condition $\varnothing$ ("no condition") is, so
that one network learns both $v(t, x \mid c)$ and $v(t, x \mid \varnothing)$:

- training replaces each row's condition by the null one with probability $p$
  (`drop`; `flowlab.training.make_train_step(..., condition=...,
  cond_dropout=p)`), and
- classifier-free guidance (`flowlab.sampling.guided_field`) mixes the two fields,
  $v = v_\varnothing + w\,(v_c - v_\varnothing)$.

The model sees `condition.encode(cond)`, the *encoded* condition:

| condition | a batch `cond` | `encode(cond)` | `null(n)` |
| :--- | :--- | :--- | :--- |
| `Labels(K)` | integers `(n,)` in $0 \ldots K-1$ | the labels | the extra label $K$ |
| `Vectors(shape)` | floats `(n, *shape)` | `[c.ravel(), 1]`, `(n, m+1)` | zeros |

so a network that embeds labels needs `Labels(K).embedding_size` $= K + 1$ of them
(`flowlab.models.MLP(num_classes=Labels(K).embedding_size)`), and a vector
condition carries an indicator (its last entry) that tells "the zero vector" from
"no condition" ($m = \prod$ `shape`).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from flowlab.conditioning import Labels
    >>> labels = Labels(3)
    >>> labels.null(2).tolist(), labels.embedding_size
    ([3, 3], 4)
    >>> dropped = labels.drop(jax.random.key(0), jnp.array([0, 1, 2, 0]), 1.0)
    >>> dropped.tolist()
    [3, 3, 3, 3]
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from . import _checks

__all__ = ["AbstractCondition", "Labels", "Vectors", "check_dropout"]


def check_dropout(p) -> float:
    """`p` as a float in $[0, 1)$, else a `ValueError` naming `cond_dropout`."""
    if not (_checks.is_number(p) and 0.0 <= p < 1.0):
        raise ValueError(
            f"cond_dropout must be a float in [0, 1) (the share of rows trained "
            f"with the null condition, e.g. 0.1), got {p!r}."
        )
    return float(p)


def _concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


class AbstractCondition(eqx.Module):
    """What a batch of conditions is, its encoding for the model, its null.

    Subclasses define `check`, `encode`, `null`, `to_state` and `from_state`;
    `drop` and `is_null` follow from them.
    """

    @abc.abstractmethod
    def check(self, name: str, cond: ArrayLike, n: int | None = None) -> Array:
        """`cond` as an array of the right shape and dtype, else a clear error.

        Args:
            name: the argument's name, for the message (e.g. `"cond"`).
            cond: a batch of (not encoded) conditions.
            n: the batch size it must have; `None` for any.

        Returns:
            `cond` as a JAX array (integers cast to the right dtype).

        Raises:
            ValueError: the shape is wrong, or (for concrete arrays) a value is out
                of range; the message says the shape expected and the fix.
            TypeError: the dtype is wrong.
        """

    @abc.abstractmethod
    def encode(self, cond: Array) -> Array:
        """The model's input for a checked batch of conditions (see module)."""

    @abc.abstractmethod
    def null(self, n: int) -> Array:
        """A batch of `n` encoded null conditions."""

    @property
    @abc.abstractmethod
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one row's (not encoded) condition."""

    @property
    @abc.abstractmethod
    def model_settings(self) -> dict[str, int]:
        """Keywords a network factory needs for it (e.g. `MLP(num_classes=K + 1)`)."""

    @abc.abstractmethod
    def to_state(self, encoded: Array, dtype) -> Float[Array, "n ..."]:
        """Encoded conditions as floats of `dtype`, to ride in an ODE state."""

    @abc.abstractmethod
    def from_state(self, state: Float[Array, "..."]) -> Array:
        """The encoded conditions back from `to_state` (any batch shape)."""

    def is_null(self, encoded: Array) -> Bool[Array, " n"]:
        """Which rows of a batch of encoded conditions are the null condition."""
        null = self.null(encoded.shape[0]).astype(encoded.dtype)
        equal = (encoded == null).reshape(encoded.shape[0], -1)
        return jnp.all(equal, axis=1)

    def drop(self, key: PRNGKeyArray, encoded: Array, p: float) -> Array:
        r"""Each row replaced by the null condition with probability `p`.

        The rows are dropped independently (a Bernoulli($p$) per row from `key`),
        so the same key gives the same rows.

        Args:
            key: a PRNG key, used once.
            encoded: a batch of encoded conditions (`encode(cond)`).
            p: the dropout probability in $[0, 1]$.

        Returns:
            The batch with the dropped rows set to `null`.
        """
        n = encoded.shape[0]
        dropped = jax.random.bernoulli(key, p, (n,))
        mask = dropped.reshape((n,) + (1,) * (encoded.ndim - 1))
        return jnp.where(mask, self.null(n).astype(encoded.dtype), encoded)


class Labels(AbstractCondition):
    r"""Integer class labels $0 \ldots K - 1$; the null condition is the label $K$.

    Attributes:
        num_classes: $K$, the number of real classes.
    """

    num_classes: int = eqx.field(static=True)

    def __init__(self, num_classes: int):
        self.num_classes = _checks.positive_int(
            "num_classes", num_classes, "a positive int (the number of classes)"
        )

    @property
    def embedding_size(self) -> int:
        """Labels the network embeds: the $K$ classes and the null one, $K + 1$."""
        return self.num_classes + 1

    @property
    def null_label(self) -> int:
        """The label of the null condition, $K$."""
        return self.num_classes

    def check(
        self, name: str, cond: ArrayLike, n: int | None = None
    ) -> Int[Array, " n"]:
        cond = jnp.asarray(cond)
        if not (
            jnp.issubdtype(cond.dtype, jnp.integer)
            or jnp.issubdtype(cond.dtype, jnp.bool_)
        ):
            raise TypeError(
                f"{name} must hold integer class labels 0..{self.num_classes - 1} "
                f"(Labels({self.num_classes})), got dtype {cond.dtype}; pass e.g. "
                "jnp.array([0, 2, 1])."
            )
        want = "(n,)" if n is None else f"({n},)"
        if cond.ndim != 1 or (n is not None and cond.shape[0] != n):
            raise ValueError(
                f"{name} must be one label per row, of shape {want}, got shape "
                f"{cond.shape}; for one label for all rows use jnp.full(n, label)."
            )
        if _concrete(cond) and cond.size:
            lo, hi = int(cond.min()), int(cond.max())
            if lo < 0 or hi >= self.num_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{name} holds label {bad}, outside 0..{self.num_classes - 1} of "
                    f"Labels({self.num_classes}) (the null condition is "
                    "condition.null(n), not a label to pass)."
                )
        return cond.astype(jnp.int32)

    @property
    def row_shape(self) -> tuple[int, ...]:
        """`()`: one label per row."""
        return ()

    @property
    def model_settings(self) -> dict[str, int]:
        """`{"num_classes": embedding_size}`, as `flowlab.models.MLP` takes it."""
        return {"num_classes": self.embedding_size}

    def encode(self, cond: Int[Array, " n"]) -> Int[Array, " n"]:
        return cond

    def null(self, n: int) -> Int[Array, " n"]:
        return jnp.full((n,), self.num_classes, jnp.int32)

    def to_state(self, encoded: Int[Array, " n"], dtype) -> Float[Array, " n"]:
        return encoded.astype(dtype)

    def from_state(self, state: Float[Array, "..."]) -> Int[Array, "..."]:
        return jnp.round(state).astype(jnp.int32)


class Vectors(AbstractCondition):
    """A float vector (or array) per row; null is zeros with a zero indicator.

    `encode(c)` flattens each row and appends an indicator 1, so the model sees
    `(n, m + 1)` with $m$ = `math.prod(shape)`; the null condition is all zeros,
    indicator included: a condition that happens to be the zero vector
    (indicator 1) is not "no condition" (indicator 0).

    Attributes:
        shape: the shape of one row's condition.
    """

    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape: int | tuple[int, ...]):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not shape or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape
        ):
            raise ValueError(
                f"shape must be a positive int or a tuple of them (one row's "
                f"condition), got {shape!r}."
            )
        self.shape = shape

    @property
    def size(self) -> int:
        """$m$, the entries of one row's condition."""
        return math.prod(self.shape)

    def check(
        self, name: str, cond: ArrayLike, n: int | None = None
    ) -> Float[Array, "n ..."]:
        cond = jnp.asarray(cond)
        if not (
            jnp.issubdtype(cond.dtype, jnp.floating)
            or jnp.issubdtype(cond.dtype, jnp.integer)
        ):
            raise TypeError(
                f"{name} must hold float vectors (Vectors({self.shape})), got dtype "
                f"{cond.dtype}."
            )
        want = ("n" if n is None else str(n),) + tuple(map(str, self.shape))
        if cond.shape[1:] != self.shape or (n is not None and cond.shape[0] != n):
            raise ValueError(
                f"{name} must have shape ({', '.join(want)}) (one condition of shape "
                f"{self.shape} per row), got shape {cond.shape}."
            )
        if not jnp.issubdtype(cond.dtype, jnp.floating):
            cond = cond.astype(jnp.result_type(float))
        return cond

    @property
    def row_shape(self) -> tuple[int, ...]:
        """`shape`."""
        return self.shape

    @property
    def model_settings(self) -> dict[str, int]:
        """None: `flowlab.models.MLP` appends a float condition to its input."""
        return {}

    def encode(self, cond: Float[Array, "n ..."]) -> Float[Array, "n m1"]:
        flat = cond.reshape(cond.shape[0], self.size)
        return jnp.concatenate([flat, jnp.ones((cond.shape[0], 1), flat.dtype)], 1)

    def null(self, n: int) -> Float[Array, "n m1"]:
        return jnp.zeros((n, self.size + 1), jnp.result_type(float))

    def to_state(self, encoded: Float[Array, "n m1"], dtype) -> Float[Array, "n m1"]:
        return encoded.astype(dtype)

    def from_state(self, state: Float[Array, "..."]) -> Float[Array, "..."]:
        return state
