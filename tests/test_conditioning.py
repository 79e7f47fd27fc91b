"""Conditions: null round trip, dropout rate and keys, checks, the train step's use."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowlab as fl
from flowlab import data, losses, models, paths, schedules
from flowlab.conditioning import Labels, Vectors
from flowlab.training import init_state, make_train_step

# Tolerances.
# Dropout is a Bernoulli(p) per row: over n rows the dropped share has standard
# deviation sqrt(p (1 - p) / n); the checks allow 5 of them (fixed keys, so the
# checks are deterministic; 5 sigma is never reached by a correct implementation).
N_ROWS = 20_000


def _sigma5(p, n):
    return 5 * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------------------------
# The conditions themselves
# ---------------------------------------------------------------------------------


def test_labels_null_is_the_extra_label():
    labels = Labels(3)
    assert labels.embedding_size == 4
    assert labels.null_label == 3
    null = labels.null(5)
    assert null.dtype == jnp.int32
    assert null.tolist() == [3] * 5
    assert bool(jnp.all(labels.is_null(null)))
    real = labels.check("cond", jnp.array([0, 1, 2]))
    assert not bool(jnp.any(labels.is_null(labels.encode(real))))
    # Through the ODE state's floats and back.
    state = labels.to_state(jnp.array([0, 1, 2, 3]), jnp.float32)
    assert state.dtype == jnp.float32
    assert labels.from_state(state).tolist() == [0, 1, 2, 3]


def test_vectors_null_differs_from_the_zero_vector():
    vectors = Vectors((2, 3))
    zero = vectors.encode(vectors.check("cond", jnp.zeros((4, 2, 3))))
    assert zero.shape == (4, 7)
    assert not bool(jnp.any(vectors.is_null(zero)))
    null = vectors.null(4)
    assert null.shape == (4, 7)
    assert bool(jnp.all(vectors.is_null(null)))
    c = jax.random.normal(jax.random.key(0), (4, 2, 3))
    encoded = vectors.encode(vectors.check("cond", c))
    np.testing.assert_array_equal(encoded[:, :6], c.reshape(4, 6))
    np.testing.assert_array_equal(encoded[:, 6], 1.0)
    np.testing.assert_array_equal(vectors.from_state(encoded), encoded)


@pytest.mark.parametrize(
    ("condition", "cond"),
    [
        (Labels(5), jnp.arange(N_ROWS) % 5),
        (Vectors(3), jnp.ones((N_ROWS, 3))),
    ],
    ids=["labels", "vectors"],
)
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_rate_and_untouched_rows(condition, cond, p):
    encoded = condition.encode(condition.check("cond", cond))
    dropped = condition.drop(jax.random.key(3), encoded, p)
    is_null = np.asarray(condition.is_null(dropped))
    assert abs(is_null.mean() - p) < _sigma5(p, N_ROWS), is_null.mean()
    np.testing.assert_array_equal(dropped[~is_null], encoded[~is_null])
    np.testing.assert_array_equal(dropped[is_null], condition.null(N_ROWS)[is_null])


@given(seed=st.integers(0, 2**31 - 1), p=st.floats(0.05, 0.95))
def test_dropout_is_reproducible_and_keyed(seed, p):
    labels = Labels(4)
    cond = jnp.arange(512) % 4
    a = labels.drop(jax.random.key(seed), cond, p)
    b = labels.drop(jax.random.key(seed), cond, p)
    c = labels.drop(jax.random.fold_in(jax.random.key(seed), 1), cond, p)
    np.testing.assert_array_equal(a, b)
    # Two keys drop the same 512 rows with probability at most 0.95^512 ~ 4e-12.
    assert not bool(jnp.all(a == c))


def test_dropout_ends():
    labels = Labels(2)
    cond = jnp.array([0, 1, 1, 0])
    assert labels.drop(jax.random.key(0), cond, 0.0).tolist() == [0, 1, 1, 0]
    assert labels.drop(jax.random.key(0), cond, 1.0).tolist() == [2, 2, 2, 2]


def test_condition_checks_name_the_argument_and_fix():
    labels = Labels(3)
    with pytest.raises(TypeError, match=r"cond must hold integer class labels 0\.\.2"):
        labels.check("cond", jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"one label per row, of shape \(4,\)"):
        labels.check("cond", jnp.zeros((4, 1), int), 4)
    with pytest.raises(ValueError, match=r"of shape \(4,\)"):
        labels.check("cond", jnp.zeros((3,), int), 4)
    with pytest.raises(ValueError, match=r"label 3, outside 0\.\.2"):
        labels.check("cond", jnp.array([0, 3]))
    with pytest.raises(ValueError, match="label -1"):
        labels.check("cond", jnp.array([-1, 0]))
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        Labels(0)
    vectors = Vectors(2)
    with pytest.raises(ValueError, match=r"cond must have shape \(5, 2\)"):
        vectors.check("cond", jnp.zeros((5, 3)), 5)
    with pytest.raises(TypeError, match="float vectors"):
        vectors.check("cond", jnp.zeros((5, 2), bool))
    with pytest.raises(ValueError, match="shape must be a positive int"):
        Vectors((2, 0))


# ---------------------------------------------------------------------------------
# Labelled data
# ---------------------------------------------------------------------------------


def test_labelled_blobs_draw_points_with_their_blob(key):
    blobs = data.get("blobs", num_classes=5, radius=4.0, std=0.3)
    x, labels = blobs.sample_batch(key, 4000)
    assert x.shape == (4000, 2)
    assert labels.shape == (4000,)
    assert blobs.condition == Labels(5)
    # Centres 2 r sin(pi / 5) = 4.7 apart, std 0.3: a point is nearer another
    # centre only beyond 7.8 std along one axis (probability ~ 1e-14 per point).
    np.testing.assert_array_equal(blobs.nearest(x), labels)
    counts = np.bincount(np.asarray(labels), minlength=5) / 4000
    assert np.all(np.abs(counts - 0.2) < _sigma5(0.2, 4000)), counts
    np.testing.assert_array_equal(blobs.sample(key, 4000), x)
    # Unlabelled samplers give no condition.
    assert data.Moons().condition is None
    assert data.Moons().sample_batch(key, 3)[1] is None


def test_labelled_empirical_keeps_rows_and_labels_together(key):
    points = jnp.arange(20.0).reshape(10, 2)
    labels = jnp.arange(10) % 3
    ds = data.LabelledEmpirical(points, labels)
    assert ds.num_classes == 3
    assert ds.event_shape == (2,)
    x, c = ds.sample_batch(key, 64)
    np.testing.assert_array_equal(c, labels[(x[:, 0] / 2).astype(int)])
    with pytest.raises(ValueError, match=r"labels must be integers of shape \(10,\)"):
        data.LabelledEmpirical(points, labels[:5])
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        data.LabelledEmpirical(points, labels, num_classes=2)


# ---------------------------------------------------------------------------------
# The train step
# ---------------------------------------------------------------------------------

K = 4


class _NullShare(losses.AbstractLoss):
    """A test loss whose value is the share of rows the model sees as null."""

    base: losses.AbstractLoss
    weight_fn: None = None

    def marginals(self, key, source, x1):
        return self.base.marginals(key, source, x1)

    def prepare(self, key, *marginals):
        return self.base.prepare(key, *marginals)

    def regress(self, model_fn, params, t, xt, target, cond=None):
        leaves = jax.tree_util.tree_leaves(params)
        zero = sum(jnp.sum(leaf) for leaf in leaves) * 0.0
        return jnp.mean((cond == K).astype(zero.dtype)) + zero, None


def _step_setup(p, condition="default"):
    condition = Labels(K) if condition == "default" else condition
    module = models.MLP(width=8, depth=1, num_classes=K + 1)
    model_fn, params = models.init_model(
        module, jax.random.key(0), jnp.zeros(2), jnp.zeros((), jnp.int32)
    )
    loss = _NullShare(fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot())))
    opt = optax.sgd(0.0)
    step = make_train_step(
        model_fn,
        loss,
        opt,
        source=data.Gaussian(2),
        batch_size=4096,
        condition=condition,
        cond_dropout=p,
    )
    return jax.jit(step), init_state(jax.random.key(7), params, opt)


def test_train_step_drops_conditions_with_the_step_key():
    p = 0.2
    step, state = _step_setup(p)
    blobs = data.LabelledBlobs(K)
    new, metrics = step(state, blobs)
    # The step's keys: fold_in(root, step) split into data, source, couple, loss;
    # the dropout key is split from the loss key.
    key = jax.random.fold_in(state.key, 0)
    k_data, _, _, k_loss = jax.random.split(key, 4)
    _, k_drop = jax.random.split(k_loss)
    _, labels = blobs.sample_batch(k_data, 4096)
    expected = Labels(K).drop(k_drop, labels, p)
    # Exact: both are the same count of null rows over 4096 (float64 mean).
    assert float(metrics["loss"]) == float(jnp.mean(expected == K))
    assert abs(float(metrics["loss"]) - p) < _sigma5(p, 4096)
    # The next step draws other rows (its key folds in step 1); the same state
    # gives the same rows.
    _, again = step(state, blobs)
    _, later = step(new, blobs)
    assert float(again["loss"]) == float(metrics["loss"])
    assert float(later["loss"]) != float(metrics["loss"])


def test_train_step_without_dropout_keeps_every_condition():
    step, state = _step_setup(0.0)
    _, metrics = step(state, data.LabelledBlobs(K))
    assert float(metrics["loss"]) == 0.0


def test_train_step_dropout_errors():
    with pytest.raises(ValueError, match="no condition was given; pass condition="):
        _step_setup(0.1, condition=None)
    for bad in (1.0, -0.1, "0.1"):
        with pytest.raises(ValueError, match=r"cond_dropout must be a float in \[0, 1"):
            _step_setup(bad)
    with pytest.raises(TypeError, match="condition must be a flowlab.conditioning"):
        _step_setup(0.1, condition="labels")
    step, state = _step_setup(0.1)
    with pytest.raises(ValueError, match="the batch has no cond"):
        step(state, data.Moons())
    with pytest.raises(TypeError, match="integer class labels"):
        step(state, (jnp.zeros((4096, 2)), jnp.zeros(4096)))
