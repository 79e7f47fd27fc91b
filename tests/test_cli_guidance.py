"""`flowlab sample --cond/--guidance` on a tiny class-conditional run of the blobs."""

import json
import re

import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import data
from flowlab.cli import main
from flowlab.config import dump_toml, load_config

# A real training run (tens of seconds on a loaded 2-core machine): scheduled first.
pytestmark = [
    pytest.mark.xdist_group("cli_guidance"),
    pytest.mark.heavy,
    pytest.mark.usefixtures("float32_runs"),
]

# Four blobs of std 0.4 at radius 4 (configs/blobs.toml's data set), 400 steps.
TINY = [
    "steps=400",
    "batch_size=256",
    "steps_per_call=50",
    "log_every=200",
    "checkpoint_every=400",
    "data.n_train=4000",  # a labelled set held on device (LabelledEmpirical)
    "data.n_test=200",
    "sample.n=200",
    "model.width=64",
    "model.depth=3",
]
BLOBS = data.LabelledBlobs()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "blobs"
    assert main(["train", "blobs", *TINY, "--out", str(out), "--no-progress"]) == 0
    return out


def _sample(run_dir, tmp_path, *flags, name="x.npy"):
    out = tmp_path / name
    argv = ["sample", str(run_dir), "--n", "1000", "--out", str(out), *flags]
    assert main(argv) == 0
    return np.load(out)


def _blob(x):
    return np.asarray(BLOBS.nearest(jnp.asarray(x)))


def test_conditional_run_trains_and_evaluates(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert np.isfinite(summary["w2"])
    assert (run_dir / "samples.png").is_file()
    assert "cond_dropout = 0.15" in (run_dir / "config.toml").read_text()


def test_guided_samples_land_in_their_blob(run_dir, tmp_path):
    x = _sample(run_dir, tmp_path, "--cond", "1", "--guidance", "2.0")
    assert x.shape == (1000, 2)
    # The acceptance bound; measured 100%.
    assert np.mean(_blob(x) == 1) >= 0.95
    again = _sample(run_dir, tmp_path, "--cond", "1", "--guidance", "2.0")
    np.testing.assert_array_equal(x, again)  # the same seed, the same samples


def test_unguided_samples_spread_over_the_blobs(run_dir, tmp_path):
    # w = 0 is the null-condition (unconditional) model: every blob gets about a
    # quarter of the rows whatever --cond says (allowed 0.25 +- 0.1).
    x = _sample(run_dir, tmp_path, "--cond", "1", "--guidance", "0")
    shares = np.bincount(_blob(x), minlength=4) / len(x)
    np.testing.assert_allclose(shares, 0.25, rtol=0, atol=0.1)


def test_an_interval_that_no_step_reaches_is_the_conditional_model(run_dir, tmp_path):
    # Euler with 20 steps evaluates at t = 0, 0.05, ..., 0.95: an interval [1, 1]
    # is never hit, so the field is v_null + 1 (v_c - v_null) at every step,
    # exactly the computation of --guidance 1.
    flags = ["--cond", "2", "--solver", "euler", "--steps", "20"]
    plain = _sample(run_dir, tmp_path, *flags)
    never = _sample(
        run_dir, tmp_path, *flags, "--guidance", "5", "--guidance-interval", "1", "1"
    )
    np.testing.assert_array_equal(plain, never)
    inside = _sample(
        run_dir, tmp_path, *flags, "--guidance", "5", "--guidance-interval", "0", "1"
    )
    assert not np.array_equal(plain, inside)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--guidance", "2"], "--guidance and --guidance-interval need --cond"),
        (["--cond", "4"], r"--cond: cond holds label 4, outside 0\.\.3"),
        (["--cond", "0.5,1"], "--cond: cond must hold integer class labels"),
        (["--cond", "x"], "--cond must be a class label"),
        (
            ["--cond", "1", "--guidance", "2", "--guidance-interval", "0.6", "0.2"],
            r"--guidance-interval: interval must be a pair \(t_lo, t_hi\)",
        ),
        (["--cond", "1", "--guidance", "nan"], "scale must be a finite float"),
    ],
)
def test_bad_guidance_flags_exit_with_a_reason(
    run_dir, tmp_path, capsys, flags, message
):
    argv = ["sample", str(run_dir), "--n", "4", "--out", str(tmp_path / "x.npy")]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("flowlab sample: error: ")
    assert re.search(message, err), err


def test_guidance_of_an_unconditional_run_is_an_error(tmp_path, capsys):
    # Refused from the run's config, before any checkpoint is read.
    out = tmp_path / "moons"
    out.mkdir()
    (out / "config.toml").write_text(dump_toml(load_config("moons")))
    argv = ["sample", str(out), "--n", "4", "--cond", "1", "--guidance", "2"]
    assert main(argv) == 2
    assert "is unconditional (its data.target 'moons'" in capsys.readouterr().err
    # And dropout on an unlabelled data set is refused before any work.
    argv = ["train", "moons", "cond_dropout=0.1", "--out", str(tmp_path / "no")]
    assert main(argv) == 2
    assert "cond_dropout: data.target 'moons' has no labels" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    argv = ["train", "blobs", "cond_dropout=1.0", "--out", str(tmp_path / "no")]
    assert main(argv) == 2
    assert "cond_dropout must be a float in [0, 1)" in capsys.readouterr().err
