"""`flowlab train digits`: a tiny class-conditional run's bpd, image grids, errors."""

import json
import math

import numpy as np
import pytest

from flowlab import data
from flowlab.cli import main
from flowlab.config import load_config
from flowlab.experiment import build

pytest.importorskip("sklearn")  # the `data` extra (in `dev`)

# A real training run (tens of seconds on a loaded 2-core machine): scheduled first.
pytestmark = [
    pytest.mark.xdist_group("cli_digits"),
    pytest.mark.heavy,
    pytest.mark.usefixtures("float32_runs"),
]

TINY = [
    "steps=300",
    "batch_size=128",
    "steps_per_call=50",
    "log_every=100",
    "checkpoint_every=300",
    "model.name=mlp",  # the configs' U-Net trains at a few steps/s on a CPU
    "model.width=128",
    "model.depth=2",
    "optim.lr=3e-3",
    "ema_decay=0.9",  # 300 steps: the default 0.999 would average in the init
    "data.n_test=64",
    "sample.solver=rk4",
    "sample.steps=8",
    "sample.n_likelihood=48",
    "sample.divergence=exact",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    argv = ["train", "digits_cond", *TINY, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    return out


def test_the_summary_holds_the_test_bpd_and_the_budget(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_bpd"] == 48
    assert summary["n_test"] == 359  # the whole test split is held out
    assert summary["bpd_divergence"] == "exact"
    assert summary["nfe"] == summary["bpd_nfe"] == 32  # rk4, 8 steps
    assert summary["uniform_bpd"] == pytest.approx(math.log2(17), rel=1e-12)
    # 300 steps already beat a density uniform on the 17 pixel levels, and a
    # bound on a discrete distribution's entropy is positive.
    assert 0.0 < summary["test_bpd"] < math.log2(17)
    assert 0.0 < summary["test_bpd_se"] < 0.5
    assert summary["steps"] == 300
    assert summary["train_seconds"] > 0


def test_the_plots_are_image_grids(run_dir):
    assert (run_dir / "samples.png").stat().st_size > 10_000
    assert (run_dir / "guided_grid.png").stat().st_size > 10_000


def test_guided_samples_from_the_command_line(run_dir, tmp_path):
    out = tmp_path / "threes.npy"
    argv = ["sample", str(run_dir), "--n", "16", "--out", str(out)]
    assert main([*argv, "--cond", "3", "--guidance", "2.0"]) == 0
    x = np.load(out)
    assert x.shape == (16, 64)
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize(
    ("name", "labelled"), [("digits", False), ("digits_cond", True)]
)
def test_the_digits_configs_build(name, labelled):
    exp = build(load_config(name))
    assert isinstance(exp.target, data.AbstractImageSampler)
    assert (exp.condition is not None) is labelled
    assert exp.config.sample.n_likelihood == 359


def test_a_bad_divergence_name_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "digits", "sample.divergence=trace", "--out", str(out)]
    assert main(argv) == 2
    assert not out.exists()
