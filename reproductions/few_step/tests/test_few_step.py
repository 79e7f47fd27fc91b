"""few_step: the table and its acceptance checks; the quick pipeline end to end."""

import json

import numpy as np
import pytest

from benchmarks._common import blocks
from reproductions.few_step import run


def _cell(seed, teacher100, curves):
    def curve(ws):
        return [{"steps": k, "w2": w} for k, w in zip(run.STEPS, ws, strict=True)]

    methods = {
        name: {"train_steps": 10, "train_seconds": 1.0, "composition_gap": 0.01,
               "one_step_error": 0.02, "finite": True, "curve": curve(ws)}
        for name, ws in curves.items()
    }  # fmt: skip
    teacher = [
        {"method": "teacher", "sampler": "dopri5", "nfe": 80, "w2": teacher100},
        {"method": "teacher", "sampler": "euler", "nfe": 100, "w2": teacher100},
    ]
    teacher += [{"method": "teacher", "sampler": "euler", "nfe": k, "w2": 1.0}
                for k in run.STEPS]  # fmt: skip
    return {"task": "moons", "seed": seed, "settings": {"teacher_steps": 100},
            "teacher_seconds": 2.0, "teacher": teacher, "methods": methods}  # fmt: skip


def test_the_checks_say_which_methods_meet_the_bar():
    # Seed means: teacher 0.10; "good" 0.14 / 0.11 at 1 / 4 steps (ratios 1.4,
    # 1.1), "bad" 0.16 at one step (1.6) and 0.10 at four.
    cells = [
        _cell(0, 0.09, {"good": [0.13, 0.13, 0.10, 0.1], "bad": [0.15, 0.1, 0.1, 0.1]}),
        _cell(1, 0.11, {"good": [0.15, 0.13, 0.12, 0.1], "bad": [0.17, 0.1, 0.1, 0.1]}),
    ]
    text, checks = run.build_table(cells)
    good, bad = checks["moons"]["methods"]["good"], checks["moons"]["methods"]["bad"]
    assert checks["moons"]["teacher_euler100_w2"] == pytest.approx(0.10)
    assert good["ratio_1"] == pytest.approx(1.4)
    assert good["meets_1_step"]
    assert good["meets_4_steps"]
    assert not bad["meets_1_step"]
    assert bad["meets_4_steps"]
    assert "| moons | good | 0, 1 | 0.140 ± 0.014 |" in text
    assert "teacher, 100 Euler (NFE 100)" in text
    line = run.verdict(checks, [{**c, "settings": {"n_eval": 100}} for c in cells])
    assert "good 1.40× / 1.10×, bad 1.60× / 1.00×" in line
    first, per_seed = line.split("\n")
    assert first.endswith("Both bars (≤ 1.5× at 1 step, ≤ 1.2× at 4): good.")
    # each seed over its own teacher: 0.13 / 0.09, 0.10 / 0.09; 0.15 / 0.11, 0.12 / 0.11
    assert per_seed.endswith("good: seed 0 1.44× / 1.11×, seed 1 1.36× / 1.09×.")


def test_the_readme_blocks_are_the_table_of_the_results():
    results = json.loads((run.RESULTS / "results.json").read_text())
    text, checks = run.build_table(results["cells"])
    readme = blocks(run.README.read_text())
    assert readme["results"] == text
    assert readme["verdict"] == run.verdict(checks, results["cells"])


@pytest.mark.slow
def test_the_quick_study_writes_cells_a_table_and_a_figure(tmp_path):
    assert run.main(["--quick", "--tasks", "moons", "--out", str(tmp_path)]) == 0
    cell = json.loads((tmp_path / "cells" / "moons_seed0.json").read_text())
    assert set(cell["methods"]) == set(run.task_methods("moons"))
    assert set(run.task_methods("moons")) == set(run.ALL)
    for m in cell["methods"].values():
        assert [c["steps"] for c in m["curve"]] == list(run.STEPS)
        assert m["finite"]
    samples = np.load(tmp_path / "cells" / "moons_seed0.npz")
    assert samples["reflow_1"].shape == (300, 2)
    assert (tmp_path / "one_step.png").stat().st_size > 0
    assert "| moons | eulerian | 0 |" in (tmp_path / "table.md").read_text()
