"""The sampler interface: anything with `sample(key, n)`."""

import abc

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["AbstractSampler"]


class AbstractSampler(eqx.Module):
    """A source of samples: `sample(key, n)` returns an `(n, *event_shape)` array.

    Samplers are pytrees, so a sampler holding a data set on device can be passed
    through `jax.jit` as an argument (its arrays are not baked into the program).
    """

    @property
    @abc.abstractmethod
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n *event"]:
        """Draw `n` samples."""


def check_n(n) -> int:
    """Validate a static sample count."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive Python int, got {n!r}.")
    return n
