"""Several samplers drawn together: the batch of a multimarginal loss."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractSampler, check_n

__all__ = ["Stacked"]


class Stacked(AbstractSampler):
    """Independent draws of each of `K + 1` samplers, stacked on axis 1.

    `sample(key, n)` has shape `(n, K + 1, *event)`: row `i` holds one draw of every
    marginal, the batch `flowlab.losses.MultimarginalLoss` trains on (`fit(...,
    source=None, target=Stacked(...))`). Each sampler gets its own key.

    Attributes:
        samplers: the marginals' samplers, all with the same event shape.
    """

    samplers: tuple[AbstractSampler, ...]

    def __init__(self, *samplers: AbstractSampler):
        if len(samplers) < 2:
            raise ValueError(f"Stacked needs at least 2 samplers, got {len(samplers)}.")
        shapes = {s.event_shape for s in samplers}
        if len(shapes) != 1:
            raise ValueError(
                f"Stacked needs samplers of one event shape, got {sorted(shapes)}."
            )
        self.samplers = tuple(samplers)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (len(self.samplers), *self.samplers[0].event_shape)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n k *event"]:
        n = check_n(n)
        keys = jax.random.split(key, len(self.samplers))
        draws = [s.sample(k, n) for s, k in zip(self.samplers, keys, strict=True)]
        return jnp.stack(draws, axis=1)
