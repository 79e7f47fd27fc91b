"""The path interface shared by every probability path."""

import abc
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .. import _checks
from ..schedules import AbstractSchedule

__all__ = ["AbstractPath", "AbstractScheduledPath", "PathSample"]

Key = PRNGKeyArray | None
"""A path's key: `None` for paths that draw nothing."""
Point = Float[ArrayLike, "*event"]
"""One sample (the event shape)."""
Time = Float[ArrayLike, ""]
"""A scalar time."""


class PathSample(NamedTuple):
    """One draw from a conditional path at time `t`, for one sample.

    Attributes:
        t: the scalar time.
        x0: the source point.
        x1: the target point.
        xt: the point on the path at time `t`.
        ut: the regression target for the velocity, $d x_t / dt$.
        z: the extra Gaussian noise, for paths that draw it (else `None`).
    """

    t: Float[Array, ""]
    x0: Float[Array, "*event"]
    x1: Float[Array, "*event"]
    xt: Float[Array, "*event"]
    ut: Float[Array, "*event"]
    z: Float[Array, "*event"] | None = None


class AbstractPath(eqx.Module):
    """A conditional probability path between a source point and a target point."""

    @abc.abstractmethod
    def sample(self, key: Key, x0: Point, x1: Point, t: Time) -> PathSample:
        """Draw $x_t$ and its target given one pair `(x0, x1)` and a scalar `t`."""

    def squared_error(
        self, xt: Float[Array, "*event"], pred: Float[Array, "*event"], target
    ) -> Float[Array, ""]:
        """The regression error of one sample: the mean of squares over the event.

        A path on a manifold measures it in the metric at `xt` (`GeodesicPath`).
        """
        return jnp.mean((pred - target) ** 2)


class AbstractScheduledPath(AbstractPath):
    """A path timed by a schedule (`AffinePath`, `GeodesicPath`), checked when built."""

    schedule: eqx.AbstractVar[AbstractSchedule]

    def __check_init__(self):
        _checks.instance_of(
            "schedule",
            self.schedule,
            AbstractSchedule,
            "flowlab.schedules.AbstractSchedule",
            "schedules.cond_ot()",
        )


_ONE_SAMPLE = (
    "path.sample takes one sample (x0 and x1 of one event shape, t a scalar); for a "
    "batch use jax.vmap(path.sample)(keys, x0, x1, t)"
)


def check_pair(x0, x1, t):
    """Validate one sample's `(x0, x1, t)`; return them as arrays.

    Every path's `sample` calls it first. What it can tell from the shapes: `x0`
    and `x1` of different shapes (one of them batched, say) and a `t` that is not a
    scalar. A batch `x0`, `x1` of shape `(n, d)` with a scalar `t` is
    indistinguishable from one sample of event shape `(n, d)` (an image `(C, H, W)`
    is one sample too), so it is accepted.
    """
    x0, x1, t = jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(t)
    if x0.shape != x1.shape:
        raise ValueError(
            f"x0 and x1 must have the same event shape, got x0 {x0.shape} and "
            f"x1 {x1.shape}: {_ONE_SAMPLE}."
        )
    if t.ndim != 0:
        raise ValueError(
            f"t must be a scalar for one sample, got t of shape {t.shape} (x0 and "
            f"x1 {x0.shape}): {_ONE_SAMPLE}."
        )
    return x0, x1, t
