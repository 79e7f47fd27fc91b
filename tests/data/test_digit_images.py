"""The digits as a sampler of dequantised images, and an image run's bpd."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import conditioning, data, registry

pytest.importorskip("sklearn")  # the `data` extra (in `dev`)

# Tolerances.
# float64: the bpd of the zero field's flow (an ODE that does not move, solved
# with an adaptive solver) against the closed form, rounding only: 1e-10.
F64 = 1e-10
# The mean of n uniform offsets on [-w/2, w/2) has standard deviation
# w / sqrt(12 n); with n = 64 * 4096 draws, 5 of those is 5 * 0.125 / 1774 ~ 3.5e-4.
MEAN_TOL = 3.5e-4


def test_the_registered_names_build_the_samplers():
    digits = registry.build("data", "digits")
    labelled = registry.build("data", "labelled_digits")
    assert isinstance(digits, data.AbstractImageSampler)
    assert isinstance(labelled, data.AbstractImageSampler)
    assert isinstance(labelled, data.AbstractLabelledSampler)
    assert digits.condition is None
    assert labelled.condition == conditioning.Labels(10)
    assert digits.event_shape == labelled.event_shape == (64,)
    assert digits.image_shape == (8, 8, 1)


def test_held_out_is_the_test_split_and_never_trained_on():
    digits = data.DigitImages()
    train, test = data.load_digits("train"), data.load_digits("test")
    held = np.asarray(digits.held_out(jax.random.key(0), 10))
    assert held.shape == (359, 64)
    np.testing.assert_array_equal(held, test.x)
    np.testing.assert_array_equal(np.asarray(digits.points), train.x)
    np.testing.assert_array_equal(np.asarray(digits.test_labels), test.labels)
    assert len(digits.points) + len(held) == 1797


def test_samples_are_training_images_spread_within_their_bins(key):
    digits = data.LabelledDigitImages()
    x, labels = digits.sample_labelled(key, 4096)
    w = digits.bin_width
    grid = np.asarray(digits.points)
    nearest = np.round((np.asarray(x) + 1) / w) * w - 1  # back onto the grid
    offsets = np.asarray(x) - nearest
    assert np.all(np.abs(offsets) <= w / 2 + 1e-6)
    assert abs(float(offsets.mean())) < MEAN_TOL
    # The rounded images are training images, with their labels.
    index = {
        row.tobytes(): lab
        for row, lab in zip(grid, np.asarray(digits.labels), strict=True)
    }
    found = [index.get(row.astype(grid.dtype).tobytes()) for row in nearest[:200]]
    assert found == np.asarray(labels[:200]).tolist()
    # The unconditional sampler draws the same images for the same key.
    np.testing.assert_array_equal(data.DigitImages().sample(key, 4096), x)


def test_an_image_runs_bpd_is_the_bound_of_its_flow(key):
    # The zero field leaves every point where it is, so the model density is the
    # N(0, I) source itself: the run's test bpd must equal the bound computed
    # here from the closed form, on the same dequantised test digits.
    from flowlab import _image_run, metrics
    from flowlab.config import load_config
    from flowlab.experiment import build
    from flowlab.sampling import standard_normal_log_prob

    exp = build(load_config("digits", ["sample.n_likelihood=50"]))
    test = exp.target.held_out(key, 0)
    out = SimpleNamespace(x=test[:10], nfe=0)
    summary = _image_run.evaluate(
        exp, None, test, out, 0.0, lambda t, x, a: jnp.zeros_like(x), str, key
    )
    k_deq, _ = jax.random.split(key)
    y = data.dequantize(k_deq, test[:50], 1 / 8)
    log_p = jax.vmap(standard_normal_log_prob)(y)
    want = metrics.bits_per_dim(log_p, 64, bin_width=1 / 8)
    assert summary["n_bpd"] == 50
    np.testing.assert_allclose(summary["test_bpd"], float(want.mean()), rtol=F64)
    se = float(np.std(want, ddof=1) / np.sqrt(50))
    np.testing.assert_allclose(summary["test_bpd_se"], se, rtol=F64)
