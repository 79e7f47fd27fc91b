"""Trajectory distillation: teacher trajectories on a grid, the map regressed on them.

On Gaussian data the teacher's trajectories are known in closed form
(tests/flowmaps/gaussian_maps.py): X(0, t, x0) = t mu + sigma_t x0. The solved
trajectories must be those, the loss must vanish on the exact map, the jumps a
batch draws must be the ordered grid pairs, and bad input is refused before any
solve. The trained map is tested in test_trajectory_training.py.
"""

import collections

import gaussian_maps as gm
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from flowlab import data, flowmaps, models, training

TEACHER = flowmaps.Teacher(gm.exact_teacher_field)


def _exact_trajectories(x0, grid):
    ts = jnp.linspace(0.0, 1.0, grid + 1)
    along = jax.vmap(lambda x: jax.vmap(lambda t: gm.exact_map(0.0, t, x))(ts))
    return along(x0)


def _rms(a, b):
    return float(jnp.sqrt(jnp.mean(jnp.sum((a - b) ** 2, axis=-1))))


@pytest.mark.parametrize("grid", [3, 8])
def test_teacher_trajectories_are_the_teachers_solutions_on_the_grid(grid):
    key = jax.random.key(0)
    paths = flowmaps.teacher_trajectories(
        key, TEACHER, data.Gaussian(2), 300, grid=grid, solver="rk4", steps=64,
        chunk=128,
    )  # fmt: skip
    assert paths.shape == (300, grid + 1, 2)
    x0 = data.Gaussian(2).sample(key, 300)
    np.testing.assert_array_equal(paths[:, 0], x0)
    np.testing.assert_allclose(paths, _exact_trajectories(x0, grid), atol=1e-6)


def test_teacher_trajectories_with_one_interval_are_reflow_pairs():
    key, source = jax.random.key(3), data.Gaussian(2)
    pairs = flowmaps.reflow_pairs(key, TEACHER, source, 64, solver="euler", steps=20)
    paths = flowmaps.teacher_trajectories(
        key, TEACHER, source, 64, grid=1, solver="euler", steps=20
    )
    np.testing.assert_allclose(paths, pairs, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(
    grid=st.integers(1, 12),
    batch=st.sampled_from([1, 5, 64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_each_row_jumps_between_two_grid_points_forward(grid, batch, seed):
    paths = jax.random.normal(jax.random.key(seed), (batch, grid + 1, 3))
    times, jump, target = flowmaps.TrajectoryDistillation().prepare(
        jax.random.key(seed + 1), paths
    )
    i, j = np.asarray(jump.start), np.asarray(jump.end)
    assert np.all((0 <= i) & (i < j) & (j <= grid))
    np.testing.assert_allclose(times.t, i / grid, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(times.s, j / grid, rtol=1e-6, atol=1e-7)
    rows = np.arange(batch)
    np.testing.assert_array_equal(jump.xt, np.asarray(paths)[rows, i])
    np.testing.assert_array_equal(target, np.asarray(paths)[rows, j])


def test_the_jumps_are_uniform_over_the_ordered_pairs():
    """36 pairs on a grid of 8: each drawn 1/36 of the time (chi-square, 35 dof)."""
    n = 36_000
    _, jump, _ = flowmaps.TrajectoryDistillation().prepare(
        jax.random.key(0), jnp.zeros((n, 9, 1))
    )
    counts = collections.Counter(
        zip(jump.start.tolist(), jump.end.tolist(), strict=True)
    )
    assert len(counts) == 36
    chi2 = sum((c - n / 36) ** 2 / (n / 36) for c in counts.values())
    assert chi2 < 66.6  # the 0.999 quantile of chi-square with 35 dof


def test_the_loss_vanishes_on_the_exact_map_and_not_on_a_wrong_one():
    x0 = jax.random.normal(jax.random.key(0), (256, 2))
    paths = _exact_trajectories(x0, 8)
    loss = flowmaps.TrajectoryDistillation()
    value, aux = loss(gm.exact_model_fn, None, jax.random.key(1), paths)
    assert float(value) < 1e-10
    assert aux.per_sample.shape == (256,)

    def shifted(params, times, x, cond=None):  # the exact average velocity + 0.1
        return gm.exact_model_fn(params, times, x, cond) + 0.1

    # X is off by 0.1 (s - t) per coordinate: the mean of 0.01 (s - t)^2 over
    # the 36 pairs is 0.01 * E[(j - i)^2] / 64 = 0.01 * 15 / 64.
    wrong, _ = loss(shifted, None, jax.random.key(1), paths)
    assert 0.8 * 0.01 * 15 / 64 < float(wrong) < 1.2 * 0.01 * 15 / 64


def test_fit_refuses_a_source_and_a_batch_that_is_not_trajectories():
    net = models.MLP(width=8, depth=1, time_embedding="identity")
    _, model_fn, params = flowmaps.init_flow_map(net, jax.random.key(0), jnp.zeros(2))
    paths = jnp.zeros((32, 9, 2))
    kwargs = {"key": jax.random.key(0), "steps": 2, "batch_size": 8, "progress": False}
    with pytest.raises(ValueError, match="pass source=None"):
        training.fit(
            model_fn, params, flowmaps.TrajectoryDistillation(),
            source=data.Gaussian(2), target=data.Empirical(paths), **kwargs,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"shape \(batch, grid \+ 1, \*event\)"):
        training.fit(
            model_fn, params, flowmaps.TrajectoryDistillation(), source=None,
            target=data.Gaussian(2), **kwargs,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"grid": 0}, ValueError, "grid"),
        ({"n": 0}, ValueError, "n must"),
        ({"source": data.Gaussian(3)}, ValueError, "teacher"),
        ({"teacher": gm.exact_teacher_field}, TypeError, "Teacher"),
    ],
)
def test_teacher_trajectories_refuses_bad_arguments_before_solving(
    kwargs, error, message
):
    args = {"teacher": TEACHER, "source": data.Gaussian(2), "n": 16, "grid": 8}
    with pytest.raises(error, match=message):
        flowmaps.teacher_trajectories(jax.random.key(0), **{**args, **kwargs})
