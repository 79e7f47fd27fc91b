"""The sampler interface: anything with `sample(key, n)`."""

import abc
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import positive_int

if TYPE_CHECKING:
    from ..conditioning import AbstractCondition

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

    @property
    def condition(self) -> "AbstractCondition | None":
        """What the conditions of `sample_batch` are; `None` for unconditional data."""
        return None

    def sample_batch(self, key: PRNGKeyArray, n: int) -> tuple[Array, Any]:
        """A training batch `(x1, cond)`: `n` samples and their conditions.

        The train step draws its batch of a sampler with this; an unconditional
        sampler gives `(sample(key, n), None)`, a labelled one
        (`flowlab.data.AbstractLabelledSampler`) its labels too.
        """
        return self.sample(key, n), None

    def held_out(self, key: PRNGKeyArray, n: int) -> Float[Array, "m *event"]:
        """Points to evaluate on that training never sees: `n` fresh samples.

        A finite data set returns its test split instead (its size, not `n`).
        """
        return self.sample(key, n)


def check_n(n) -> int:
    """Validate a static sample count."""
    return positive_int("n", n, "a positive Python int")


SPLITS = ("train", "test", "all")
"""The splits of a finite data set (`load_digits`, `load_quakes`)."""


def check_split(split: str, test_fraction: float) -> None:
    """A `ValueError` naming the argument unless both describe a split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}.")


def split_rows(
    n: int, split: str, test_fraction: float, seed: int
) -> np.ndarray | slice:
    """The rows of `split` among `n`: a fixed permutation's last share is the test.

    `numpy.random.default_rng(seed)` permutes the rows; its last
    `round(test_fraction * n)` are the test set, the rest the training set, so
    the two never overlap and the same seed gives the same split.
    """
    if split == "all":
        return slice(None)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return order[-n_test:] if split == "test" else order[:-n_test]


def optional_import(
    module: str, what: str, extra: str, package: str | None = None
) -> ModuleType:
    """`import module`, or an `ImportError` that names the extra that installs it."""
    try:  # the top-level package first: a blocked one is refused even when
        importlib.import_module(module.split(".")[0])  # a submodule is cached
        return importlib.import_module(module)
    except ImportError as err:
        package = package or module.split(".")[0]
        raise ImportError(
            f"{what} needs {package}, which comes with the {extra!r} extra: "
            f"pip install 'flowlab[{extra}]'."
        ) from err
