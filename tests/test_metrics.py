"""Metrics: exact W2, MMD, path energy and NPE."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import metrics

# Tolerances.
# W2 of identical sets: the squared-distance expansion |x|^2 + |y|^2 - 2 x.y leaves
# O(eps |x|^2) ~ 1e-15 on the diagonal, whose square root is ~3e-8.
W2_ZERO = 1e-7
# W2 against an exact reference, away from zero: float64 rounding only.
F64 = 1e-10


def test_w2_of_a_shuffled_copy_is_zero(key):
    x = jax.random.normal(key, (64, 3))
    perm = jax.random.permutation(jax.random.key(1), 64)
    assert metrics.wasserstein2(x, x[perm]) == pytest.approx(0.0, abs=W2_ZERO)


@pytest.mark.parametrize("shape", [(40, 2), (40, 2, 3)])
def test_w2_of_a_translation_is_its_length(shape, key):
    # Translation: sum |x_i - x_s(i) - c|^2 = sum |x_i - x_s(i)|^2 + n|c|^2, minimal
    # for the identity pairing, so W2 = |c| exactly.
    x = jax.random.normal(key, shape)
    c = jax.random.normal(jax.random.key(1), shape[1:])
    w2 = metrics.wasserstein2(x, x + c[None])
    assert w2 == pytest.approx(float(jnp.linalg.norm(c)), rel=F64)


def test_w2_matches_brute_force_on_six_points():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2)) + 0.5
    best = min(
        np.mean(np.sum((x - y[list(p)]) ** 2, axis=1))
        for p in itertools.permutations(range(6))
    )
    assert metrics.wasserstein2(x, y) == pytest.approx(math.sqrt(best), rel=F64)


def test_w2_shape_mismatch_raises():
    with pytest.raises(ValueError, match="x and y must hold the same number"):
        metrics.wasserstein2(np.zeros((4, 2)), np.zeros((5, 2)))


def test_mmd_same_and_shifted(key):
    k1, k2 = jax.random.split(key)
    n = 500
    x = jax.random.normal(k1, (n, 2))
    y = jax.random.normal(k2, (n, 2))
    # Same distribution: the unbiased estimator has mean 0; its standard deviation
    # at n = 500, measured over 30 seeds, is 0.003. Allow 0.02 (~7 sd, fixed key).
    same = float(metrics.mmd(x, y))
    assert abs(same) < 0.02
    # Shifted by 1 in each coordinate: MMD^2 is ~0.46 here.
    shifted = float(metrics.mmd(x, y + 1.0))
    assert shifted > 0.3
    assert shifted > 10 * abs(same)


def test_mmd_is_symmetric_jittable_and_flattens_events(key):
    x = jax.random.normal(key, (30, 2, 2))
    y = jax.random.normal(jax.random.key(1), (20, 2, 2)) + 0.5
    mmd = jax.jit(metrics.mmd)
    np.testing.assert_allclose(mmd(x, y), mmd(y, x), rtol=F64)
    np.testing.assert_allclose(
        mmd(x, y), mmd(x.reshape(30, 4), y.reshape(20, 4)), rtol=F64
    )


def test_mmd_errors():
    with pytest.raises(ValueError, match="same event size"):
        metrics.mmd(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least two points"):
        metrics.mmd(np.zeros((1, 2)), np.zeros((4, 2)))


_TRACES = [0]


def _constant_field(t, x, args):
    _TRACES[0] += 1  # runs only while JAX traces the field
    return jnp.broadcast_to(args, x.shape)


@pytest.mark.parametrize("solver", ["euler", "dopri5"])
def test_path_energy_of_a_constant_field(solver, key):
    c = jnp.array([0.5, -2.0, 1.0])
    x0 = jax.random.normal(key, (8, 3))
    steps = 100 if solver == "euler" else None
    x1, energy = metrics.path_energy(_constant_field, x0, c, solver=solver, steps=steps)
    # Exact for any consistent solver: the field and the energy rate are constant.
    np.testing.assert_allclose(x1, x0 + c[None], rtol=F64, atol=F64)
    np.testing.assert_allclose(energy, jnp.sum(c**2), rtol=F64)


def test_path_energy_second_call_does_not_retrace(key):
    x0 = jax.random.normal(key, (8, 3))
    metrics.path_energy(_constant_field, x0, jnp.ones(3))
    n_traces = _TRACES[0]
    _, energy = metrics.path_energy(_constant_field, 2.0 * x0, 2.0 * jnp.ones(3))
    assert _TRACES[0] == n_traces
    np.testing.assert_allclose(energy, 12.0, rtol=F64)


def test_straight_flow_has_zero_npe(key):
    # A translation flow's energy equals W2^2 between its start and end.
    x0 = jax.random.normal(key, (8, 3))
    x1, energy = metrics.path_energy(_constant_field, x0, jnp.array([1.0, 2.0, 0.0]))
    w2 = metrics.wasserstein2(x0, x1)
    assert metrics.normalized_path_energy(energy, w2) == pytest.approx(0.0, abs=1e-9)


def test_normalized_path_energy_arithmetic():
    assert metrics.normalized_path_energy(5.0, 2.0) == pytest.approx(0.25)
    assert metrics.normalized_path_energy(3.0, 2.0) == pytest.approx(0.25)
    assert metrics.normalized_path_energy(4.0, 2.0) == 0.0
    assert metrics.normalized_path_energy(jnp.asarray(9.0), 1.5) == pytest.approx(3.0)


@pytest.mark.parametrize("w2", [0.0, -1.0])
def test_normalized_path_energy_needs_positive_w2(w2):
    with pytest.raises(ValueError, match="w2 must be positive"):
        metrics.normalized_path_energy(1.0, w2)
