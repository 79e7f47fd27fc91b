"""Interpolant and multimarginal losses: targets and values by hand, the exact
conditional expectations minimise them, weights, the trainer, errors.

Ground truth as in tests/paths/test_interpolants.py: x0 ~ N(0, I), x1 ~ N(mu, s^2 I)
and z ~ N(0, I) independent make x_t Gaussian with mean m = beta mu and variance
V = alpha^2 + beta^2 s^2 + gamma^2, and b = m' + V'/(2V) (x - m), eta = gamma/V (x - m),
s = -(x - m)/V, v = b - gamma' eta. For any field f and perturbation d(t, x),
E w|f + d - y|^2 - E w|f - y|^2 = E w|d|^2 + 2 E w d.(f - y), and the cross term has
mean zero exactly when f(t, x) = E[y | t, x]: the test compares the Monte-Carlo
difference with E w|d|^2 within Z standard errors of the cross term.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowlab
from flowlab import data, losses, paths
from flowlab.losses import InterpolantLoss, MultimarginalLoss
from flowlab.training import init_state, make_train_step

# Tolerances.
F64 = 1e-10  # float64 identities: means of squares of O(1-100) values
Z = 5.0  # standard errors for statistical checks with fixed keys

MU, STD = jnp.array([1.5, -1.0]), 0.5


def _gaussian_batch(key, n):
    k0, k1 = jax.random.split(key)
    x1 = MU[None] + STD * jax.random.normal(k1, (n, 2))
    return jax.random.normal(k0, (n, 2)), x1


def exact_fields(path, t, x):
    """(b, eta, s, v) for the Gaussian pair; coefficients from the path (checked
    against closed forms in tests/paths/test_interpolants.py)."""

    def mv(t):
        c = path.coefficients(t)
        return c.beta * MU, c.alpha**2 + c.beta**2 * STD**2 + c.gamma**2

    (m, var), (dm, dv) = jax.jvp(mv, (t,), (jnp.ones_like(t),))
    q, dq = path.noise_scale(t)
    score = -(x - m) / var
    b = dm - 0.5 * dv * score
    return b, -q * score, score, b + dq * q * score


def _perturbation(size, t, x):
    """d(t, x): depends on x and t, so it correlates with a wrong target's bias."""
    return size * jnp.array([1.0, -2.0]) * t * (1 + x)


def exact_model(prediction, path):
    def model_fn(params, t, x, cond):
        b, eta, score, v = exact_fields(path, t, x)
        delta = _perturbation(params, t, x)
        if prediction == "two_field":
            return v + delta, eta - delta
        return {"velocity": b, "denoiser": eta, "score": score}[prediction] + delta

    return model_fn


PATHS = {
    "schrodinger_bridge": paths.schrodinger_bridge(0.8),
    "trigonometric_sin2": paths.trigonometric_interpolant(paths.sin2_gamma(0.7)),
    "one_sided": paths.one_sided_interpolant(),
}


# Every prediction on SB-CFM's path; the one-sided kind (noise = x0) and a second
# gamma family on the predictions whose targets depend on them.
MINIMISER_CASES = [
    *(("schrodinger_bridge", p) for p in losses.INTERPOLANT_PREDICTIONS),
    ("one_sided", "denoiser"),
    ("one_sided", "two_field"),
    ("trigonometric_sin2", "score"),
]


@pytest.mark.parametrize(("path_name", "prediction"), MINIMISER_CASES)
def test_exact_fields_minimise_the_loss(path_name, prediction, key):
    path = PATHS[path_name]
    weight = losses.noise_weight(path) if prediction == "score" else None
    loss = InterpolantLoss(path, prediction, weight_fn=weight)
    model_fn = exact_model(prediction, path)
    n = 20_000
    x0, x1 = _gaussian_batch(key, n)
    t, ps, target = jax.jit(loss.prepare)(jax.random.fold_in(key, 1), x0, x1)

    @jax.jit
    def excess(size):
        """Loss(f + d) - loss(f), E w|d|^2 and the SE of the cross term."""
        best, _ = loss.regress(model_fn, jnp.zeros_like(size), t, ps.xt, target)
        worse, _ = loss.regress(model_fn, size, t, ps.xt, target)
        d = jax.vmap(_perturbation, (None, 0, 0))(size, t, ps.xt)
        w = jnp.ones(n) if weight is None else jax.vmap(weight)(t)
        fields = jax.vmap(lambda t, x: exact_fields(path, t, x))(t, ps.xt)
        if prediction == "two_field":
            residuals = ((fields[3] - target[:, 0], d), (fields[1] - target[:, 1], -d))
        else:
            i = ("velocity", "denoiser", "score").index(prediction)
            residuals = ((fields[i] - target, d),)
        sq = sum(jnp.mean(dd**2, axis=1) for _, dd in residuals)
        cross = sum(jnp.mean(2 * dd * r, axis=1) for r, dd in residuals)
        return worse - best, jnp.mean(w * sq), jnp.std(w * cross) / np.sqrt(n)

    for size in (0.1, -0.1):
        diff, want, se = excess(jnp.float64(size))
        assert float(diff) > 0
        assert abs(float(diff - want)) <= Z * float(se) + F64, (size, diff, want, se)


def _linear_model(params, t, x, cond):
    return params["w"] @ x + t * params["b"]


def _params(key):
    kw, kb = jax.random.split(key)
    return {"w": jax.random.normal(kw, (2, 2)), "b": jax.random.normal(kb, (2,))}


@pytest.mark.parametrize("prediction", ["velocity", "score", "two_field"])
def test_targets_and_loss_by_hand(prediction, key):
    """(The denoiser's target z is checked by the minimiser test.)"""
    path = paths.linear_interpolant(paths.quadratic_gamma(1.5))
    loss = InterpolantLoss(path, prediction, weight_fn=lambda t: 1 + t)
    k_p, k_q, k_batch, k_loss = jax.random.split(key, 4)
    p, q = _params(k_p), _params(k_q)
    x0, x1 = _gaussian_batch(k_batch, 16)

    def two_field_model(params, t, x, cond):  # a pair of outputs
        return (
            _linear_model(params[0], t, x, cond),
            _linear_model(params[1], t, x, cond),
        )

    def stacked_model(params, t, x, cond):  # or one stacked array
        return jnp.stack(two_field_model(params, t, x, cond))

    model_fn, params = (
        (two_field_model, (p, q)) if prediction == "two_field" else (_linear_model, p)
    )
    value, aux = jax.jit(lambda *a: loss(model_fn, *a))(params, k_loss, x0, x1)
    t, ps, target = jax.jit(loss.prepare)(k_loss, x0, x1)
    np.testing.assert_array_equal(aux.t, t)
    assert bool(jnp.all((t >= 1e-3) & (t <= 1 - 1e-3)))
    # Targets from the closed forms: gamma = 1.5 t (1 - t), gamma' = 1.5 (1 - 2t).
    tc = t[:, None]
    gamma, d_gamma = 1.5 * tc * (1 - tc), 1.5 * (1 - 2 * tc)
    np.testing.assert_allclose(ps.xt, (1 - tc) * x0 + tc * x1 + gamma * ps.z, atol=F64)
    want = {
        "velocity": x1 - x0 + d_gamma * ps.z,
        "denoiser": ps.z,
        "score": -ps.z / gamma,
        "two_field": jnp.stack([x1 - x0, ps.z], axis=1),
    }[prediction]
    np.testing.assert_allclose(target, want, rtol=F64, atol=F64)
    # The loss: mean over the event (and summed over the two fields), times w(t).
    if prediction == "two_field":
        pred_v = jax.vmap(_linear_model, (None, 0, 0, None))(p, t, ps.xt, None)
        pred_e = jax.vmap(_linear_model, (None, 0, 0, None))(q, t, ps.xt, None)
        per = jnp.mean((pred_v - want[:, 0]) ** 2, 1)
        per = per + jnp.mean((pred_e - want[:, 1]) ** 2, 1)
    else:
        pred = jax.vmap(_linear_model, (None, 0, 0, None))(p, t, ps.xt, None)
        per = jnp.mean((pred - want) ** 2, 1)
    np.testing.assert_allclose(aux.per_sample, per * (1 + t), rtol=F64)
    np.testing.assert_allclose(value, jnp.mean(per * (1 + t)), rtol=F64)
    if prediction == "two_field":
        stacked, _ = loss.regress(stacked_model, params, t, ps.xt, target)
        np.testing.assert_allclose(stacked, value, rtol=F64)


def test_noise_weight_bounds_the_score_loss(key):
    """lambda = gamma^2: the weighted score error is |gamma s_theta + z|^2."""
    path = paths.schrodinger_bridge(1.0)
    weight = losses.noise_weight(path)
    np.testing.assert_allclose(weight(jnp.float64(0.25)), 0.25 * 0.75, rtol=F64)
    loss = InterpolantLoss(path, "score", weight_fn=weight)
    x0, x1 = _gaussian_batch(key, 64)
    params = _params(key)
    t, ps, target = jax.jit(loss.prepare)(key, x0, x1)
    _, aux = jax.jit(lambda *a: loss.regress(_linear_model, *a))(
        params, t, ps.xt, target
    )
    pred = jax.vmap(_linear_model, (None, 0, 0, None))(params, t, ps.xt, None)
    gamma = jnp.sqrt(t * (1 - t))[:, None]
    np.testing.assert_allclose(
        aux.per_sample, jnp.mean((gamma * pred + ps.z) ** 2, 1), rtol=1e-8
    )
    one_sided = losses.noise_weight(paths.one_sided_interpolant())
    np.testing.assert_allclose(one_sided(jnp.float64(0.25)), 0.75**2, rtol=F64)


def test_flow_matching_loss_takes_an_interpolant(key):
    """FlowMatchingLoss(prediction="velocity") regresses onto ut as well."""
    path = paths.schrodinger_bridge(0.5)
    x0, x1 = _gaussian_batch(key, 8)
    fm = flowlab.FlowMatchingLoss(path, "velocity", losses.uniform_time(0.1, 0.9))
    il = InterpolantLoss(path, "velocity", losses.uniform_time(0.1, 0.9))
    params = _params(key)
    np.testing.assert_allclose(
        fm(_linear_model, params, key, x0, x1)[0],
        il(_linear_model, params, key, x0, x1)[0],
        rtol=F64,
    )


def test_plugs_into_the_trainer():
    """make_train_step takes the loss as is, with micro-batches and a pair model."""
    with jax.enable_x64(False):
        params = (_params(jax.random.key(0)), _params(jax.random.key(1)))

        def model_fn(params, t, x, cond):
            return _linear_model(params[0], t, x, cond), jnp.tanh(
                _linear_model(params[1], t, x, cond)
            )

        loss = InterpolantLoss(paths.schrodinger_bridge(0.5), "two_field")
        opt = optax.adam(1e-2)
        step = jax.jit(
            make_train_step(
                model_fn,
                loss,
                opt,
                source=data.Gaussian(2),
                batch_size=32,
                micro_batches=2,
            )
        )
        state = init_state(jax.random.key(2), params, opt)
        state, metrics = step(state, data.Moons())
        state, metrics = step(state, data.Moons())
        assert int(state.step) == 2
        assert bool(jnp.isfinite(metrics["loss"]))
        moved = jax.tree_util.tree_map(
            lambda a, b: bool(jnp.any(a != b)), state.params, params
        )
        assert all(jax.tree_util.tree_leaves(moved))


def test_interpolant_loss_errors(key):
    with pytest.raises(TypeError, match="path must be a stochastic interpolant"):
        InterpolantLoss(paths.AffinePath(flowlab.schedules.cond_ot()))
    with pytest.raises(ValueError, match="prediction must be one of"):
        InterpolantLoss(paths.linear_interpolant(), "x1")
    loss = InterpolantLoss(paths.linear_interpolant(paths.sin2_gamma()), "two_field")
    with pytest.raises(ValueError, match="x0 and x1 must have the same shape"):
        loss.prepare(key, jnp.zeros((4, 2)), jnp.zeros((4, 3)))
    x = jnp.zeros((4, 2))
    t, ps, target = loss.prepare(key, x, x)
    with pytest.raises(ValueError, match=r"model output shape \(2,\) does not match"):
        loss.regress(lambda p, t, x, c: x, None, t, ps.xt, target)


# ---------------------------------------------------------------------------------
# Multimarginal
# ---------------------------------------------------------------------------------

MUS = jnp.array([[0.0, 0.0], [3.0, -1.0], [-2.0, 2.0]])
STDS = jnp.array([1.0, 0.5, 0.8])


def _smooth_gamma(alpha):
    return 0.6 * (1 - jnp.sum(alpha**2))


def _marginals(key, n):
    noise = jax.random.normal(key, (n, 3, 2))
    return MUS[None] + STDS[None, :, None] * noise


def exact_g(with_gamma):
    """g_k = mu_k + alpha_k s_k^2 / S^2 (x - m) (+ eta = gamma / S^2 (x - m))."""

    def model_fn(params, alpha, x, cond):
        gamma = _smooth_gamma(alpha) if with_gamma else 0.0
        m = jnp.tensordot(alpha, MUS, axes=1)
        var = jnp.sum(alpha**2 * STDS**2) + gamma**2
        out = MUS + (alpha * STDS**2 / var)[:, None] * (x - m)[None]
        if with_gamma:
            out = jnp.concatenate([out, (gamma / var * (x - m))[None]])
        return out + params  # params: a perturbation of every slice

    return model_fn


@pytest.mark.parametrize("with_gamma", [True])  # the denoiser slot too
def test_multimarginal_loss_by_hand_and_minimised_by_exact_g(with_gamma, key):
    mmi = paths.MultimarginalInterpolant(3, _smooth_gamma if with_gamma else None)
    loss = MultimarginalLoss(mmi)
    n = 20_000
    xs = _marginals(key, n)
    alpha, ps, target = jax.jit(loss.prepare)(jax.random.fold_in(key, 1), xs)
    assert alpha.shape == (n, 3)
    assert target.shape == (n, mmi.num_outputs, 2)
    np.testing.assert_array_equal(target[:, :3], xs)
    model_fn = exact_g(with_gamma)
    zero = jnp.zeros((mmi.num_outputs, 2))
    regress = jax.jit(lambda *a: loss.regress(model_fn, *a))
    best, aux = regress(zero, alpha, ps.xt, target)
    # By hand: sum over slices of the mean over the event.
    pred = jax.jit(jax.vmap(model_fn, (None, 0, 0, None)))(zero, alpha, ps.xt, None)
    per = jnp.sum(jnp.mean((pred - target) ** 2, axis=2), axis=1)
    np.testing.assert_allclose(aux.per_sample, per, rtol=F64)
    np.testing.assert_allclose(best, jnp.mean(per), rtol=F64)
    # The exact g_k (and eta) are the minimisers: see the module docstring.
    d = 0.1 * jnp.ones_like(zero).at[:, 1].set(-2.0)
    worse, _ = regress(d, alpha, ps.xt, target)
    sq = jnp.sum(jnp.mean(d**2, axis=1))
    cross = jnp.sum(jnp.mean(2 * d[None] * (pred - target), axis=2), axis=1)
    se = float(jnp.std(cross) / np.sqrt(n))
    assert abs(float(worse - best) - float(sq)) <= Z * se + F64
    # A sequence of K + 1 batches is the same as the stacked array.
    again = jax.jit(loss.prepare)(
        jax.random.fold_in(key, 1), [xs[:, k] for k in range(3)]
    )
    np.testing.assert_array_equal(again[0], alpha)


def test_multimarginal_loss_errors(key):
    loss = MultimarginalLoss(paths.MultimarginalInterpolant(3))
    with pytest.raises(ValueError, match=r"xs must have shape \(batch, 3, \*event\)"):
        loss.prepare(key, jnp.zeros((8, 2, 2)))
    with pytest.raises(ValueError, match="xs must hold 3 marginal batches"):
        loss.prepare(key, [jnp.zeros((8, 2))] * 2)
    with pytest.raises(TypeError, match="MultimarginalInterpolant"):
        MultimarginalLoss(paths.linear_interpolant())
