"""Flow-matching losses: targets, the batch loss by hand, optimality, errors.

The time samplers are tested in `test_time_samplers.py`.
"""

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_SCHEDULES

from flowlab import losses, paths, schedules
from flowlab.losses import PREDICTIONS, FlowMatchingLoss

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: each loss per path, prediction and batch shape; split over two
# workers, each worker compiled them.
pytestmark = pytest.mark.xdist_group("losses")

# Tolerances.
# float64 identities: the loss is a mean of squares of O(1-10) values.
F64 = 1e-10


def _jit(loss_fn):
    """The loss under `eqx.filter_jit`, as a train step runs it (one compilation per
    test instead of one per eager operation; `test_jit_grad_and_eager_agree`
    checks that jit and eager agree)."""
    return eqx.filter_jit(loss_fn)


def _linear_model(params, t, x, cond):
    """A per-sample linear 'network' on a flattened sample, time and label."""
    flat = params["w"] @ x.reshape(-1) + t * params["b"] + cond * params["c"]
    return flat.reshape(x.shape)


def _linear_params(key, size):
    kw, kb, kc = jax.random.split(key, 3)
    return {
        "w": jax.random.normal(kw, (size, size)) / np.sqrt(size),
        "b": jax.random.normal(kb, (size,)),
        "c": jax.random.normal(kc, (size,)),
    }


def _batch(key, n, shape):
    k0, k1, kc = jax.random.split(key, 3)
    x0 = jax.random.normal(k0, (n, *shape))
    x1 = 2.0 + jax.random.normal(k1, (n, *shape))
    cond = jax.random.normal(kc, (n,))
    return x0, x1, cond


@pytest.mark.parametrize("case", ALL_SCHEDULES, ids=str)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_target_matches_closed_form(case, prediction, key):
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (2, 3))
    x1 = jax.random.normal(k1, (2, 3))
    t = jnp.float64(np.mean(case.well_conditioned))
    path = paths.AffinePath(case.schedule)
    ps = path.sample(None, x0, x1, t)
    d_alpha, d_sigma = jax.grad(case.alpha_fn)(t), jax.grad(case.sigma_fn)(t)
    expected = {
        "velocity": d_alpha * x1 + d_sigma * x0,
        "x1": x1,
        "x0": x0,
        "epsilon": x0,
        "score": -x0 / case.sigma_fn(t),
    }[prediction]
    got = FlowMatchingLoss(path, prediction).target(ps)
    np.testing.assert_allclose(got, expected, rtol=F64, atol=F64)


@pytest.mark.parametrize(
    ("prediction", "shape"),
    # Matrix events check the mean over all event axes; one shape per prediction.
    [(p, (2, 3) if i % 2 else (3,)) for i, p in enumerate(PREDICTIONS)],
)
def test_loss_equals_hand_computed_mse(prediction, shape, key):
    case = next(c for c in ALL_SCHEDULES if c.name == "cosine")
    path = paths.AffinePath(case.schedule)
    loss_fn = FlowMatchingLoss(path, prediction)
    k_params, k_batch, k_loss = jax.random.split(key, 3)
    params = _linear_params(k_params, int(np.prod(shape)))
    x0, x1, cond = _batch(k_batch, 16, shape)

    loss, aux = _jit(loss_fn)(_linear_model, params, k_loss, x0, x1, cond)

    t = aux.t
    assert t.shape == (16,)
    assert bool(jnp.all((t >= 0) & (t <= 1)))
    # By hand, with the independent closed forms of the schedule at the loss's times.
    expand = (slice(None),) + (None,) * len(shape)
    alpha, sigma = case.alpha_fn(t)[expand], case.sigma_fn(t)[expand]
    d_alpha = jax.vmap(jax.grad(case.alpha_fn))(t)[expand]
    d_sigma = jax.vmap(jax.grad(case.sigma_fn))(t)[expand]
    xt = alpha * x1 + sigma * x0
    target = {
        "velocity": d_alpha * x1 + d_sigma * x0,
        "x1": x1,
        "x0": x0,
        "epsilon": x0,
        "score": -x0 / sigma,
    }[prediction]
    w, b, c = (np.asarray(params[k]) for k in "wbc")
    flat_xt = np.asarray(xt).reshape(16, -1)
    pred = flat_xt @ w.T + np.outer(t, b) + np.outer(cond, c)
    err = pred - np.asarray(target).reshape(16, -1)
    per_sample = np.mean(err**2, axis=1)
    np.testing.assert_allclose(aux.per_sample, per_sample, rtol=F64)
    np.testing.assert_allclose(loss, np.mean(per_sample), rtol=F64)


def test_loss_is_deterministic_in_key(key):
    loss_fn = _jit(FlowMatchingLoss(paths.AffinePath(schedules.cond_ot())))
    params = _linear_params(key, 2)
    x0, x1, cond = _batch(key, 8, (2,))
    a, aux_a = loss_fn(_linear_model, params, key, x0, x1, cond)
    b, _ = loss_fn(_linear_model, params, key, x0, x1, cond)
    c, aux_c = loss_fn(_linear_model, params, jax.random.key(1), x0, x1, cond)
    assert float(a) == float(b)
    assert not np.allclose(aux_a.t, aux_c.t)
    assert float(a) != float(c)


def test_jit_grad_and_eager_agree(key):
    loss_fn = FlowMatchingLoss(paths.AffinePath(schedules.cosine()), "x1")
    params = _linear_params(key, 3)
    x0, x1, cond = _batch(key, 8, (3,))

    def value(p):
        return loss_fn(_linear_model, p, key, x0, x1, cond)[0]

    eager_value, eager_grad = jax.value_and_grad(value)(params)
    jit_value, jit_grad = jax.jit(jax.value_and_grad(value))(params)
    np.testing.assert_allclose(jit_value, eager_value, rtol=F64)
    for name in params:
        assert bool(jnp.all(jnp.isfinite(eager_grad[name])))
        np.testing.assert_allclose(jit_grad[name], eager_grad[name], rtol=1e-9)


def test_model_without_cond(key):
    """A model that takes no `cond`: the loss by hand for `v = p x` on Cond-OT."""
    loss_fn = _jit(FlowMatchingLoss(paths.AffinePath(schedules.cond_ot())))
    x0, x1, _ = _batch(key, 8, (2,))
    loss, aux = loss_fn(lambda p, t, x, cond: p * x, jnp.asarray(0.5), key, x0, x1)
    assert loss.shape == ()
    assert aux.per_sample.shape == (8,)
    t = np.asarray(aux.t)[:, None]
    xt = t * np.asarray(x1) + (1 - t) * np.asarray(x0)
    per_sample = np.mean((0.5 * xt - (np.asarray(x1) - np.asarray(x0))) ** 2, axis=1)
    np.testing.assert_allclose(aux.per_sample, per_sample, rtol=F64)
    np.testing.assert_allclose(loss, np.mean(per_sample), rtol=F64)


@pytest.mark.parametrize("prediction", ["velocity", "x1", "x0", "score"])
def test_exact_gaussian_field_beats_a_perturbed_one(prediction, key):
    """The marginal field minimises the loss; the excess is mean(delta^2).

    For the conditional regression with per-sample loss mean_j (f_j - u_j)^2 and
    E[u | t, xt] = v*(t, xt): L(v* + delta) - L(v*) = mean(delta^2) + cross, with
    cross = (2/d) sum_j delta_j mean_i(v* - u)_ij of mean zero. Here sd(v* - u) is
    0.9 per coordinate, so over n = 4096 samples cross has sd at most
    0.3 * sqrt(2) * 0.9 / 64 = 0.006 for the deltas below; allow 0.025 (4 sd, fixed
    key). Other predictions are the same fields converted by the path.
    """
    mu, std = jnp.array([1.0, -1.0]), 0.5
    schedule = schedules.cond_ot()
    path = paths.AffinePath(schedule)
    # Times away from 0 and 1, where x1 / x0 / score conversions are well conditioned.
    loss_fn = _jit(FlowMatchingLoss(path, prediction, losses.uniform_time(0.05, 0.95)))
    k0, k1, k_loss = jax.random.split(key, 3)
    n = 4096
    x0 = jax.random.normal(k0, (n, 2))
    x1 = mu[None] + std * jax.random.normal(k1, (n, 2))
    convert = {
        "velocity": lambda t, x, v: v,
        "x1": path.velocity_to_x1,
        "x0": path.velocity_to_x0,
        "score": path.velocity_to_score,
    }[prediction]

    def model(delta, t, x, cond):
        v = helpers.gaussian_velocity(t, x, (schedule, mu, std)) + delta
        return convert(t, x, v)

    best, _ = loss_fn(model, jnp.zeros(2), k_loss, x0, x1)
    for delta in (jnp.array([0.3, 0.0]), jnp.array([0.0, -0.3]), jnp.full(2, 0.3)):
        worse, _ = loss_fn(model, delta, k_loss, x0, x1)
        assert float(worse) > float(best)
        if prediction == "velocity":
            excess = float(jnp.mean(delta**2))
            np.testing.assert_allclose(float(worse - best), excess, atol=0.025)


def test_weight_fn_multiplies_per_sample_losses(key):
    path = paths.AffinePath(schedules.cosine())
    params = _linear_params(key, 2)
    x0, x1, cond = _batch(key, 32, (2,))

    def weight(t):
        return 1.0 + 3.0 * t**2

    plain, aux = _jit(FlowMatchingLoss(path))(_linear_model, params, key, x0, x1, cond)
    weighted, aux_w = _jit(FlowMatchingLoss(path, weight_fn=weight))(
        _linear_model, params, key, x0, x1, cond
    )
    np.testing.assert_array_equal(aux_w.t, aux.t)
    np.testing.assert_allclose(aux_w.per_sample, aux.per_sample * weight(aux.t), F64)
    np.testing.assert_allclose(weighted, jnp.mean(aux_w.per_sample), rtol=F64)
    assert float(weighted) != pytest.approx(float(plain))


def test_custom_time_sampler_is_used(key):
    path = paths.AffinePath(schedules.cond_ot())
    loss_fn = _jit(
        FlowMatchingLoss(path, time_sampler=lambda k, n: jnp.full((n,), 0.25))
    )
    x0, x1, cond = _batch(key, 4, (2,))
    _, aux = loss_fn(_linear_model, _linear_params(key, 2), key, x0, x1, cond)
    np.testing.assert_array_equal(aux.t, jnp.full(4, 0.25))


# Errors -------------------------------------------------------------------------


def test_bad_prediction_raises():
    with pytest.raises(ValueError, match="prediction must be one of"):
        FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()), "noise")


class _Straight(paths.AbstractPath):
    """A non-affine path (for the prediction check only)."""

    def sample(self, key, x0, x1, t):
        return paths.PathSample(t, x0, x1, (1 - t) * x0 + t * x1, x1 - x0)


def test_non_velocity_prediction_needs_affine_path(key):
    FlowMatchingLoss(_Straight(), "velocity")  # fine
    with pytest.raises(ValueError, match="prediction='x1' needs an AffinePath"):
        FlowMatchingLoss(_Straight(), "x1")


def test_mismatched_batch_shapes_raise(key):
    loss_fn = FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    with pytest.raises(ValueError, match="x0 and x1 must have the same shape"):
        loss_fn(_linear_model, None, key, jnp.zeros((4, 2)), jnp.zeros((4, 3)))


def test_model_output_shape_mismatch_raises(key):
    loss_fn = FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="model output shape"):
        loss_fn(lambda p, t, x, c: jnp.zeros(3), None, key, x, x)
