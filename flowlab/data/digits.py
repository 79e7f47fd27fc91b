r"""The 8×8 handwritten digits of scikit-learn (1,797 images, 10 classes).

Pixels are integers 0…16 in the source; `load_digits` scales them to $[-1, 1]$ by
$x / 8 - 1$ (a blank pixel is $-1$). The images are flattened to 64 coordinates by
default, so the `data.Gaussian(64)` source matches them; `flatten=False` keeps
`(8, 8)`. The data set ships inside scikit-learn (no download); install it with the
`data` extra: `pip install 'flowlab[data]'`.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray
from numpy.typing import DTypeLike

from .. import _checks, registry
from ._base import check_n, check_split, optional_import, split_rows
from .dequantization import dequantize
from .images import AbstractImageSampler
from .labelled import AbstractLabelledSampler

__all__ = [
    "DIGITS_SHAPE",
    "DigitImages",
    "Digits",
    "LabelledDigitImages",
    "load_digits",
]

DIGITS_SHAPE = (8, 8)
"""The image layout of one digit."""


class Digits(NamedTuple):
    """Images and their labels (host arrays).

    Attributes:
        x: pixels in $[-1, 1]$, `(n, 64)` (or `(n, 8, 8)` with `flatten=False`).
        labels: the digit of each image, `(n,)` integers 0…9.
    """

    x: np.ndarray
    labels: np.ndarray


def load_digits(
    split: str = "all",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    flatten: bool = True,
    dtype: DTypeLike = np.float32,
) -> Digits:
    """The scikit-learn digits scaled to $[-1, 1]$, optionally a train/test split.

    The split is a fixed random permutation (`numpy.random.default_rng(seed)`): the
    last `round(test_fraction * 1797)` images of it are the test set, the rest the
    training set, so the two never overlap and the same seed gives the same split.

    Args:
        split: `"train"`, `"test"` or `"all"`.
        test_fraction: the share of images held out, in $(0, 1)$.
        seed: the seed of the split's permutation.
        flatten: `(n, 64)` images when true, `(n, 8, 8)` otherwise.
        dtype: the floating dtype of the pixels.

    Returns:
        `Digits(x, labels)` as NumPy arrays; `data.Empirical(x)` samples them.

    Raises:
        ImportError: scikit-learn is missing (the `data` extra).

    Example:
        >>> from flowlab import data
        >>> train = data.load_digits("train")
        >>> train.x.shape, float(train.x.min()), float(train.x.max())
        ((1438, 64), -1.0, 1.0)
    """
    check_split(split, test_fraction)
    datasets = optional_import(
        "sklearn.datasets", "load_digits", "data", "scikit-learn"
    )
    bunch = datasets.load_digits()
    x = (np.asarray(bunch.data, np.float64) / 8.0 - 1.0).astype(dtype)
    labels = np.asarray(bunch.target, np.int32)
    rows = split_rows(len(x), split, test_fraction, seed)
    x, labels = x[rows], labels[rows]
    if not flatten:
        x = x.reshape(-1, *DIGITS_SHAPE)
    return Digits(x, labels)


class _AbstractDigits(AbstractImageSampler):
    """The digits of one split on device, and those of the other for `held_out`."""

    points: Float[Array, "m 64"]
    labels: Int[Array, " m"]
    test_points: Float[Array, "k 64"]
    test_labels: Int[Array, " k"]

    def __init__(
        self, split: str = "train", *, test_fraction: float = 0.2, seed: int = 0
    ):
        own = load_digits(split, test_fraction=test_fraction, seed=seed)
        other = {"train": "test", "test": "train", "all": "all"}[split]
        held = load_digits(other, test_fraction=test_fraction, seed=seed)
        self.points = jnp.asarray(own.x, float)
        self.labels = jnp.asarray(own.labels)
        self.test_points = jnp.asarray(held.x, float)
        self.test_labels = jnp.asarray(held.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (*DIGITS_SHAPE, 1)

    @property
    def bin_width(self) -> float:
        return 1.0 / 8.0

    @property
    def value_range(self) -> tuple[float, float]:
        return (-1.0, 1.0)

    def held_out(self, key: PRNGKeyArray, n: int) -> Float[Array, "k 64"]:
        """The images of the other split, on the grid (`key`, `n` are unused)."""
        del key, n
        return self.test_points

    def _draw(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n 64"], Int[Array, " n"]]:
        n = check_n(n)
        k_index, k_noise = jax.random.split(_checks.key(key))
        idx = jax.random.randint(k_index, (n,), 0, self.points.shape[0])
        return dequantize(k_noise, self.points[idx], self.bin_width), self.labels[idx]


class DigitImages(_AbstractDigits):
    r"""Draws of the scikit-learn digits, dequantised (registry name `"digits"`).

    The images of `load_digits(split, ...)` are held on device and drawn by index
    (with replacement, as `Empirical`); `sample` spreads each pixel uniformly over
    its bin of width $1/8$ (the grid of $x/8 - 1$), so training sees a
    continuous density on $[-1 - 1/16, 1 + 1/16]^{64}$. The default is the
    training split (1,438 images); `held_out` returns the other split's images
    (the 359 test digits), quantised, as they are scored. Unconditional: the
    labels are kept (`labels`, `test_labels`) but not drawn;
    `LabelledDigitImages` draws them. Needs scikit-learn (the `data` extra).

    Attributes:
        points: the images, `(m, 64)`, on the grid.
        labels: their digits, `(m,)`.
        test_points: the images of the other split (`held_out`).
        test_labels: their digits.

    Example:
        >>> import jax
        >>> from flowlab import data
        >>> digits = data.DigitImages()
        >>> x = digits.sample(jax.random.key(0), 5)
        >>> digits.points.shape, x.shape, digits.image_shape
        ((1438, 64), (5, 64), (8, 8, 1))
    """

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 64"]:
        return self._draw(key, n)[0]


class LabelledDigitImages(_AbstractDigits, AbstractLabelledSampler):
    r"""`DigitImages` with their labels (registry name `"labelled_digits"`).

    `sample_labelled` draws dequantised images and their digits, so a run on it
    is class-conditional (`condition` is `flowlab.conditioning.Labels(10)`).

    Example:
        >>> import jax
        >>> from flowlab import data
        >>> digits = data.LabelledDigitImages()
        >>> x, labels = digits.sample_labelled(jax.random.key(0), 5)
        >>> x.shape, labels.shape, digits.condition.embedding_size
        ((5, 64), (5,), 11)
    """

    num_classes: int = eqx.field(static=True, default=10)

    def sample_labelled(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n 64"], Int[Array, " n"]]:
        return self._draw(key, n)


registry.register("data", "digits", DigitImages)
registry.register("data", "labelled_digits", LabelledDigitImages)
