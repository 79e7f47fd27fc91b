"""The sampler interface: anything with `sample(key, n)`."""

import abc

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import positive_int

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

    def held_out(self, key: PRNGKeyArray, n: int) -> Float[Array, "m *event"]:
        """Points to evaluate on that training never sees: `n` fresh samples.

        A finite data set returns its test split instead (its size, not `n`).
        """
        return self.sample(key, n)


def check_n(n) -> int:
    """Validate a static sample count."""
    return positive_int("n", n, "a positive Python int")
