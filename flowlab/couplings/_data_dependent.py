r"""Data-dependent couplings: the base sample is built from the data it is paired with.

Albergo et al. (2024), "Stochastic interpolants with data-dependent couplings". For
in-painting with a mask $m$ (1 where a coordinate is observed, 0 where it is missing)
and noise $\zeta$,

$$x_0 = m \odot x_1 + (1 - m) \odot \sigma\zeta,$$

and for a degradation $D$ (e.g. down-sampling then up-sampling),
$x_0 = D(x_1) + \sigma\zeta$. The model sees the condition $c$ (the mask, or the
degraded image): it learns $v(t, x, c)$ with the usual square loss, and transporting
$x_0$ built from an observation samples $p(x_1 \mid \text{observation})$.

The coupling receives the source draw as $\zeta$: in the train step
`x0, (x1, cond) = coupling(key, x0, (x1, cond))` returns the new `x0` and attaches
the condition to the rows of `x1`: `cond` becomes $c$, or `(c, cond)` when the batch
already had one. `start` builds `x0` and the condition the same way from an
observation, for sampling; `flowlab.sampling.conditioned_field` carries the per-row
condition through `flowlab.sample_ode`.

These constructions are Euclidean (masking, adding noise, `pool_upsample`'s
averaging): on a curved manifold they would build an `x0` off it, so they take no
cost and no `manifold=`. For points on a manifold use a cost coupling with
`manifold=` (`exact_ot(manifold=...)`), which only permutes rows.
"""

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from ._base import AbstractCoupling, Coupled
from ._masks import MaskFn

__all__ = [
    "AbstractDataDependent",
    "Degradation",
    "Inpainting",
    "degradation",
    "inpainting",
]


_Event = Float[Array, "*event"]


def _split_x1(x1: PyTree) -> tuple[Array, Any]:
    """`(points, cond)` from `x1` given as points or as a pair `(points, cond)`."""
    if isinstance(x1, tuple | list):
        if len(x1) != 2:
            raise ValueError(
                "a data-dependent coupling takes x1 as points (n, ...) or a pair "
                f"(points, cond), got a sequence of length {len(x1)}."
            )
        return jnp.asarray(x1[0]), x1[1]
    return jnp.asarray(x1), None


def _joined(c: Array, cond: Any) -> Any:
    return c if cond is None else (c, cond)


class AbstractDataDependent(AbstractCoupling):
    r"""A coupling whose `x0` is a function of the noise $\zeta$ and the data $x_1$.

    Subclasses define, on one sample, `draw` (the condition $c$ of a training row)
    and `base` (the base sample $x_0$ from $\zeta$, $x_1$ and $c$). The batched
    `__call__` (training) and `start` (sampling) both go through `base`, so the
    source distribution at sampling time is the one the model was trained on.

    Attributes:
        noise_scale: $\sigma \ge 0$, the scale of the noise $\zeta$ (the source
            draw) in $x_0$.
    """

    noise_scale: eqx.AbstractVar[float]
    repairs_rows: ClassVar[bool] = False
    condition: eqx.AbstractClassVar[str]  # what the condition is, for messages

    @abc.abstractmethod
    def draw(self, key: PRNGKeyArray, x1: _Event) -> Array:
        """The condition $c$ of one training row (e.g. a random mask)."""

    @abc.abstractmethod
    def base(self, zeta: _Event, x1: _Event | None, c: Array) -> _Event:
        """The base sample $x_0$ of one row from the noise, the data and $c$."""

    @abc.abstractmethod
    def cast_condition(self, c: Array, dtype: Any) -> Array:
        """A batch of conditions `(n, *event)` as the model receives it."""

    def check_condition(
        self, c: Array, event_shape: tuple[int, ...], dtype: Any
    ) -> Array:
        """Validate a batch of conditions `(n, ...)` and cast it for the model."""
        if c.shape[1:] != event_shape:
            raise ValueError(
                f"{self.condition} must have the event shape {event_shape} per row, "
                f"got {c.shape[1:]}."
            )
        return self.cast_condition(c, dtype)

    def couple(self, key: PRNGKeyArray, x0: PyTree, x1: PyTree) -> Coupled:
        r"""Return `(x0, (x1, cond))`: `x0` built from `x1`, the condition attached.

        Args:
            key: draws one condition per row.
            x0: the noise $\zeta$, `(n, *event)` like the points of `x1`.
            x1: points `(n, *event)` or `(points, cond)`.

        Returns:
            The base samples and `(points, c)`, or `(points, (c, cond))` when `x1`
            carried a condition `cond`.
        """
        points, cond = _split_x1(x1)
        _check_zeta(x0, points, "x0")
        keys = jax.random.split(key, points.shape[0])
        c = jax.vmap(self.draw)(keys, points)
        c = self.check_condition(c, points.shape[1:], points.dtype)
        x0 = jax.vmap(self.base)(jnp.asarray(x0), points, c)
        return Coupled(x0, (points, _joined(c, cond)))

    def start(
        self,
        zeta: Float[ArrayLike, "n *event"],
        x1: Float[ArrayLike, "n *event"] | None,
        c: ArrayLike,
        cond: Any = None,
    ) -> tuple[Float[Array, "n *event"], Any]:
        r"""The base samples and the model's condition for given observations.

        Sampling: draw `zeta` from the training source, then transport the
        returned `x0` with the model conditioned on the returned condition (see
        `conditioned_field`).

        Args:
            zeta: noise `(n, *event)`, drawn from the training source.
            x1: the observed data `(n, *event)`; entries the condition marks as
                unknown are ignored (they may be NaN). `None` where `base` does not
                read it (a degradation's condition is the observation).
            c: the condition, `(n, *event)` or `(*event,)` for every row.
            cond: an extra condition the model was trained with, or `None`.

        Returns:
            `(x0, c)`, or `(x0, (c, cond))` when `cond` is given.
        """
        zeta = jnp.asarray(zeta)
        if zeta.ndim < 1:
            raise ValueError("zeta must be a batch (n, *event_shape).")
        n, event_shape = zeta.shape[0], zeta.shape[1:]
        if x1 is not None:
            x1 = jnp.asarray(x1)
            if x1.shape != zeta.shape:
                raise ValueError(
                    f"x1 must have the shape of zeta {zeta.shape}, got {x1.shape}."
                )
        c = jnp.asarray(c)
        if c.shape == event_shape:
            c = jnp.broadcast_to(c, (n, *event_shape))
        if c.shape[:1] != (n,):
            raise ValueError(
                f"c must have shape {(n, *event_shape)} or {event_shape}, "
                f"got {c.shape}."
            )
        dtype = (zeta if x1 is None else x1).dtype
        c = self.check_condition(c, event_shape, dtype)
        in_axes = (0, None if x1 is None else 0, 0)
        x0 = jax.vmap(self.base, in_axes=in_axes)(zeta, x1, c)
        return x0, _joined(c, cond)


def _check_zeta(zeta: Any, points: Array, name: str) -> None:
    pytree = zeta is None or isinstance(zeta, tuple | list | dict)
    if pytree or jnp.shape(zeta) != points.shape:
        shape = type(zeta).__name__ if pytree else jnp.shape(zeta)
        raise ValueError(
            f"{name} (the noise zeta of a data-dependent coupling) must be an array "
            f"shaped like the points of x1, {points.shape}, got {shape}; draw it "
            "from a source with the data's event shape."
        )


def _check_fields(fn: Any, name: str, form: str, noise_scale: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a callable {form}, got {fn!r}.")
    if isinstance(noise_scale, int | float) and not noise_scale >= 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale!r}.")


def _same_shape(y: Array, x1: Array, what: str) -> Array:
    if y.shape != x1.shape:
        raise ValueError(f"{what} of the sample's shape {x1.shape}, got {y.shape}.")
    return y


class Inpainting(AbstractDataDependent):
    r"""$x_0 = m \odot x_1 + (1 - m) \odot \sigma\zeta$; the condition is $m$.

    The mask $m$ of a row comes from `mask_fn(key, event_shape)` (1 or `True`
    where observed); the model receives it as a float array of the data's dtype.
    Observed coordinates of `x0` equal those of `x1` exactly. With a path whose
    coefficients sum to one ($\alpha_t + \sigma_t = 1$, e.g. Cond-OT) they stay
    fixed along $x_t$ and their target velocity is zero.

    Attributes:
        mask_fn: draws the mask of one row.
        noise_scale: $\sigma \ge 0$.
    """

    mask_fn: MaskFn = eqx.field(static=True)
    noise_scale: float = 1.0
    condition: ClassVar[str] = "the mask"

    def __check_init__(self):
        form = "mask_fn(key, event_shape) -> mask"
        _check_fields(self.mask_fn, "mask_fn", form, self.noise_scale)

    def draw(self, key: PRNGKeyArray, x1: _Event) -> Array:
        mask = jnp.asarray(self.mask_fn(key, x1.shape))
        return _same_shape(mask, x1, "mask_fn must return a mask")

    def cast_condition(self, c: Array, dtype: Any) -> Array:
        if not jnp.issubdtype(c.dtype, jnp.bool_):
            c = eqx.error_if(
                c, (c != 0) & (c != 1), "the mask must hold only 0 and 1 (or bools)."
            )
        return c.astype(dtype)

    def base(self, zeta: _Event, x1: _Event | None, c: Array) -> _Event:
        if x1 is None:
            raise ValueError("in-painting needs the observed x1 (not None).")
        noise = (self.noise_scale * zeta).astype(x1.dtype)
        return jnp.where(c > 0, x1, noise)


class Degradation(AbstractDataDependent):
    r"""$x_0 = D(x_1) + \sigma\zeta$; the condition is the degraded $D(x_1)$.

    `degrade_fn` maps one sample to an array of the same shape (e.g.
    `pool_upsample(2)`: average pooling, then nearest up-sampling back). At sampling
    time the observation is the condition: `start(zeta, None, y)`.

    Attributes:
        degrade_fn: the per-sample degradation $D$.
        noise_scale: $\sigma \ge 0$.
    """

    degrade_fn: Callable[[Array], Array] = eqx.field(static=True)
    noise_scale: float = 1.0
    condition: ClassVar[str] = "the degraded observation"

    def __check_init__(self):
        _check_fields(self.degrade_fn, "degrade_fn", "x -> D(x)", self.noise_scale)

    def draw(self, key: PRNGKeyArray, x1: _Event) -> Array:
        del key
        what = "degrade_fn must return an array (up-sample what it down-samples)"
        return _same_shape(jnp.asarray(self.degrade_fn(x1)), x1, what)

    def cast_condition(self, c: Array, dtype: Any) -> Array:
        return c.astype(dtype)

    def base(self, zeta: _Event, x1: _Event | None, c: Array) -> _Event:
        del x1
        return c + (self.noise_scale * zeta).astype(c.dtype)


def inpainting(mask_fn: MaskFn, *, noise_scale: float = 1.0) -> Inpainting:
    r"""The in-painting coupling $x_0 = m \odot x_1 + (1 - m) \odot \sigma\zeta$.

    Args:
        mask_fn: `mask_fn(key, event_shape) -> mask` with 1 (`True`) where a
            coordinate is observed, e.g. `coordinate_mask(1)`, `half_mask()`,
            `box_mask(2, 4)` or a `mask_mixture` of them.
        noise_scale: $\sigma \ge 0$, the scale of the source draw $\zeta$.

    Example:
        >>> import jax, jax.numpy as jnp, flowlab as fl
        >>> coupling = fl.couplings.inpainting(fl.couplings.coordinate_mask(1))
        >>> x1 = jnp.ones((4, 2))
        >>> x0, (x1, mask) = coupling(jax.random.key(0), jnp.zeros((4, 2)), x1)
        >>> bool(jnp.all(x0 == mask)), mask.sum(axis=1).tolist()
        (True, [1.0, 1.0, 1.0, 1.0])
    """
    return Inpainting(mask_fn, noise_scale)


def degradation(
    degrade_fn: Callable[[Array], Array], *, noise_scale: float = 1.0
) -> Degradation:
    r"""The coupling $x_0 = D(x_1) + \sigma\zeta$, e.g. for super-resolution.

    Args:
        degrade_fn: a per-sample map to an array of the same shape, e.g.
            `pool_upsample(2, shape=(8, 8))`.
        noise_scale: $\sigma \ge 0$, the scale of the source draw $\zeta$.
    """
    return Degradation(degrade_fn, noise_scale)
