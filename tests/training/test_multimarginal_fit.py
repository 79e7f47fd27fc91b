"""`fit` trains a `MultimarginalLoss` on batches of K + 1 stacked marginals.

float32 (see `conftest.py`); a two-layer pure-JAX model keeps compilation short.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowlab as fl
from flowlab import data, paths

MEANS = ((0.0, 0.0), (3.0, -1.0), (-2.0, 2.0))  # three 2-D Gaussian marginals
K1, D, HIDDEN, BATCH = len(MEANS), 2, 32, 128


def _marginals():
    return data.Stacked(*(data.Gaussian(D, mean=m, std=0.5) for m in MEANS))


def model_fn(params, alpha, x, cond):
    """(alpha, x) -> the stacked g_0, ..., g_K, shape (K + 1, D)."""
    del cond
    h = jnp.tanh(jnp.concatenate([x, alpha]) @ params["w1"] + params["b1"])
    return (h @ params["w2"] + params["b2"]).reshape(K1, D)


def _params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "w1": jax.random.normal(k1, (D + K1, HIDDEN)) / jnp.sqrt(D + K1),
        "b1": jnp.zeros(HIDDEN),
        "w2": jax.random.normal(k2, (HIDDEN, K1 * D)) / jnp.sqrt(HIDDEN),
        "b2": jnp.zeros(K1 * D),
    }


def _loss():
    return fl.MultimarginalLoss(paths.MultimarginalInterpolant(K1))


def _fit(steps, **kwargs):
    return fl.fit(
        model_fn,
        _params(),
        _loss(),
        source=None,
        target=_marginals(),
        key=jax.random.key(1),
        steps=steps,
        batch_size=BATCH,
        optimizer=optax.adam(1e-2),
        progress=False,
        **kwargs,
    )


def test_fit_decreases_the_multimarginal_loss():
    result = _fit(400, steps_per_call=50, log_every=50)
    losses = np.array([r["loss"] for r in result.history])
    assert result.state.params["w1"].dtype == jnp.float32
    assert np.all(np.isfinite(losses))
    # The untrained model misses the means (|mu_k|^2 / D up to 4); the trained one
    # is left with the conditional variances, a small fraction of that.
    assert losses[-1] < 0.3 * losses[0]


def test_fit_equals_a_hand_written_optax_loop():
    """Step n draws from `fold_in(key, n)` split four ways (data, source, coupling,
    loss), as documented; the data key draws the stacked batch, the loss key the
    simplex points. Same draws, same Adam updates: the per-step losses and final
    parameters agree to 1e-6 (float32 rounding of O(1) values in two differently
    fused programs, over 20 steps)."""
    steps = 20
    result = _fit(steps, steps_per_call=1, log_every=1)  # one history line a step

    loss, target, optimizer = _loss(), _marginals(), optax.adam(1e-2)
    root = jax.random.key(1)

    @jax.jit
    def step(params, opt_state, n):
        k_data, _, _, k_loss = jax.random.split(jax.random.fold_in(root, n), 4)
        xs = target.sample(k_data, BATCH)
        alpha, ps, y = loss.prepare(k_loss, xs)
        value, grads = jax.value_and_grad(
            lambda p: loss.regress(model_fn, p, alpha, ps.xt, y)[0]
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params = _params()
    opt_state, values = optimizer.init(params), []
    for n in range(steps):
        params, opt_state, value = step(params, opt_state, n)
        values.append(float(value))
    got = [r["loss"] for r in result.history]
    np.testing.assert_allclose(got, values, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(result.state.params, params, rtol=1e-6, atol=1e-6)


def test_multimarginal_batches_need_no_source_and_no_coupling():
    step = fl.make_train_step(
        model_fn,
        _loss(),
        optax.adam(1e-2),
        source=data.Gaussian(D),
        batch_size=8,
    )
    state = fl.training.init_state(jax.random.key(0), _params(), optax.adam(1e-2))
    with pytest.raises(ValueError, match="source=None"):
        step(state, _marginals())
    step = fl.make_train_step(
        model_fn,
        _loss(),
        optax.adam(1e-2),
        source=None,
        batch_size=8,
        coupling=fl.couplings.exact_ot(),
    )
    with pytest.raises(ValueError, match="coupling=None"):
        step(state, _marginals())
    step = fl.make_train_step(model_fn, _loss(), optax.adam(1e-2), source=None)
    with pytest.raises(ValueError, match=r"shape \(batch, 3, \*event\)"):
        step(state, jnp.zeros((8, 2, D)))  # two marginals, not three
