"""Metrics shared by the reproductions."""

import numpy as np

from flowlab import metrics

__all__ = ["exact_w2"]


def exact_w2(x, y) -> float:
    """Exact W2 between two equal-size point sets (uniform weights), float64.

    POT's network simplex (`ot.emd2`) where POT is installed: the same number as
    `flowlab.metrics.wasserstein2` (an optimal plan of equal uniform weights is a
    permutation), several times faster (4-5x at 10,000 points); else that function.
    Rows are flattened, so images are compared in pixel space.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    try:
        import ot
    except ImportError:
        return metrics.wasserstein2(x, y)
    cost = ot.dist(x, y)  # squared Euclidean
    w = np.full(len(x), 1.0 / len(x))
    return float(np.sqrt(max(ot.emd2(w, w, cost, numItermax=10**8), 0.0)))
