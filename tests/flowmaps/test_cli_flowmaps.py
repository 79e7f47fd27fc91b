"""`flowlab train ... loss=<flow-map loss>` and `flowlab sample RUN --steps K`."""

import json

import numpy as np
import pytest

from flowlab import run
from flowlab.cli import main

pytestmark = pytest.mark.usefixtures("float32_runs")

TINY = [
    "steps=200", "batch_size=128", "steps_per_call=50", "log_every=100",
    "checkpoint_every=200", "model.width=32", "model.depth=2",
    "model.time_embedding=identity", "data.n_train=1000", "data.n_test=300",
]  # fmt: skip


@pytest.fixture(scope="module")
def flow_map_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "shortcut"
    assert main(["train", "moons", *TINY, "loss=shortcut", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    return out


def test_a_flow_map_run_is_summarised_at_one_jump(flow_map_run):
    summary = json.loads((flow_map_run / "summary.json").read_text())
    assert summary["solver"] == "flow_map_1"
    assert summary["nfe"] == 1
    assert np.isfinite(summary["w2"])
    assert (flow_map_run / "samples.png").stat().st_size > 0
    assert 'loss = "shortcut"' in (flow_map_run / "config.toml").read_text()


def test_sample_jumps_with_steps(flow_map_run, tmp_path, capsys):
    for steps in (1, 4):
        out = tmp_path / f"s{steps}.npy"
        assert main(["sample", str(flow_map_run), "--n", "64", "--steps", str(steps),
                     "--out", str(out)]) == 0  # fmt: skip
        assert f"the flow map, {steps} jump" in capsys.readouterr().err
        assert np.load(out).shape == (64, 2)
    # the same jumps as the library's sampler on the run's EMA parameters
    x = run.sample_run(flow_map_run, 64, seed=0, steps=4)
    np.testing.assert_allclose(np.load(tmp_path / "s4.npy"), x)


def test_sample_refuses_a_solver_for_a_flow_map_run(flow_map_run, capsys):
    assert main(["sample", str(flow_map_run), "--solver", "euler"]) == 2
    assert "samples by jumps" in capsys.readouterr().err
