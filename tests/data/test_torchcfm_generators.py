"""flowlab's moons and eight Gaussians against the originals torchcfm trains on.

The published 2-D numbers of Tong et al. 2023 use torchcfm's `sample_8gaussians`
and `sample_moons` (torchdyn's `generate_moons(n, noise=0.2)`, then `3 x - 1`).
Each check here is run on the original, on flowlab, and on a plausible wrong
generator (scikit-learn's moons noise; the eight Gaussians with covariance 0.1 I
instead of sqrt(0.1) I), which it must reject: the tests can fail.

Statistics use 200,000 points per generator and fixed seeds (deterministic). A
moment passes when the two samples differ by less than 6 standard errors of the
difference, estimated from the samples themselves; the two-sample Kolmogorov-Smirnov
test on 1-D projections passes at p > 1e-4. Measured: flowlab's worst KS p-value is
0.95 (moons) and 0.25 (eight Gaussians), no moment beyond 6 s.e.; the sklearn-style
moons miss the means by 36 and 62 s.e., the 0.1-covariance Gaussians the variances
by 6-10 s.e. and KS at p ~ 1e-112.
"""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from flowlab import data

torch = pytest.importorskip("torch")
torchcfm_utils = pytest.importorskip("torchcfm.utils")
torchdyn_datasets = pytest.importorskip("torchdyn.datasets")

N = 200_000
Z = 6.0  # standard errors allowed on a moment difference
P_MIN = 1e-4  # smallest accepted KS p-value
# The moons' x - y carries no noise (the one uniform shift is added to both
# coordinates), so it must match the original point for point: float32 rounding of
# 3 x - 1 on values up to ~6, a few ulps (1.2e-7 relative): 1e-5 is ample.
EXACT = 1e-5
PROJECTIONS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])


def _torch_moons(n: int, seed: int) -> np.ndarray:
    np.random.seed(seed)  # torchdyn draws its noise from numpy's global RNG
    return torchcfm_utils.sample_moons(n).numpy().astype(np.float64)


def _torch_8gaussians(n: int, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    return torchcfm_utils.sample_8gaussians(n).numpy().astype(np.float64)


def _flowlab(name: str, n: int, seed: int) -> np.ndarray:
    return np.asarray(data.get(name).sample(jax.random.key(seed), n), np.float64)


def _sklearn_style_moons(n: int, seed: int) -> np.ndarray:
    """scikit-learn's `make_moons(noise=0.2)` noise: Gaussian, per coordinate."""
    rng = np.random.default_rng(seed)
    n_out, n_in = n // 2, n - n // 2
    a_out, a_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.concatenate(
        [
            np.stack([np.cos(a_out), np.sin(a_out)], -1),
            np.stack([1 - np.cos(a_in), 0.5 - np.sin(a_in)], -1),
        ]
    )
    return 3 * (x + 0.2 * rng.standard_normal((n, 2))) - 1


def _8gaussians_variance_as_covariance(n: int, seed: int) -> np.ndarray:
    """Eight Gaussians with covariance 0.1 I (not torchcfm's sqrt(0.1) I)."""
    rng = np.random.default_rng(seed)
    r = 1 / math.sqrt(2)
    centres = 5.0 * np.array(
        [[1, 0], [-1, 0], [0, 1], [0, -1], [r, r], [r, -r], [-r, r], [-r, -r]]
    )
    return centres[rng.integers(0, 8, n)] + math.sqrt(0.1) * rng.standard_normal((n, 2))


def _moment_mismatches(a: np.ndarray, b: np.ndarray) -> list[str]:
    """Means and covariances that differ by more than `Z` standard errors."""
    bad = []
    da, db = a - a.mean(0), b - b.mean(0)
    se_mean = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
    diff = np.abs(a.mean(0) - b.mean(0))
    for i in np.flatnonzero(diff > Z * se_mean):
        bad.append(f"mean[{i}] differs by {diff[i] / se_mean[i]:.1f} s.e.")
    for i, j in ((0, 0), (1, 1), (0, 1)):
        pa, pb = da[:, i] * da[:, j], db[:, i] * db[:, j]
        se = math.sqrt(pa.var() / len(a) + pb.var() / len(b))
        d = abs(pa.mean() - pb.mean())
        if d > Z * se:
            bad.append(f"cov[{i},{j}] differs by {d / se:.1f} s.e.")
    return bad


def _ks_mismatches(a: np.ndarray, b: np.ndarray) -> list[str]:
    """1-D projections whose two-sample KS test rejects at `P_MIN`."""
    bad = []
    for w in PROJECTIONS:
        p = stats.ks_2samp(a @ w, b @ w).pvalue
        if p < P_MIN:
            bad.append(f"KS on projection {w.tolist()}: p = {p:.2g}")
    return bad


def _mismatches(a: np.ndarray, b: np.ndarray) -> list[str]:
    return _moment_mismatches(a, b) + _ks_mismatches(a, b)


@pytest.fixture(scope="module")
def moons():
    return _torch_moons(N, 0)


@pytest.fixture(scope="module")
def eight_gaussians():
    return _torch_8gaussians(N, 0)


def test_moons_match_torchdyn_in_distribution(moons):
    assert _mismatches(_flowlab("moons", N, 1), moons) == []


def test_moons_noiseless_direction_matches_point_for_point(moons):
    # x - y cancels the uniform shift: it is the deterministic half-circle grid,
    # in the same order (the upper moon's n // 2 points first).
    x = _flowlab("moons", N, 2)
    np.testing.assert_allclose(x[:, 0] - x[:, 1], moons[:, 0] - moons[:, 1], atol=EXACT)


def test_sklearn_style_moons_are_rejected(moons):
    decoy = _sklearn_style_moons(N, 3)
    assert _moment_mismatches(decoy, moons), "moment check must reject sklearn noise"
    assert _ks_mismatches(decoy, moons), "KS check must reject sklearn noise"
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(
            decoy[:, 0] - decoy[:, 1], moons[:, 0] - moons[:, 1], atol=EXACT
        )


def test_eight_gaussians_match_torchcfm(eight_gaussians):
    x = _flowlab("8gaussians", N, 4)
    assert _mismatches(x, eight_gaussians) == []
    # Per mode as well: the nearest centre splits both samples the same way.
    r = 1 / math.sqrt(2)
    centres = 5.0 * np.array(
        [[1, 0], [-1, 0], [0, 1], [0, -1], [r, r], [r, -r], [-r, r], [-r, -r]]
    )

    def modes(y):
        return np.argmin(((y[:, None] - centres[None]) ** 2).sum(-1), axis=1)

    ma, mb = modes(x), modes(eight_gaussians)
    counts_a, counts_b = np.bincount(ma, minlength=8), np.bincount(mb, minlength=8)
    # Two multinomial counts of p = 1/8: s.e. of the difference sqrt(2 N p (1 - p)).
    np.testing.assert_allclose(counts_a, counts_b, atol=Z * math.sqrt(2 * N * 7 / 64))
    for k in range(8):
        assert _moment_mismatches(x[ma == k], eight_gaussians[mb == k]) == [], k


def test_eight_gaussians_with_covariance_point_one_are_rejected(eight_gaussians):
    decoy = _8gaussians_variance_as_covariance(N, 5)
    assert _moment_mismatches(decoy, eight_gaussians)
    assert _ks_mismatches(decoy, eight_gaussians)
