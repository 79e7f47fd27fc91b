"""Data-dependent couplings: in-painting and degradation, masks, sampling, digits."""

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowlab as fl
from flowlab import couplings, data, models, paths, sampling, schedules

IMAGE = (8, 8)


def _batch(seed=0, n=16, event=(2,), dtype=np.float32):
    """Noise and data drawn with NumPy (eager jax.random compiles per shape)."""
    rng = np.random.default_rng(seed)
    zeta = rng.standard_normal((n, *event)).astype(dtype)
    x1 = (3.0 + rng.standard_normal((n, *event))).astype(dtype)  # far from the noise
    return jnp.asarray(zeta), jnp.asarray(x1)


# --- the coupling: x0 = m * x1 + (1 - m) * sigma * zeta, cond = m -----------------


@pytest.mark.parametrize(
    ("mask_fn", "event"),
    [
        (couplings.coordinate_mask(1), (2,)),
        (couplings.coordinate_mask(p_missing=0.3), (5, 3)),
        (couplings.half_mask(shape=IMAGE), (64,)),
        (couplings.box_mask(2, 5), (6, 7, 3)),
    ],
)
def test_known_coordinates_are_x1_exactly_and_missing_ones_the_noise(
    mask_fn, event, key
):
    zeta, x1 = _batch(0, 16, event)
    coupling = couplings.inpainting(mask_fn, noise_scale=0.7)
    x0, (points, mask) = jax.jit(coupling)(jax.random.key(3), zeta, x1)
    np.testing.assert_array_equal(points, x1)  # rows are not re-paired
    known = np.asarray(mask) == 1
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert known.any()
    assert (~known).any()
    np.testing.assert_array_equal(np.asarray(x0)[known], np.asarray(x1)[known])
    # 0.7 * zeta in the data's dtype, bit for bit.
    noise = np.asarray((0.7 * zeta).astype(x1.dtype))
    np.testing.assert_array_equal(np.asarray(x0)[~known], noise[~known])


def test_cond_travels_with_its_rows_and_marks_what_was_known(key):
    zeta, x1 = _batch(0, 12, (4,))
    labels = jnp.arange(12) % 5
    coupling = couplings.inpainting(couplings.coordinate_mask(2))
    x0, (points, (mask, moved)) = coupling(jax.random.key(1), zeta, (x1, labels))
    np.testing.assert_array_equal(moved, labels)  # the old cond, second, unchanged
    np.testing.assert_array_equal(points, x1)
    np.testing.assert_array_equal(mask.sum(axis=1), 2.0)  # 4 - 2 missing
    np.testing.assert_array_equal(np.asarray(x0 == x1), np.asarray(mask == 1))
    # Without a condition in x1 the mask alone is the condition.
    _, (_, alone) = coupling(jax.random.key(1), zeta, x1)
    np.testing.assert_array_equal(alone, mask)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtypes_follow_the_data(dtype, key):
    zeta, x1 = _batch(0, 8, (3,), dtype)
    coupling = couplings.inpainting(couplings.coordinate_mask(1))
    x0, (_, mask) = coupling(key, zeta.astype(jnp.float64), x1)
    assert x0.dtype == mask.dtype == dtype
    assert x0.shape == mask.shape == (8, 3)
    degrade = couplings.degradation(couplings.pool_upsample(2, shape=(2, 2)))
    x0, (_, y) = degrade(key, jnp.zeros((8, 4), dtype), jnp.ones((8, 4), dtype))
    assert x0.dtype == y.dtype == dtype


def test_jit_matches_eager_and_a_second_call_does_not_retrace(key):
    zeta, x1 = _batch(0, 4, (3,))
    coupling = couplings.inpainting(couplings.coordinate_mask(1), noise_scale=0.5)
    traces = []

    def run(k, z, x):
        traces.append(1)
        return coupling(k, z, x)

    jitted = jax.jit(run)
    eager = coupling(key, zeta, x1)
    out = jitted(key, zeta, x1)
    jax.tree_util.tree_map(np.testing.assert_array_equal, out, eager)
    jitted(jax.random.key(9), zeta + 1.0, x1 - 1.0)
    assert len(traces) == 1


@given(
    n=st.integers(1, 4),
    event=st.lists(st.integers(2, 7), min_size=1, max_size=3).map(tuple),
    data_=st.data(),
)
def test_shapes_masks_and_rows_for_any_event_shape(n, event, data_):
    """One compile per example: the coupling and (for images) both image masks."""
    size = math.prod(event)
    k = data_.draw(st.integers(0, size), label="num_missing")
    zeta, x1 = _batch(n, n, event)
    coupling = couplings.inpainting(couplings.coordinate_mask(k))
    image = len(event) >= 2  # (h, w) or (h, w, channels)

    @jax.jit
    def run(key):
        k0, k1, k2 = jax.random.split(key, 3)
        masks = (
            (couplings.half_mask()(k1, event), couplings.box_mask(1, 3)(k2, event))
            if image
            else None
        )
        return coupling(k0, zeta, x1), masks

    (x0, (points, mask)), masks = run(jax.random.key(size))
    assert x0.shape == points.shape == mask.shape == (n, *event)
    np.testing.assert_array_equal(mask.reshape(n, -1).sum(1), size - k)
    known = np.asarray(mask) == 1
    np.testing.assert_array_equal(np.asarray(x0)[known], np.asarray(x1)[known])
    if not image:
        return
    h, w = event[:2]
    half, box = (np.asarray(m).reshape(h, w, -1) for m in masks)
    assert half.shape[:2] == box.shape[:2] == (h, w)
    assert (half == half[..., :1]).all()  # the same on every channel
    assert (box == box[..., :1]).all()
    halves = [
        np.arange(h)[:, None] >= h // 2,  # top missing
        np.arange(h)[:, None] < h // 2,  # bottom missing
        np.arange(w)[None, :] >= w // 2,  # left missing
        np.arange(w)[None, :] < w // 2,  # right missing
    ]
    assert any((half[..., 0] == np.broadcast_to(m, (h, w))).all() for m in halves)
    gone = ~box[..., 0]
    rows, cols = np.flatnonzero(gone.any(1)), np.flatnonzero(gone.any(0))
    assert 1 <= len(rows) <= 3
    assert 1 <= len(cols) <= 3
    assert gone.sum() == len(rows) * len(cols)  # a full rectangle
    assert np.ptp(rows) == len(rows) - 1  # contiguous
    assert np.ptp(cols) == len(cols) - 1


def test_mask_frequencies(key):
    # 4000 rows: the standard error of a frequency p is sqrt(p (1 - p) / 4000) <
    # 0.008; the bounds are 5 standard errors.
    n = 4000
    mix = couplings.mask_mixture(
        couplings.coordinate_mask(0), couplings.coordinate_mask(2), probs=(0.8, 0.2)
    )

    @jax.jit
    @jax.vmap
    def draw(k):
        return (
            couplings.coordinate_mask(p_missing=0.3)(k, (5,)),
            couplings.coordinate_mask(1)(k, (2,)),
            couplings.half_mask()(k, IMAGE),
            mix(k, (2,)),
        )

    bern, one, sides, picked = draw(jax.random.split(key, n))
    np.testing.assert_allclose(1 - np.asarray(bern).mean(), 0.3, atol=5 * 0.0073)
    np.testing.assert_allclose(np.asarray(one)[:, 0].mean(), 0.5, atol=5 * 0.008)
    gone = ~np.asarray(sides)
    top_missing = gone[:, 0, 0] & gone[:, 0, 7]  # both top corners: the top half
    right_missing = gone[:, 0, 7] & gone[:, 7, 7]  # both right corners
    np.testing.assert_allclose(top_missing.mean(), 0.25, atol=5 * 0.007)
    np.testing.assert_allclose(right_missing.mean(), 0.25, atol=5 * 0.007)
    np.testing.assert_allclose((~np.asarray(picked)).all(1).mean(), 0.2, atol=0.032)


# --- degradation: x0 = D(x1) + sigma * zeta, cond = D(x1) -------------------------


def test_pool_upsample_and_degradation(key):
    x = jax.random.normal(key, (3, 4, 6, 2))
    y = couplings.pool_upsample(2)(x[0])
    block = np.asarray(x[0]).reshape(2, 2, 3, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(y[::2, ::2], block, rtol=1e-12)
    np.testing.assert_allclose(y[1::2, 1::2], block, rtol=1e-12)
    zeta = jax.random.normal(jax.random.key(1), x.shape)
    coupling = couplings.degradation(couplings.pool_upsample(2), noise_scale=0.1)
    x0, (points, low) = jax.jit(coupling)(key, zeta, x)
    np.testing.assert_array_equal(points, x)
    np.testing.assert_allclose(low, jax.vmap(couplings.pool_upsample(2))(x))
    np.testing.assert_allclose(x0, low + 0.1 * zeta, rtol=1e-12)
    # Sampling needs only the observation: start(zeta, None, y).
    same, c = coupling.start(zeta, None, low)
    np.testing.assert_allclose(same, x0, rtol=1e-12)  # eager against jit
    np.testing.assert_allclose(c, low, rtol=1e-12)


# --- the sampling side --------------------------------------------------------------


def test_start_matches_training_ignores_unknown_values_and_broadcasts_a_mask(key):
    zeta, x1 = _batch(0, 8, (64,))
    coupling = couplings.inpainting(couplings.half_mask("bottom", shape=IMAGE))
    x0, (_, mask) = coupling(jax.random.key(2), zeta, x1)
    hidden = jnp.where(mask > 0, x1, jnp.nan)  # the unknown half is not observed
    start, c = coupling.start(zeta, hidden, mask[0].astype(bool))  # one mask
    np.testing.assert_array_equal(start, x0)
    np.testing.assert_array_equal(c, mask)
    assert c.dtype == x1.dtype
    _, (c, labels) = coupling.start(zeta, hidden, mask, cond=jnp.arange(8))
    np.testing.assert_array_equal(labels, jnp.arange(8))


# A correlated 2-D Gaussian x1 ~ N(mu, L L^T): given coordinate j, coordinate i is
# Gaussian with mean mu_i + S_ij / S_jj (x_j - mu_j), variance S_ii - S_ij^2 / S_jj.
MU = np.array([1.0, -0.5])
CHOL = np.array([[1.0, 0.0], [0.6, 0.5]])
COV = CHOL @ CHOL.T


def _conditional(j, x_j):
    i = 1 - j
    mean = MU[i] + COV[i, j] / COV[j, j] * (x_j - MU[j])
    return mean, math.sqrt(COV[i, i] - COV[i, j] ** 2 / COV[j, j])


def _exact_field(params, t, x, mask):
    """The exact in-painting field for Cond-OT: a 1-D Gaussian flow per row.

    For N(0, 1) -> N(m, s^2) on x_t = t x1 + (1 - t) x0 the marginal field is
    m + (t s^2 - (1 - t)) / (t^2 s^2 + (1 - t)^2) (y - t m); observed: zero.
    """
    del params
    j = jnp.argmax(mask)  # the observed coordinate
    x_j = x[j]
    i = 1 - j
    mean = jnp.asarray(MU)[i] + jnp.asarray(COV)[i, j] / jnp.asarray(COV)[j, j] * (
        x_j - jnp.asarray(MU)[j]
    )
    var = jnp.asarray(COV)[i, i] - jnp.asarray(COV)[i, j] ** 2 / jnp.asarray(COV)[j, j]
    gain = (t * var - (1 - t)) / (t**2 * var + (1 - t) ** 2)
    return jnp.zeros(2, x.dtype).at[i].set(mean + gain * (x[i] - t * mean))


def test_sampling_with_the_exact_field_gives_the_conditional_exactly(key):
    """start + conditioned_field + sample_ode transport each row by its own mask.

    The 1-D Gaussian flow map is affine, x_1 = m + s * zeta, so every in-painted
    coordinate is known in closed form; dopri5 at rtol = atol = 1e-8 in float64.
    """
    n = 64
    zeta = jax.random.normal(key, (n, 2))
    observed = jax.random.normal(jax.random.key(1), (n, 2)) * 1.5 + MU[None]
    mask = jnp.stack([jnp.arange(n) % 2 == 0, jnp.arange(n) % 2 == 1], axis=1)
    coupling = couplings.inpainting(couplings.coordinate_mask(1))
    x0, c = coupling.start(zeta, observed, mask)
    v = sampling.conditioned_field(_exact_field)
    out = fl.sample_ode(v, (x0, c), None, solver="dopri5", rtol=1e-8, atol=1e-8)
    x, c_end = out.x
    np.testing.assert_array_equal(c_end, c)  # the condition rides unchanged
    for row in range(n):
        j = int(row % 2 == 1)
        mean, std = _conditional(j, float(observed[row, j]))
        np.testing.assert_allclose(x[row, j], observed[row, j], atol=1e-12)
        np.testing.assert_allclose(
            x[row, 1 - j], mean + std * zeta[row, 1 - j], atol=1e-6
        )


def test_trained_inpainting_matches_the_gaussian_conditional():
    """Train with `fit` and the coupling; in-paint y | x and compare with the truth.

    2,000 steps of a width-64 MLP (float32, fixed keys; about 5 s on 2 CPU cores).
    Tolerance: 0.06 = 12% of the conditional std 0.5 for the mean and the std of 4,000
    in-painted samples (sampling error 0.008 and 0.006; the rest is the model's
    error, measured at most 0.03). An unconditional model fails: the marginal of y
    has std 0.78 and the conditional means here are 0.9 apart.
    """
    points = (
        MU
        + np.asarray(jax.random.normal(jax.random.key(1), (20_000, 2), jnp.float32))
        @ CHOL.T
    )
    coupling = couplings.inpainting(couplings.coordinate_mask(1))
    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    example = jnp.zeros(2, jnp.float32)
    model_fn, params = models.init_model(
        models.MLP(width=64, depth=3, activation="silu"),
        jax.random.key(0),
        example,
        example,  # the condition: a float mask of the sample's shape
    )
    result = fl.fit(
        model_fn,
        params,
        loss,
        source=data.Gaussian(2),
        target=data.Empirical(points.astype(np.float32)),
        key=jax.random.key(2),
        steps=2000,
        batch_size=256,
        coupling=coupling,
        steps_per_call=100,
        log_every=2000,
        progress=False,
    )
    v = sampling.conditioned_field(model_fn)
    n = 4000
    zeta = jax.random.normal(jax.random.key(3), (n, 2), jnp.float32)
    for j, x_j in [(0, -0.5), (0, 2.5), (1, 0.0)]:
        observed = jnp.full((n, 2), jnp.nan, jnp.float32).at[:, j].set(x_j)
        x0, c = coupling.start(zeta, observed, jnp.arange(2) == j)
        out = fl.sample_ode(v, (x0, c), result.state.ema_params, solver="euler")
        y = np.asarray(out.x[0][:, 1 - j], np.float64)
        mean, std = _conditional(j, x_j)
        np.testing.assert_allclose(y.mean(), mean, atol=0.06)
        np.testing.assert_allclose(y.std(), std, atol=0.06)


def test_the_loss_reads_an_existing_condition_beside_the_mask(key):
    """With a batch `(x1, labels)` the model gets `cond = (mask, labels)`, per row.

    The loss equals the squared error of the model given, for row `i`, the mask of
    the coordinates the coupling kept (`x0_i == x1_i` exactly there, and the noise
    is far from the data elsewhere) and the label `labels_i`, rebuilt here by hand.
    Tolerance 1e-6: the loss is float32 (the data's dtype) and the reference is
    the same arithmetic, rounded otherwise. Labels or masks that are wrong,
    swapped between rows or missing move the loss (5.68) by 0.1 to 0.3, so the
    check below that they do so by more than 0.05 fixes that it can fail.
    """
    module = models.MLP(width=8, depth=1, num_classes=3)
    model = models.apply_fn(module)

    def model_fn(params, t, x, cond):
        mask, label = cond
        return (1 - mask) * model(params, t, x, label)

    params = module.init(key, 0.0, jnp.zeros(4), jnp.array(0))["params"]
    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    coupling = couplings.inpainting(couplings.coordinate_mask(p_missing=0.5))

    @jax.jit
    @jax.value_and_grad
    def value(params, key, zeta, x1, labels):  # as in the train step
        k_couple, k_loss = jax.random.split(key)
        x0, (x1, cond) = coupling(k_couple, zeta, (x1, labels))
        return loss(model_fn, params, k_loss, x0, x1, cond)[0]

    zeta, x1 = _batch(0, 8, (4,))
    labels = jnp.arange(8) % 3
    loss_value, grads = value(params, jax.random.key(1), zeta, x1, labels)
    assert np.isfinite(loss_value)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))

    @jax.jit
    def by_hand(mask, labels):
        k_couple, k_loss = jax.random.split(jax.random.key(1))
        x0, (points, _) = coupling(k_couple, zeta, (x1, labels))
        t, ps, target = loss.prepare(k_loss, x0, points)
        pred = jax.vmap(lambda t, x, m, c: (1 - m) * model(params, t, x, c))(
            t, ps.xt, mask, labels
        )
        return jnp.mean(jnp.mean((pred - target) ** 2, axis=1)), x0

    _, x0 = by_hand(np.zeros((8, 4), np.float32), labels)
    kept = (np.asarray(x0) == np.asarray(x1)).astype(np.float32)
    assert 0 < kept.sum() < kept.size  # some coordinates kept, some in-painted
    want, _ = by_hand(kept, labels)
    np.testing.assert_allclose(loss_value, want, rtol=1e-6)
    for wrong_mask, wrong_labels in [
        (kept, (labels + 1) % 3),  # other labels
        (kept, labels[::-1]),  # labels of other rows
        (kept[::-1], labels),  # masks of other rows
        (np.zeros_like(kept), labels),  # no mask
    ]:
        other, _ = by_hand(wrong_mask, wrong_labels)
        assert abs(float(other) - float(want)) > 0.05


# --- bad input ---------------------------------------------------------------------


def test_bad_arguments_raise_errors_that_name_them(key):
    zeta, x1 = _batch(0, 4, (64,))
    coupling = couplings.inpainting(couplings.half_mask(shape=IMAGE))
    with pytest.raises(ValueError, match="noise_scale must be >= 0"):
        couplings.inpainting(couplings.coordinate_mask(1), noise_scale=-0.1)
    with pytest.raises(ValueError, match="noise_scale must be >= 0"):
        couplings.degradation(couplings.pool_upsample(2), noise_scale=float("nan"))
    with pytest.raises(TypeError, match="mask_fn must be a callable"):
        couplings.inpainting("bottom")
    with pytest.raises(ValueError, match="mask must have the event shape"):
        coupling.start(zeta, x1, jnp.ones((4, 32)))
    with pytest.raises(ValueError, match="c must have shape"):
        coupling.start(zeta, x1, jnp.ones((3, 64)))
    with pytest.raises(ValueError, match="x1 must have the shape of zeta"):
        coupling.start(zeta, x1[:, :32], jnp.ones(64))
    with pytest.raises(ValueError, match="needs the observed x1"):
        coupling.start(zeta, None, jnp.ones(64))
    with pytest.raises(ValueError, match=r"x0 \(the noise zeta"):
        coupling(key, zeta[:, :2], x1)
    with pytest.raises(ValueError, match="points, cond"):
        coupling(key, zeta, (x1, None, None))
    with pytest.raises(Exception, match="only 0 and 1"):
        jax.jit(coupling.start)(zeta, x1, jnp.full(64, 0.5))
    wrong = couplings.inpainting(lambda k, shape: jnp.ones(3, bool))
    with pytest.raises(ValueError, match="mask_fn must return a mask"):
        wrong(key, zeta, x1)
    flat = couplings.inpainting(couplings.half_mask())  # no shape for (64,) events
    with pytest.raises(ValueError, match=r"pass shape=\(h, w\)"):
        flat(key, zeta, x1)
    with pytest.raises(ValueError, match=r"shape=\(7, 7\) has 49 entries"):
        couplings.inpainting(couplings.half_mask(shape=(7, 7)))(key, zeta, x1)
    with pytest.raises(ValueError, match="num_missing=3 exceeds"):
        couplings.inpainting(couplings.coordinate_mask(3))(
            key, jnp.zeros((2, 2)), jnp.ones((2, 2))
        )
    with pytest.raises(ValueError, match="degrade_fn must return"):
        couplings.degradation(lambda x: x[:2])(key, zeta, x1)
    with pytest.raises(ValueError, match="must divide by factor=3"):
        couplings.degradation(couplings.pool_upsample(3, shape=IMAGE))(key, zeta, x1)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: couplings.coordinate_mask(-1), "num_missing must be >= 0"),
        (lambda: couplings.coordinate_mask(1.5), "num_missing must be an int"),
        (lambda: couplings.coordinate_mask(p_missing=1.5), "p_missing must lie"),
        (lambda: couplings.half_mask("middle"), "missing must name sides"),
        (lambda: couplings.half_mask(()), "missing must name sides"),
        (lambda: couplings.box_mask(0), "min_size must be an int >= 1"),
        (lambda: couplings.box_mask(3, 2), "max_size must be an int >= min_size"),
        (lambda: couplings.mask_mixture(), "needs one or more mask_fn"),
        (
            lambda: couplings.mask_mixture(couplings.half_mask(), probs=(0.5,)),
            "probs must sum to 1",
        ),
        (
            lambda: couplings.mask_mixture(couplings.half_mask(), probs=(0.5, 0.5)),
            "probs must be 1 non-negative",
        ),
        (lambda: couplings.pool_upsample(0), "factor must be an int >= 1"),
    ],
)
def test_bad_mask_and_degradation_factories_raise(factory, match):
    with pytest.raises((ValueError, TypeError), match=match):
        factory()


def test_couplings_are_immutable_pytrees():
    coupling = couplings.inpainting(couplings.coordinate_mask(1), noise_scale=0.5)
    assert isinstance(coupling, couplings.AbstractDataDependent)
    assert isinstance(coupling, couplings.AbstractCoupling)
    with pytest.raises(AttributeError):
        coupling.noise_scale = 1.0
    leaves, tree = jax.tree_util.tree_flatten(coupling)
    assert jax.tree_util.tree_unflatten(tree, leaves) == coupling


# --- the digits data -----------------------------------------------------------------


def test_load_digits_scales_and_splits():
    full = data.load_digits()
    assert full.x.shape == (1797, 64)
    assert full.x.dtype == np.float32
    assert full.x.min() == -1.0
    assert full.x.max() == 1.0
    np.testing.assert_array_equal(np.unique(full.labels), np.arange(10))
    train, test = data.load_digits("train"), data.load_digits("test")
    assert len(train.x) + len(test.x) == 1797
    assert len(test.x) == round(0.2 * 1797)
    rows = {row.tobytes() for row in train.x}
    overlap = sum(row.tobytes() in rows for row in test.x)
    assert overlap < 5  # only images that are pixel-for-pixel duplicates
    np.testing.assert_array_equal(data.load_digits("test").x, test.x)
    images = data.load_digits("test", flatten=False)
    assert images.x.shape == (len(test.x), *data.DIGITS_SHAPE)
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_digits("validation")
    with pytest.raises(ValueError, match="test_fraction must lie"):
        data.load_digits("train", test_fraction=1.0)


def test_load_digits_without_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pip install 'flowlab\[data\]'"):
        data.load_digits()


@pytest.mark.slow  # about 40 s on 2 CPU cores
def test_digit_inpainting_beats_the_baselines():
    """In-paint the bottom half of held-out digits; pixel MSE on the missing half.

    Trained on the bottom half missing (4,000 steps, fixed keys). Measured: one
    sample 0.18, the mean of 8 samples 0.13; baselines: the mean training image
    0.31, the nearest training image by the top half 0.21, the mean of the 8
    nearest 0.14. A sample must beat the nearest neighbour (a sample of the same
    kind: a plausible completion), the mean of 8 the mean of the 8 nearest.
    """
    train, test = data.load_digits("train"), data.load_digits("test")
    mask = couplings.half_mask("bottom", shape=IMAGE)(jax.random.key(0), (64,))
    coupling = couplings.inpainting(couplings.half_mask("bottom", shape=IMAGE))
    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    example = jnp.zeros(64, jnp.float32)
    module = models.MLP(
        width=256, depth=3, activation="silu", time_embedding="sinusoidal"
    )
    model_fn, params = models.init_model(module, jax.random.key(0), example, example)
    steps = 4000
    optimizer, _ = fl.training.make_optimizer(
        "adamw", 2e-3, total_steps=steps, schedule="cosine"
    )
    result = fl.fit(
        model_fn,
        params,
        loss,
        source=data.Gaussian(64),
        target=data.Empirical(train.x),
        key=jax.random.key(2),
        steps=steps,
        batch_size=256,
        optimizer=optimizer,
        coupling=coupling,
        steps_per_call=100,
        log_every=steps,
        progress=False,
    )
    x_test, k = jnp.asarray(test.x), 8
    zeta = jax.random.normal(jax.random.key(5), (k * len(x_test), 64), jnp.float32)
    x0, c = coupling.start(zeta, jnp.tile(x_test, (k, 1)), mask)
    v = sampling.conditioned_field(model_fn)
    out = fl.sample_ode(v, (x0, c), result.state.ema_params, solver="euler", steps=50)
    samples = np.asarray(out.x[0]).reshape(k, len(x_test), 64)
    missing, x_test = ~np.asarray(mask), np.asarray(x_test)

    def mse(pred):
        return float(((pred - x_test)[:, missing] ** 2).mean())

    x_train = np.asarray(train.x)
    dist = ((x_test[:, None, mask] - x_train[None, :, mask]) ** 2).sum(-1)
    order = np.argsort(dist, axis=1)
    nearest, nearest_8 = mse(x_train[order[:, 0]]), mse(x_train[order[:, :8]].mean(1))
    mean_image = mse(np.broadcast_to(x_train.mean(0), x_test.shape))
    one, mean_of_8 = mse(samples[0]), mse(samples.mean(0))
    assert one < nearest < mean_image, (one, nearest, mean_image)
    assert mean_of_8 < nearest_8, (mean_of_8, nearest_8)
