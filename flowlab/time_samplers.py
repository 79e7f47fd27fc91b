r"""Samplers of training times: `time_sampler(key, n)` returns `n` times in $[0, 1]$.

A loss draws the time of each row with one of these (`FlowMatchingLoss(...,
time_sampler=...)`); any function `(key, n) -> t` works too. The built-in ones are
small immutable modules, equal when their parameters are, so two losses built
alike compile to one program.

| sampler | law of $t$ |
| :--- | :--- |
| `uniform_time(t_min, t_max)` | $U(t_{min}, t_{max})$ |
| `logit_normal_time(mean, std)` | $\mathrm{sigmoid}(m + s\xi)$, $\xi \sim N(0, 1)$ |

(the logit-normal of Esser et al. 2024).
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from . import registry

__all__ = [
    "AbstractTimeSampler",
    "LogitNormalTime",
    "TimeSampler",
    "UniformTime",
    "get_time_sampler",
    "logit_normal_time",
    "uniform_time",
]

TimeSampler = Callable[[PRNGKeyArray, int], Float[Array, " n"]]
"""`time_sampler(key, n)` returns `n` times in $[0, 1]$."""


class AbstractTimeSampler(eqx.Module):
    """A law of training times; `sampler(key, n)` draws `n` of them."""

    @abc.abstractmethod
    def __call__(self, key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        """`n` times in $[0, 1]$."""


class UniformTime(AbstractTimeSampler):
    """Times uniform on `[t_min, t_max]`."""

    t_min: float = 0.0
    t_max: float = 1.0

    def __check_init__(self):
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(
                f"uniform_time needs 0 <= t_min < t_max <= 1, got {self.t_min}, "
                f"{self.t_max}."
            )

    def __call__(self, key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        return jax.random.uniform(key, (n,), minval=self.t_min, maxval=self.t_max)


class LogitNormalTime(AbstractTimeSampler):
    r"""Times $t = \mathrm{sigmoid}(m + s\,\xi)$, $\xi \sim N(0, 1)$."""

    mean: float = 0.0
    std: float = 1.0

    def __check_init__(self):
        if not self.std > 0:
            raise ValueError(f"logit_normal_time needs std > 0, got {self.std}.")

    def __call__(self, key: PRNGKeyArray, n: int) -> Float[Array, " n"]:
        return jax.nn.sigmoid(self.mean + self.std * jax.random.normal(key, (n,)))


@registry.register("time_sampler", "uniform")
def uniform_time(t_min: float = 0.0, t_max: float = 1.0) -> UniformTime:
    """Times uniform on `[t_min, t_max]`."""
    return UniformTime(t_min, t_max)


@registry.register("time_sampler", "logit_normal")
def logit_normal_time(mean: float = 0.0, std: float = 1.0) -> LogitNormalTime:
    r"""Times $t = \mathrm{sigmoid}(m + s\,\xi)$, $\xi \sim N(0, 1)$ (Esser et al.)."""
    return LogitNormalTime(mean, std)


def get_time_sampler(name: str, **kwargs) -> AbstractTimeSampler:
    """A time sampler by name: `"uniform"` or `"logit_normal"` (`flowlab.registry`)."""
    return registry.build("time_sampler", name, **kwargs)
