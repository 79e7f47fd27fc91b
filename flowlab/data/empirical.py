"""A finite data set held on device and sampled by index."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._base import AbstractSampler, check_n

__all__ = ["Empirical"]


class Empirical(AbstractSampler):
    """Uniform draws (with replacement) from a fixed array of points.

    Passed to a jitted train step as an argument, the points stay a device buffer:
    each step gathers its minibatch on device by random index.
    """

    points: Float[Array, "m *event"]

    def __init__(self, points: ArrayLike):
        points = jnp.asarray(points)
        if points.ndim < 2 or points.shape[0] < 1:
            raise ValueError(
                "points must have shape (m, *event_shape) with m >= 1, "
                f"got {points.shape}."
            )
        self.points = points

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.points.shape[1:])

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n *event"]:
        n = check_n(n)
        idx = jax.random.randint(key, (n,), 0, self.points.shape[0])
        return self.points[idx]
