"""Bits per dimension, with uniform dequantisation, against exact values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from flowlab import data, metrics

# Tolerances.
# Closed-form values in float64: rounding of O(1) sums and logs only.
F64 = 1e-12
# Monte-Carlo means with a fixed key: 5 standard errors (computed in each test).
N_SE = 5


@given(
    levels=st.sampled_from([2, 17, 256]),
    bin_width=st.sampled_from([1 / 8, 1 / 255, 2.0]),
    dim=st.sampled_from([1, 3, 64]),
)
def test_a_uniform_density_on_the_bins_gives_log2_levels(levels, bin_width, dim):
    # Data k * delta - 1 on `levels` levels (k = 0..levels-1; the digits are
    # levels = 17, delta = 1/8), dequantised onto the bins centred on them, which
    # tile the box [-1 - delta/2, -1 + (levels - 1/2) delta) of side levels * delta.
    # The uniform density on that box, -dim log(levels delta), gives exactly
    # log2(levels) bits per dimension, and every dequantised point lies inside.
    k_x, k_u = jax.random.split(jax.random.key(levels))
    k = jax.random.randint(k_x, (128, dim), 0, levels)
    x = k * bin_width - 1.0
    y = data.dequantize(k_u, x, bin_width)
    lo, hi = -1.0 - bin_width / 2, -1.0 + (levels - 0.5) * bin_width
    assert bool(jnp.all((y >= lo) & (y < hi)))
    log_p = jnp.full((128,), -dim * math.log(levels * bin_width))
    bpd = metrics.bits_per_dim(log_p, dim, bin_width=bin_width)
    np.testing.assert_allclose(bpd, math.log2(levels), rtol=F64)


@pytest.mark.parametrize("std", [0.5, 2.0])
def test_a_gaussian_gives_its_differential_entropy_in_bits(std, key):
    # x ~ N(0, std^2 I_D) scored by its own density: E[bpd] = h / (D ln 2) with
    # h = (D/2) log(2 pi e std^2). Per sample bpd = (|x|^2 / (2 std^2) + (D/2)
    # log(2 pi std^2)) / (D ln 2), whose sd is sqrt(D / 2) / (D ln 2).
    dim, n = 4, 20_000
    x = std * jax.random.normal(key, (n, dim))
    log_p = jnp.asarray(stats.norm(0.0, std).logpdf(np.asarray(x)).sum(1))
    bpd = metrics.bits_per_dim(log_p, dim)
    assert bpd.shape == (n,)
    want = 0.5 * math.log2(2 * math.pi * math.e * std**2)
    se = math.sqrt(dim / 2) / (dim * math.log(2)) / math.sqrt(n)
    assert abs(float(bpd.mean()) - want) < N_SE * se


def test_a_discretised_gaussian_bounds_its_entropy(key):
    # z ~ N(0, 1) rounded to the grid delta Z (bin centres), dequantised and scored
    # by N(0, 1): per coordinate E[-log p(y)] = sum_k P_k ((k delta)^2 + delta^2/12)
    # / 2 + log(2 pi) / 2 exactly (y = k delta + u, E u = 0, E u^2 = delta^2 / 12),
    # so the bound is (that - log delta) / ln 2 bits per dimension. It lies above
    # the discrete entropy -sum_k P_k log2 P_k (the bound of dequantize's
    # docstring), and close to it for a fine grid.
    dim, n, delta = 3, 20_000, 0.25
    k_z, k_u = jax.random.split(key)
    x = delta * jnp.round(jax.random.normal(k_z, (n, dim)) / delta)
    y = data.dequantize(k_u, x, delta)
    log_p = jnp.asarray(stats.norm.logpdf(np.asarray(y)).sum(1))
    bpd = metrics.bits_per_dim(log_p, dim, bin_width=delta)

    grid = delta * np.arange(-32, 33)  # +-8 sd: the tails hold < 1e-15
    p_k = stats.norm.cdf(grid + delta / 2) - stats.norm.cdf(grid - delta / 2)
    nats = np.sum(p_k * (grid**2 + delta**2 / 12)) / 2 + 0.5 * math.log(2 * math.pi)
    bound = (nats - math.log(delta)) / math.log(2)
    entropy = -np.sum(p_k * np.log2(p_k))
    assert entropy < bound < entropy + 0.01
    # Monte-Carlo: sd of the per-sample bpd is at most sqrt(D var(y^2 / 2)) / (D ln
    # 2) with var(y^2 / 2) ~ 1/2 (a standard normal's), plus the grid's share.
    se = math.sqrt(dim * 0.6) / (dim * math.log(2)) / math.sqrt(n)
    assert abs(float(bpd.mean()) - bound) < N_SE * se


def test_bits_per_dim_keeps_the_dtype_and_is_elementwise():
    log_p = jnp.asarray([[-1.0, -2.0], [0.5, 3.0]], jnp.float32)
    bpd = metrics.bits_per_dim(log_p, 2, bin_width=0.5)
    assert bpd.dtype == jnp.float32
    assert bpd.shape == (2, 2)
    want = -(np.asarray(log_p, np.float64) + 2 * math.log(0.5)) / (2 * math.log(2))
    np.testing.assert_allclose(bpd, want, rtol=1e-6)  # float32 rounding


@pytest.mark.parametrize("event_size", [0, -3, 2.0, (8, 8)])
def test_bad_event_size_raises(event_size):
    with pytest.raises(ValueError, match="event_size must be a positive int"):
        metrics.bits_per_dim(jnp.zeros(3), event_size)


@pytest.mark.parametrize("bin_width", [0.0, -1.0, "1/8"])
def test_bad_bin_width_raises(bin_width):
    with pytest.raises(ValueError, match="bin_width must be None"):
        metrics.bits_per_dim(jnp.zeros(3), 4, bin_width=bin_width)
