"""torchcfm_peer.py: torchcfm's code on the very arrays flowlab trains on."""

import json

import numpy as np
import pytest

from flowlab import metrics
from reproductions.sf2m_table2 import table2
from reproductions.sf2m_table2 import torchcfm_peer as peer
from reproductions.sf2m_table2.tests.records import fake_result


def test_arrays_are_flowlabs():
    # The peer must see exactly the points of flowlab's run of the same (task, seed).
    # (A Gaussian source has no training array: it is drawn fresh each step.)
    arrays = peer._arrays("8gaussians_moons", 1, 100)
    setup = table2.training_setup("8gaussians_moons", "otcfm", 1)
    for name in ("train_target", "train_source"):
        np.testing.assert_array_equal(arrays[name], getattr(setup, name).points)
    test = setup.target.sample(setup.keys["test"], 100)
    np.testing.assert_array_equal(arrays["test"], test)
    x0 = setup.source.sample(setup.keys["eval_source"], 100)
    np.testing.assert_array_equal(arrays["eval_source"], x0)
    assert peer._arrays("normal_moons", 1, 100)["train_source"] is None


@pytest.mark.parametrize("method", ["icfm", "otcfm"])
def test_run_writes_a_result(method, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torchcfm")
    pytest.importorskip("ot")
    argv = ["8gaussians_moons", method, "0", "--steps", "3", "--n-eval", "64"]
    assert peer.main([*argv, "--out", str(tmp_path)]) == 0
    file = table2.result_path(tmp_path, "8gaussians_moons", method, 0)
    r = json.loads(file.read_text())
    assert r["matcher"] == peer.MATCHERS[method]
    assert (r["steps"], r["n_eval"], r["w2_backend"]) == (3, 64, "flowlab.metrics")
    assert len(r["loss_curve"]) == 2
    assert r["w2"] > 0
    # Euler's energy bounds W2^2 between the flow's own endpoints (Cauchy-Schwarz).
    assert r["path_energy"] >= r["w2_source_samples"] ** 2 * (1 - 1e-6)
    reference = metrics.wasserstein2(
        *(peer._arrays("8gaussians_moons", 0, 64)[k] for k in ("eval_source", "test"))
    )
    assert r["w2_source_target"] == pytest.approx(reference, rel=1e-12)
    assert r["npe"] == pytest.approx(abs(r["path_energy"] / reference**2 - 1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        peer.run("normal_moons", "sbcfm", 0)
    with pytest.raises(ValueError, match="steps must be"):
        peer.run("normal_moons", "icfm", 0, steps=0)


def test_table_pairs_seeds_with_flowlabs():
    moons = "normal_moons"
    theirs = [
        fake_result(moons, "otcfm", 0, 0.2, 0.04),
        fake_result(moons, "otcfm", 1, 0.3, 0.06),
    ]
    ours = [
        fake_result(moons, "otcfm", s, w, 0.01)
        for s, w in ((0, 0.1), (1, 0.2), (2, 0.9))
    ]
    text = peer.build_table(theirs, ours)
    row = next(line for line in text.splitlines() if "N→moons" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    # seeds 0 and 1 only: flowlab's seed 2 is left out of its mean
    assert cells[2:5] == ["0, 1", "0.250", "0.150"]
    assert cells[5] == "0.130 ± 0.016"
    assert cells[6:9] == ["0.050", "0.010", "0.083"]
    # flowlab missing a seed: no flowlab mean rather than one over other seeds
    text = peer.build_table(theirs, ours[:1])
    row = next(line for line in text.splitlines() if "N→moons" in line)
    assert [c.strip() for c in row.strip("|").split("|")][4] == "–"
