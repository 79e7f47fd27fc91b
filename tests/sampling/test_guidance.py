"""Classifier-free guidance: identities in w and t, exact blob fields, a trained MLP."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowlab as fl
from flowlab import data, models, paths, schedules
from flowlab.conditioning import Labels, Vectors
from flowlab.sampling import guided_field, velocity_field

# Tolerances.
# Identities in float64: v_null + w (v_c - v_null) against v_c at w = 1 (or v_null
# at w = 0) differs by a few ulps of |v| ~ 1-10: 1e-12.
IDENTITY_TOL = 1e-12
# Exact blob fields integrated with dopri5 at rtol = atol = 1e-7: the samples are
# exact to ~1e-6; the statistics below are then limited by sampling noise. Per
# class 500 samples of std S: the mean's standard error is S / sqrt(500) = 0.013,
# allowed 6x (0.08); the sample std's relative error is ~ 1 / sqrt(2 * 1000),
# allowed 6x (0.13 * S = 0.04).
MEAN_TOL, STD_TOL = 0.08, 0.04

K, RADIUS, S = 4, 4.0, 0.3
BLOBS = data.LabelledBlobs(K, RADIUS, S)
SCHEDULE = schedules.cond_ot()


def _blob_field(t, x, mu):
    """The exact marginal field of N(mu, S^2 I) on an affine path (DESIGN.md)."""
    s = SCHEDULE(t)
    coef = (s.alpha * s.d_alpha * S**2 + s.sigma * s.d_sigma) / (
        s.alpha**2 * S**2 + s.sigma**2
    )
    return s.d_alpha * mu + coef * (x - s.alpha * mu)


def _mixture_field(t, x):
    """The exact field of the equal-weight mixture: posterior-weighted blob fields."""
    s = SCHEDULE(t)
    var = s.alpha**2 * S**2 + s.sigma**2
    mus = BLOBS.centres
    logw = -jnp.sum((x[None] - s.alpha * mus) ** 2, axis=1) / (2 * var)
    w = jax.nn.softmax(logw)
    fields = jax.vmap(lambda mu: _blob_field(t, x, mu))(mus)
    return w @ fields


def _exact_model(params, t, x, cond):
    """v(t, x | k) of blob k, and the mixture's field for the null label K."""
    del params
    v_k = _blob_field(t, x, BLOBS.centres[jnp.minimum(cond, K - 1)])
    return jnp.where(cond == K, _mixture_field(t, x), v_k)


def _random_model(key):
    """A small random MLP with labels embedded (any conditional field will do)."""
    module = models.MLP(width=16, depth=2, num_classes=K + 1)
    return models.init_model(module, key, jnp.zeros(2), jnp.zeros((), jnp.int32))


def _call(v, t, x, label, params):
    c = Labels(K).to_state(jnp.asarray(label, jnp.int32), x.dtype)
    vx, vc = v(jnp.asarray(t), (x, c), params)
    assert float(jnp.max(jnp.abs(vc))) == 0.0
    return vx


# ---------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------


@given(
    t=st.floats(0.0, 1.0),
    w=st.floats(-2.0, 6.0),
    label=st.integers(0, K - 1),
    lo=st.floats(0.0, 1.0),
    width=st.floats(0.0, 1.0),
)
def test_guided_field_is_the_cfg_mix_inside_and_conditional_outside(
    t, w, label, lo, width
):
    model_fn, params = _random_model(jax.random.key(1))
    hi = min(1.0, lo + width)
    x = jnp.array([0.3, -1.2])
    v_c = model_fn(params, t, x, jnp.int32(label))
    v_null = model_fn(params, t, x, jnp.int32(K))
    interval = (lo, hi)
    got = _call(
        guided_field(model_fn, Labels(K), w, interval=interval), t, x, label, params
    )
    expected = v_null + w * (v_c - v_null) if lo <= t <= hi else v_c
    np.testing.assert_allclose(got, expected, rtol=0, atol=IDENTITY_TOL)
    for scale, ref in ((1.0, v_c), (0.0, v_null)):
        got = _call(guided_field(model_fn, Labels(K), scale), t, x, label, params)
        np.testing.assert_allclose(got, ref, rtol=0, atol=IDENTITY_TOL)


@pytest.mark.parametrize("prediction", ["x1", "epsilon", "score"])
def test_predictions_combine_as_velocities(prediction):
    # On an affine path combining predictions or velocities is the same.
    model_fn, params = _random_model(jax.random.key(2))
    path = paths.AffinePath(schedules.vp())
    w, label, x = 2.5, 1, jnp.array([0.5, 0.1])
    v = guided_field(model_fn, Labels(K), w, path=path, prediction=prediction)
    one = lambda c: velocity_field(  # noqa: E731
        lambda t, x, p: model_fn(p, t, x, jnp.int32(c)), path, prediction
    )
    for t in (0.0, 0.3, 0.9, 1.0):
        v_c, v_null = one(label)(t, x, params), one(K)(t, x, params)
        np.testing.assert_allclose(
            _call(v, t, x, label, params),
            v_null + w * (v_c - v_null),
            rtol=1e-10,
            atol=IDENTITY_TOL,
        )


def test_vector_conditions_ride_in_the_state():
    cond = Vectors(2)

    def model_fn(params, t, x, c):  # c = [c0, c1, indicator]
        return params * c[:2] * c[2] + (1 - c[2]) * x

    v = guided_field(model_fn, cond, 3.0)
    x0 = jnp.ones((3, 2))
    state = v.state(x0, jnp.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    out = fl.sample_ode(v, state, jnp.asarray(1.0), solver="euler", steps=1)
    # One Euler step: x1 = x0 + v_null + 3 (v_c - v_null), v_null = x0 = 1.
    expected = 1 + 1 + 3 * (jnp.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]) - 1)
    np.testing.assert_allclose(out.x[0], expected, rtol=0, atol=IDENTITY_TOL)


def test_a_new_scale_does_not_recompile():
    traces = []

    def counted(params, t, x, c):
        traces.append(1)
        return _exact_model(params, t, x, c)

    x0 = jnp.zeros((4, 2))
    labels = jnp.arange(4)
    for w in (1.0, 2.0, 4.0):
        v = guided_field(counted, Labels(K), w, interval=(0.1, 0.9 + w / 100))
        fl.sample_ode(v, v.state(x0, labels), None, solver="euler", steps=4)
        if w == 1.0:
            n = len(traces)
    assert len(traces) == n


# ---------------------------------------------------------------------------------
# Exact fields of Gaussian blobs
# ---------------------------------------------------------------------------------


def _exact_samples(w, n=2000):
    x0 = jax.random.normal(jax.random.key(4), (n, 2))
    labels = jnp.arange(n) % K
    v = guided_field(_exact_model, Labels(K), w)
    out = fl.sample_ode(
        v, v.state(x0, labels), None, solver="dopri5", rtol=1e-7, atol=1e-7
    )
    return np.asarray(out.x[0]), np.asarray(labels)


def test_exact_conditional_field_samples_the_class():
    x, labels = _exact_samples(1.0)
    assert np.all(np.asarray(BLOBS.nearest(jnp.asarray(x))) == labels)
    for k in range(K):
        xs = x[labels == k]
        np.testing.assert_allclose(xs.mean(0), BLOBS.centres[k], rtol=0, atol=MEAN_TOL)
        np.testing.assert_allclose(xs.std(0), S, rtol=0, atol=STD_TOL)


def test_exact_unconditional_field_samples_the_mixture():
    x, labels = _exact_samples(0.0)
    nearest = np.asarray(BLOBS.nearest(jnp.asarray(x)))
    # The labels are ignored: each blob receives a quarter of every label's rows
    # (500 per label; the share's standard error 0.019, allowed 6x).
    for k in range(K):
        share = np.bincount(nearest[labels == k], minlength=K) / 500
        np.testing.assert_allclose(share, 1 / K, rtol=0, atol=0.12)


# ---------------------------------------------------------------------------------
# Acceptance: a trained MLP
# ---------------------------------------------------------------------------------


def test_trained_guidance_lands_in_the_class_blob():
    # Four well-separated blobs, a small MLP, 400 steps with cond dropout 0.2
    # (about 4 s on 2 CPU cores); fixed seeds throughout.
    blobs = BLOBS
    module = models.MLP(
        width=64,
        depth=3,
        activation="silu",
        time_embedding="sinusoidal",
        num_classes=blobs.condition.embedding_size,
    )
    model_fn, params = models.init_model(
        module, jax.random.key(1), jnp.zeros(2, jnp.float32), jnp.zeros((), jnp.int32)
    )
    loss = fl.FlowMatchingLoss(paths.AffinePath(SCHEDULE))
    result = fl.fit(
        model_fn,
        params,
        loss,
        source=data.Gaussian(2),
        target=blobs,
        key=jax.random.key(0),
        steps=400,
        batch_size=256,
        optimizer=optax.adam(3e-3),
        steps_per_call=50,
        log_every=400,
        progress=False,
        handle_signals=False,
        cond_dropout=0.2,
    )
    params = result.state.ema_params
    n = 2000
    x0 = jax.random.normal(jax.random.key(3), (n, 2), jnp.float32)
    labels = jnp.arange(n) % K

    def draw(w):
        v = guided_field(model_fn, blobs.condition, w)
        out = fl.sample_ode(v, v.state(x0, labels), params, solver="euler", steps=20)
        return np.asarray(blobs.nearest(out.x[0]))

    # The acceptance: at least 95% of guided samples in their blob
    # (measured 100% at w = 2, 99.9% at w = 1, in float32).
    assert np.mean(draw(2.0) == np.asarray(labels)) >= 0.95
    # The null condition learnt the mixture: each blob gets about a quarter of the
    # unguided (w = 0) samples (measured 0.24-0.26 in float32; allowed 0.25 +- 0.1).
    shares = np.bincount(draw(0.0), minlength=K) / n
    np.testing.assert_allclose(shares, 1 / K, rtol=0, atol=0.1)


# ---------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------


def test_guidance_errors_name_the_argument():
    model_fn = _exact_model
    with pytest.raises(ValueError, match="guidance needs the model's condition"):
        guided_field(model_fn, None, 2.0)
    with pytest.raises(TypeError, match="condition must be a flowlab.conditioning"):
        guided_field(model_fn, 4, 2.0)
    for bad in ((0.5, 0.2), (-0.1, 1.0), (0.0, 1.5), (0.3,), "all"):
        with pytest.raises(ValueError, match=r"interval must be a pair \(t_lo, t_hi\)"):
            guided_field(model_fn, Labels(K), 2.0, interval=bad)
    for bad in (float("nan"), float("inf"), "2", None):
        with pytest.raises(ValueError, match="scale must be a finite float"):
            guided_field(model_fn, Labels(K), bad)
    with pytest.raises(ValueError, match="pass path="):
        guided_field(model_fn, Labels(K), 2.0, prediction="x1")
    v = guided_field(model_fn, Labels(K), 2.0)
    x0 = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match=r"one label per row, of shape \(3,\)"):
        v.state(x0, jnp.zeros((3, 1), int))
    with pytest.raises(TypeError, match="integer class labels"):
        v.state(x0, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"label 4, outside 0\.\.3"):
        v.state(x0, jnp.array([0, 1, 4]))
