"""Shape and type mistakes get one error in flowlab's words, before any work.

Each error names the argument, what it received (shape or type) and what was
expected; the matches below check those three parts of the message.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowlab
from flowlab import data, losses, models, paths, schedules


@pytest.fixture(scope="module")
def mlp():
    """A small MLP on 2-D events, as `(t, x, params) -> v` and its parameters."""
    model_fn, params = models.init_model(
        models.MLP(8, 1), jax.random.key(0), jnp.zeros(2)
    )

    def v(t, x, p):
        return model_fn(p, t, x, None)

    return model_fn, v, params


# ---------------------------------------------------------------------------------
# Samplers: a batch-first x0 (its first axis is always the batch)
# ---------------------------------------------------------------------------------


def test_sample_ode_with_an_unbatched_x0(mlp):
    # x0 of shape (2,) is a batch of two scalar samples to sample_ode; the model on
    # 2-D events fails on a scalar (inside flax, before this check).
    _, v, params = mlp
    with pytest.raises(ValueError, match=r"failed on one sample of x0") as err:
        flowlab.sample_ode(v, jnp.zeros(2), params, solver="euler", steps=2)
    message = str(err.value)
    assert "x0 has shape (2,)" in message  # received
    assert "one sample (a row) of x0 has shape ()" in message  # what v saw
    assert "batch-first (batch, *event_shape)" in message  # expected
    assert "x0[None]" in message  # the fix


def test_sample_ode_with_a_field_of_another_shape():
    def total(t, x, args):
        return jnp.sum(x)

    with pytest.raises(
        ValueError, match=re.escape("one sample (a row) of x0 has shape (3,)")
    ) as err:
        flowlab.sample_ode(total, jnp.zeros((4, 3)), solver="euler", steps=2)
    assert "v returned ()" in str(err.value)


def test_sample_sde_with_an_unbatched_x0(mlp):
    _, v, params = mlp
    with pytest.raises(ValueError, match=r"drift\(t, x, args\) failed") as err:
        flowlab.sample_sde(
            jax.random.key(0), v, lambda t, x, a: 0.1, jnp.zeros(2), params, steps=2
        )
    assert "x0 has shape (2,)" in str(err.value)
    assert "x0[None]" in str(err.value)


def test_log_likelihood_with_another_event_shape(mlp):
    _, v, params = mlp
    with pytest.raises(
        ValueError, match=re.escape("one sample of x1 has shape (3,)")
    ) as err:
        flowlab.log_likelihood(v, jnp.zeros((4, 3)), params, solver="euler", steps=2)
    assert "v(t, x, args) failed" in str(err.value)


def test_a_correct_batch_still_samples(mlp):
    _, v, params = mlp
    out = flowlab.sample_ode(v, jnp.zeros((1, 2)), params, solver="euler", steps=2)
    assert out.x.shape == (1, 2)


# ---------------------------------------------------------------------------------
# fit: samplers and keys
# ---------------------------------------------------------------------------------


def _fit(mlp, **kwargs):
    model_fn, _, params = mlp
    arguments = {
        "source": data.Gaussian(2),
        "target": data.Moons(),
        "key": jax.random.key(0),
        "steps": 1,
        "batch_size": 8,
        "optimizer": optax.sgd(1e-3),
        "progress": False,
        "handle_signals": False,
    }
    loss = losses.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    return flowlab.fit(model_fn, params, loss, **{**arguments, **kwargs})


@pytest.mark.parametrize("array", [jnp.zeros((100, 2)), np.zeros((100, 2))])
def test_fit_with_an_array_target(mlp, array):
    with pytest.raises(
        TypeError, match=r"target must be a flowlab\.data\.AbstractSampler"
    ) as err:
        _fit(mlp, target=array)
    assert "got an array of shape (100, 2)" in str(err.value)
    assert "target=flowlab.data.Empirical(points)" in str(err.value)


def test_fit_with_an_array_source(mlp):
    with pytest.raises(
        TypeError, match=r"source must be a flowlab\.data\.AbstractSampler or None"
    ) as err:
        _fit(mlp, source=jnp.zeros((100, 2)))
    assert "got an array of shape (100, 2)" in str(err.value)
    assert "source=flowlab.data.Empirical(points)" in str(err.value)


def test_fit_with_an_int_key(mlp):
    with pytest.raises(
        TypeError,
        match=re.escape("key must be a JAX PRNG key (jax.random.key(seed)), got int 0"),
    ):
        _fit(mlp, key=0)


# ---------------------------------------------------------------------------------
# path.sample: one sample
# ---------------------------------------------------------------------------------

PATH = paths.AffinePath(schedules.cond_ot())


def test_path_sample_with_a_batch_of_times():
    x = jnp.zeros((5, 2))
    with pytest.raises(ValueError, match=r"t must be a scalar") as err:
        PATH.sample(None, x, x, jnp.full(5, 0.5))
    message = str(err.value)
    assert "t of shape (5,)" in message
    assert "x1 (5, 2)" in message
    assert "jax.vmap(path.sample)" in message


def test_path_sample_with_a_batched_x0_and_one_x1():
    with pytest.raises(
        ValueError, match=r"x0 and x1 must have the same event shape"
    ) as err:
        PATH.sample(None, jnp.zeros((5, 2)), jnp.zeros(2), 0.5)
    message = str(err.value)
    assert "x0 (5, 2) and x1 (2,)" in message
    assert "path.sample takes one sample" in message


def test_path_sample_takes_any_event_shape():
    # Same shapes and a scalar t are one sample: an image (C, H, W), or a (5, 2)
    # event, which is indistinguishable from a batch, so it is not refused.
    image = jnp.ones((3, 4, 4))
    assert PATH.sample(None, image, image, 0.5).xt.shape == (3, 4, 4)
    assert PATH.sample(None, jnp.zeros((5, 2)), jnp.ones((5, 2)), 0.5).xt.shape == (
        5,
        2,
    )


# ---------------------------------------------------------------------------------
# Schedule(alpha_fn, sigma_fn): the endpoints
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpha_fn", "sigma_fn", "got", "expected"),
    [
        (lambda t: 1 - t, lambda t: t, "alpha_fn(0) = 1", "alpha_0 = 0"),
        (lambda t: t, lambda t: 2 - 2 * t, "sigma_fn(0) = 2", "sigma_0 = 1"),
        (lambda t: 0.5 * t, lambda t: 1 - t, "alpha_fn(1) = 0.5", "alpha_1 = 1"),
        (lambda t: t, lambda t: 1 - 0.9 * t, "sigma_fn(1) = 0.1", "sigma_1 = 0"),
    ],
    ids=["reversed", "sigma_0", "alpha_1", "sigma_1"],
)
def test_a_schedule_with_a_wrong_endpoint(alpha_fn, sigma_fn, got, expected):
    # The message names the endpoint, its value and the value it must have.
    with pytest.raises(ValueError, match=re.escape(got)) as err:
        schedules.Schedule(alpha_fn, sigma_fn)
    assert f"a schedule needs {expected}" in str(err.value)


def test_a_reversed_schedule_is_told_it_runs_backwards():
    with pytest.raises(ValueError, match=r"diffusion time"):
        schedules.Schedule(lambda t: 1 - t, lambda t: t)


def test_schedules_near_their_endpoints_are_accepted():
    # Lipman's sigma_1 = 1e-4; the VP-like alpha_0 = e^-5 (within the default 0.01).
    schedules.Schedule(lambda t: t, lambda t: 1 - (1 - 1e-4) * t)
    schedules.Schedule(lambda t: t + math.exp(-5) * (1 - t), lambda t: 1 - t)
    loose = schedules.Schedule(lambda t: 2 * t, lambda t: 1 - t, endpoint_tol=math.inf)
    assert float(loose(0.5).alpha) == 1.0


def test_a_traced_schedule_is_not_checked():
    # Built inside jit from a traced value: the endpoints are unknown until run.
    @jax.jit
    def alpha_half(scale):
        return schedules.Schedule(lambda t: scale * t, lambda t: 1 - t)(0.5).alpha

    assert float(alpha_half(1.0)) == 0.5
