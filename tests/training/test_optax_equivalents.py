"""The step's own EMA, micro-batching and skip against their optax neighbours.

`flowlab.training.step` and `.nonfinite` say in their docstrings why they do not
use `optax.MultiSteps` and `optax.apply_if_finite`; these tests hold the claims:
micro-batches equal MultiSteps to float32 round-off (not bitwise), and skipping
equals apply_if_finite bitwise where the gradient is non-finite but not where a
finite gradient makes a non-finite update.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowlab as fl
from flowlab import paths, schedules
from flowlab.training import init_state, make_train_step

LOSS = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))


def _linear(params, t, x, cond):
    return params["w"] @ x + params["b"] * t


def _params():
    return {"w": jnp.eye(2) * 0.5, "b": jnp.array([0.1, -0.2])}


def _batch(n=32):
    k0, k1 = jax.random.split(jax.random.key(7))
    x0 = jax.random.normal(k0, (n, 2))
    x1 = jax.random.normal(k1, (n, 2)) + jnp.array([[2.0, -1.0]])
    return x0, x1


class _Fixed(fl.data.AbstractSampler):
    """Always the same rows (the source of the micro-batch comparison)."""

    points: jax.Array

    @property
    def event_shape(self):
        return self.points.shape[1:]

    def sample(self, key, n):
        return self.points[:n]


def test_micro_batches_equal_multisteps_to_float32_roundoff():
    """One micro-batched step = MultiSteps over the same slices and draws."""
    x0, x1 = _batch()
    micro = 4
    opt = optax.sgd(0.1)
    state = init_state(jax.random.key(0), _params(), opt)
    step = make_train_step(
        _linear, LOSS, opt, source=_Fixed(x0), micro_batches=micro, ema_decay=0.0
    )
    ours, _ = jax.jit(step)(state, x1)

    # The same draws: the step's keys, the loss's `prepare` on the whole batch.
    key = jax.random.fold_in(state.key, 0)
    _, _, _, k_loss = jax.random.split(key, 4)
    t, ps, target = LOSS.prepare(k_loss, x0, x1)

    def objective(p, sl):
        return LOSS.regress(_linear, p, t[sl], ps.xt[sl], target[sl])[0]

    multi = optax.MultiSteps(opt, every_k_schedule=micro)
    params, opt_state = _params(), multi.init(_params())
    n = x1.shape[0]
    for i in range(micro):  # the step's strided slices: rows i, i + micro, ...
        grads = jax.grad(objective)(params, slice(i, n, micro))
        updates, opt_state = multi.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    # float32: a running mean (MultiSteps) against a sum then a scale (ours).
    chex.assert_trees_all_close(ours.params, params, rtol=1e-6, atol=1e-7)


def _poisoned(scale):
    """An optimiser whose update is the gradient times `scale` (inf: overflow)."""
    return optax.chain(optax.sgd(1.0), optax.scale(scale))


def test_skip_equals_apply_if_finite_where_the_gradient_is_not_finite():
    x0, x1 = _batch()
    bad = x1.at[0, 0].set(jnp.nan)  # a NaN row: NaN loss and gradient
    opt = optax.adam(1e-2)
    state = init_state(jax.random.key(0), _params(), opt)
    step = jax.jit(
        make_train_step(_linear, LOSS, opt, source=_Fixed(x0), on_nonfinite="skip")
    )
    ours, metrics = step(state, bad)
    assert int(metrics["skipped"]) == 1

    guarded = optax.apply_if_finite(opt, max_consecutive_errors=2**30)
    g_state = guarded.init(_params())
    key = jax.random.fold_in(state.key, 0)
    _, _, _, k_loss = jax.random.split(key, 4)
    t, ps, target = LOSS.prepare(k_loss, x0, bad)
    grads = jax.grad(lambda p: LOSS.regress(_linear, p, t, ps.xt, target)[0])(_params())
    updates, g_state = guarded.update(grads, g_state, _params())
    params = optax.apply_updates(_params(), updates)
    chex.assert_trees_all_equal(ours.params, params)
    chex.assert_trees_all_equal(ours.opt_state, g_state.inner_state)
    chex.assert_trees_all_equal(ours.ema_params, state.ema_params)  # EMA kept too


def test_skip_catches_a_non_finite_update_that_apply_if_finite_applies():
    x0, x1 = _batch()
    opt = _poisoned(jnp.inf)  # finite gradient, infinite update
    state = init_state(jax.random.key(0), _params(), opt)
    step = jax.jit(
        make_train_step(_linear, LOSS, opt, source=_Fixed(x0), on_nonfinite="skip")
    )
    ours, metrics = step(state, x1)
    assert int(metrics["skipped"]) == 1
    chex.assert_trees_all_equal(ours.params, state.params)

    guarded = optax.apply_if_finite(opt, max_consecutive_errors=2**30)
    g_state = guarded.init(_params())
    grads = jax.tree_util.tree_map(jnp.ones_like, _params())  # any finite gradient
    updates, _ = guarded.update(grads, g_state, _params())
    applied = optax.apply_updates(_params(), updates)
    assert not np.all(np.isfinite(applied["w"]))  # apply_if_finite let it through
