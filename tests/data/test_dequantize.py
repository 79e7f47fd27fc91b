"""Uniform dequantisation: bin-centred noise, its law, the grid it comes back to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from flowlab import data

DELTA = 1 / 8  # the digits' bin width (pixels k = 0..16 scaled as k / 8 - 1)


def _digit_levels(key, shape):
    """Random pixels of the digits' grid, k / 8 - 1 for k = 0..16, and k."""
    k = jax.random.randint(key, shape, 0, 17)
    return k / 8.0 - 1.0, k


def test_noise_stays_in_the_bin_and_rounds_back_to_the_pixel(key):
    # Bin centres: y lies in [x - delta/2, x + delta/2), so rounding (y + 1) * 8 to
    # the nearest integer recovers the pixel k exactly (a left-edge convention would
    # round half the points up to k + 1).
    k_x, k_u = jax.random.split(key)
    x, k = _digit_levels(k_x, (256, 64))
    y = data.dequantize(k_u, x, DELTA)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    u = np.asarray(y - x)
    assert u.min() >= -DELTA / 2
    assert u.max() < DELTA / 2
    np.testing.assert_array_equal(jnp.round((y + 1.0) * 8.0), k)


def test_noise_is_uniform_on_the_bin(key):
    # Kolmogorov-Smirnov against U(-delta/2, delta/2) (fixed key; with 16,384 draws
    # a wrong law, e.g. U(0, delta), has p ~ 0), and the first two moments within
    # 5 standard errors: mean 0 (sd delta / sqrt(12 n)), variance delta^2 / 12.
    x = jnp.zeros((16_384,))
    u = np.asarray(data.dequantize(key, x, DELTA))
    assert stats.kstest(u, stats.uniform(-DELTA / 2, DELTA).cdf).pvalue > 1e-3
    n = u.size
    assert abs(u.mean()) < 5 * DELTA / np.sqrt(12 * n)
    # Var of u^2 for U(-a, a) is a^4 (1/5 - 1/9); the variance's sd is sqrt of it / n.
    a = DELTA / 2
    sd_var = np.sqrt(a**4 * (1 / 5 - 1 / 9) / n)
    assert abs(u.var() - DELTA**2 / 12) < 5 * sd_var


@given(
    bin_width=st.sampled_from([1e-3, 0.125, 1.0, 3.5]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_any_bin_width_and_dtype(bin_width, dtype):
    x = jnp.asarray(np.linspace(-2.0, 2.0, 30).reshape(5, 3, 2), dtype)
    y = data.dequantize(jax.random.key(1), x, bin_width)
    assert y.dtype == x.dtype
    # |u| <= delta / 2, up to rounding of x + u in the dtype.
    slack = 4 * np.finfo(dtype).eps * (2.0 + bin_width)
    assert float(jnp.max(jnp.abs(y - x))) <= bin_width / 2 + slack
    assert float(jnp.max(jnp.abs(y - x))) > bin_width / 4  # the noise is there


def test_same_key_same_noise_and_jit_agrees(key):
    x, _ = _digit_levels(key, (8, 64))
    k_u = jax.random.key(3)
    jitted = jax.jit(lambda k, v: data.dequantize(k, v, DELTA))
    np.testing.assert_array_equal(jitted(k_u, x), data.dequantize(k_u, x, DELTA))
    np.testing.assert_array_equal(
        data.dequantize(k_u, x, DELTA), data.dequantize(k_u, x, DELTA)
    )
    assert not np.array_equal(
        data.dequantize(jax.random.key(4), x, DELTA), data.dequantize(k_u, x, DELTA)
    )


@pytest.mark.parametrize("bin_width", [0.0, -0.125, None, "1/8", True])
def test_bad_bin_width_raises(bin_width, key):
    with pytest.raises(ValueError, match="bin_width must be a positive float"):
        data.dequantize(key, jnp.zeros((2, 3)), bin_width)


def test_integer_pixels_and_bad_keys_raise(key):
    with pytest.raises(ValueError, match=r"x must be floating \(scale the grid"):
        data.dequantize(key, jnp.arange(4), DELTA)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        data.dequantize(0, jnp.zeros(4), DELTA)
