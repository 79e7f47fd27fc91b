"""Shared data for the coupling tests: batches of several shapes of distribution.

Imported as `import coupling_cases` (pytest puts this folder on `sys.path`).
"""

import numpy as np

from flowlab import couplings

KINDS = ("gaussian_shift", "gaussian_same", "moons_normal", "duplicates")


def batch(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(x0, x1)`, two float64 batches of 2-D points of `n` rows each."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(n, 2))
    if kind == "gaussian_shift":
        x1 = rng.normal(size=(n, 2)) + np.array([1.0, -0.5])
    elif kind == "gaussian_same":
        x1 = rng.normal(size=(n, 2))
    elif kind == "moons_normal":  # torchcfm's moons: half circles, scaled 3x - 1
        t = rng.uniform(0, np.pi, n)
        upper = rng.uniform(size=n) < 0.5
        x1 = np.where(
            upper[:, None],
            np.stack([np.cos(t), np.sin(t)], 1),
            np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
        )
        x1 = (x1 + 0.2 * rng.uniform(size=(n, 1))) * 3 - 1
    elif kind == "duplicates":  # few distinct points on both sides: massive ties
        x0 = np.round(x0)
        x1 = np.round(rng.normal(size=(n, 2)))
    else:
        raise ValueError(kind)
    return x0, x1


def sq_cost(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Squared Euclidean costs, computed independently of ott-jax."""
    return ((x0[:, None, :] - x1[None, :, :]) ** 2).sum(-1)


def optimum(cost: np.ndarray) -> float:
    """The optimal assignment cost by scipy (the reference)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def is_permutation(sigma) -> bool:
    """Whether `sigma` uses every index once."""
    sigma = np.asarray(sigma)
    return sorted(sigma.tolist()) == list(range(len(sigma)))


# Every coupling, built as a user would; `square` ones pair every row exactly once.
ALL_COUPLINGS = {
    "independent": (couplings.independent(), True),
    "exact_ot": (couplings.exact_ot(), True),
    "sinkhorn": (couplings.sinkhorn(0.1), False),
    "sinkhorn_hard": (couplings.sinkhorn(0.1, hard=True), True),
    "unbalanced": (couplings.unbalanced(0.1, 0.99, 0.99), False),
    "partial": (couplings.partial(0.9, 0.1), False),
    "stable_matching": (couplings.stable_matching(), True),
}
