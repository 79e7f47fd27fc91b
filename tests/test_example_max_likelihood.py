"""examples/06_max_likelihood.py: fine-tuning by likelihood lowers the held-out NLL."""

import helpers
import jax
import numpy as np
import pytest

from flowlab import data


def _load_example():
    return helpers.load_example("06_max_likelihood.py")


@pytest.mark.slow
def test_likelihood_fine_tuning_lowers_the_held_out_nll():
    # A small model after a short flow-matching run, fine-tuned for 40 Adam steps on
    # the RK4 (8 steps) NLL of training batches; the held-out NLL is scored with the
    # adaptive default (tsit5, 1e-5), so the decrease is the model's, not the
    # discretisation's. Fixed seeds: measured 3.805 -> 3.698 nats on 512 test points
    # (the training batches' NLL moves by ~0.05 step to step, hence 40 steps).
    example = _load_example()
    k_pre, k_train, k_test, k_tune = jax.random.split(jax.random.key(0), 4)
    model_fn, params = example.pretrain(k_pre, 300, width=32, depth=2)
    v = example.make_field(model_fn)
    x_train = data.Moons().sample(k_train, 1024)
    x_test = data.Moons().sample(k_test, 512)
    before = float(example.nll(v, params, x_test))
    tuned, losses = example.finetune(v, params, x_train, k_tune, 40)
    after = float(example.nll(v, tuned, x_test))
    assert len(losses) == 40
    assert np.all(np.isfinite(losses))
    assert after < before - 0.05
