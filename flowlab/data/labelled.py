r"""Labelled samplers: points and their class labels, for conditional models.

A labelled sampler draws `(x, labels)` with `sample_labelled(key, n)`; its
`sample_batch` (what the train step draws) is that pair, its `sample` the points
alone, and its `condition` is `flowlab.conditioning.Labels(num_classes)`, so a run
on it is class-conditional.

- `LabelledBlobs(num_classes, radius, std)`: $K$ isotropic Gaussian blobs
  $N(\mu_k, s^2 I)$ with centres $\mu_k = r(\cos 2\pi k/K, \sin 2\pi k/K)$ and
  equally likely labels $k$ (registry name `"blobs"`).
- `LabelledEmpirical(points, labels)`: a finite labelled set (e.g.
  `load_digits()`), rows drawn uniformly with their labels.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .. import registry
from ..conditioning import Labels
from ._base import AbstractSampler, check_n

__all__ = ["AbstractLabelledSampler", "LabelledBlobs", "LabelledEmpirical"]


class AbstractLabelledSampler(AbstractSampler):
    r"""A sampler of points with integer labels $0 \ldots K - 1$.

    Subclasses define `num_classes`, `event_shape` and `sample_labelled`.
    """

    num_classes: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sample_labelled(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n *event"], Int[Array, " n"]]:
        """Draw `n` points and their labels."""

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n *event"]:
        return self.sample_labelled(key, n)[0]

    def sample_batch(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n *event"], Int[Array, " n"]]:
        return self.sample_labelled(key, n)

    @property
    def condition(self) -> Labels:
        """`Labels(num_classes)`."""
        return Labels(self.num_classes)


class LabelledBlobs(AbstractLabelledSampler):
    r"""$K$ Gaussian blobs on a circle of radius $r$; a point's label is its blob.

    Attributes:
        num_classes: $K$.
        radius: $r$, the distance of each centre from the origin.
        std: $s$, the per-axis standard deviation of each blob.
    """

    num_classes: int = eqx.field(static=True)
    radius: float = eqx.field(static=True)
    std: float = eqx.field(static=True)

    def __init__(self, num_classes: int = 4, radius: float = 4.0, std: float = 0.4):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"num_classes must be an int, got {num_classes!r}.")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        if not radius >= 0 or not std > 0:
            raise ValueError(
                f"radius must be >= 0 and std > 0, got radius={radius}, std={std}."
            )
        self.num_classes, self.radius, self.std = num_classes, float(radius), float(std)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (2,)

    @property
    def centres(self) -> Float[Array, "k 2"]:
        r"""The blob centres $\mu_k$, `(num_classes, 2)`."""
        angles = 2 * math.pi * jnp.arange(self.num_classes) / self.num_classes
        return self.radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)

    def nearest(self, x: Float[Array, "n 2"]) -> Int[Array, " n"]:
        """The label of the centre nearest each point (the blob it lands in)."""
        d2 = jnp.sum((x[:, None, :] - self.centres[None].astype(x.dtype)) ** 2, -1)
        return jnp.argmin(d2, axis=1)

    def sample_labelled(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n 2"], Int[Array, " n"]]:
        n = check_n(n)
        k_label, k_noise = jax.random.split(key)
        labels = jax.random.randint(k_label, (n,), 0, self.num_classes)
        z = jax.random.normal(k_noise, (n, 2))
        return self.centres[labels] + self.std * z, labels.astype(jnp.int32)


class LabelledEmpirical(AbstractLabelledSampler):
    """Uniform draws (with replacement) of rows of a labelled data set.

    Attributes:
        points: the data, `(m, *event_shape)`.
        labels: the label of each row, integers `(m,)` in `0..num_classes - 1`.
        num_classes: $K$ (default: the largest label plus one).
    """

    points: Float[Array, "m *event"]
    labels: Int[Array, " m"]
    num_classes: int = eqx.field(static=True)

    def __init__(
        self, points: ArrayLike, labels: ArrayLike, num_classes: int | None = None
    ):
        points, labels = jnp.asarray(points), jnp.asarray(labels)
        if points.ndim < 2 or points.shape[0] < 1:
            raise ValueError(
                "points must have shape (m, *event_shape) with m >= 1, "
                f"got {points.shape}."
            )
        if labels.shape != points.shape[:1] or not jnp.issubdtype(
            labels.dtype, jnp.integer
        ):
            raise ValueError(
                f"labels must be integers of shape ({points.shape[0]},), one per "
                f"row of points, got {labels.dtype} of shape {labels.shape}."
            )
        top = int(labels.max()) + 1
        num_classes = top if num_classes is None else num_classes
        if int(labels.min()) < 0 or top > num_classes:
            raise ValueError(
                f"labels must lie in 0..{num_classes - 1} (num_classes="
                f"{num_classes}), got {int(labels.min())}..{top - 1}."
            )
        self.points, self.labels = points, labels.astype(jnp.int32)
        self.num_classes = int(num_classes)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.points.shape[1:])

    def sample_labelled(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n *event"], Int[Array, " n"]]:
        n = check_n(n)
        idx = jax.random.randint(key, (n,), 0, self.points.shape[0])
        return self.points[idx], self.labels[idx]


registry.register("data", "blobs", LabelledBlobs)
