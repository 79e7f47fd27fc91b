r"""The 8×8 handwritten digits of scikit-learn (1,797 images, 10 classes).

Pixels are integers 0…16 in the source; `load_digits` scales them to $[-1, 1]$ by
$x / 8 - 1$ (a blank pixel is $-1$). The images are flattened to 64 coordinates by
default, so the `data.Gaussian(64)` source matches them; `flatten=False` keeps
`(8, 8)`. The data set ships inside scikit-learn (no download); install it with the
`data` extra: `pip install 'flowlab[data]'`.
"""

from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from ._base import check_split, optional_import, split_rows

__all__ = ["DIGITS_SHAPE", "Digits", "load_digits"]

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
