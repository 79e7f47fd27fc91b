"""kinetic_optimal: the quick pipeline end to end, the criteria, the README."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks._common import blocks
from flowlab import metrics
from reproductions.kinetic_optimal import protocol, report, study

ROOT = protocol.HERE.parents[1]


def _curve(values, ref):
    rows = [
        {"solver": "euler", "steps": k, "nfe": k, "w2": w, "endpoint_error": w / 10}
        for k, w in zip((1, 2, 4, 8), values, strict=True)
    ]
    return [*rows, {"solver": "dopri5", "steps": None, "nfe": 100, "w2": ref,
                    "endpoint_error": 0.0}]  # fmt: skip


def test_nfe_to_quality_needs_every_larger_k_within():
    curve = _curve([0.5, 0.2, 0.3, 0.21], ref=0.2)
    # k = 2 is within 1.1 x 0.2 but k = 4 is not: the answer is k = 8.
    assert study.nfe_to_quality(curve, "w2", 0.22) == 8
    assert study.nfe_to_quality(curve, "w2", 0.30) == 2
    assert study.nfe_to_quality(curve, "w2", 0.6) == 1
    assert study.nfe_to_quality(curve, "w2", 0.1) is None  # a miss


def _results(cells):
    s = {"tolerance": 1.1, "reference_solver": "dopri5", "endpoint_tolerance": 0.02,
         "euler_steps": [1, 2, 4, 8]}  # fmt: skip
    return {"settings": s, "cells": cells, "train_tasks": ["moons"]}


def test_common_target_and_verdicts_are_paired_by_seed():
    cells = [
        # Cond-OT: dopri5 W2 0.2, so the common bound is 0.22 for both schedules.
        {"task": "moons", "schedule": "cond_ot", "seed": 0,
         "curve": _curve([0.5, 0.3, 0.23, 0.21], ref=0.2)},
        {"task": "moons", "schedule": "kinetic_optimal", "seed": 0,
         "curve": _curve([0.4, 0.21, 0.2, 0.19], ref=0.18)},
        {"task": "moons", "schedule": "cond_ot", "seed": 1,
         "curve": _curve([0.5, 0.3, 0.25, 0.2], ref=0.2)},
        {"task": "moons", "schedule": "kinetic_optimal", "seed": 1,
         "curve": _curve([0.5, 0.3, 0.25, 0.2], ref=0.22)},
    ]  # fmt: skip
    r = _results(cells)
    # Endpoint errors are W2 / 10: above 0.02 at every k for cells[0] (a miss).
    want = {"own": 8, "common": 8, "loose": 2, "endpoint": None}  # 0.3 <= 0.4
    assert report.nfe_targets(r, cells[0]) == want
    # Its own bound is 1.1 x 0.18 = 0.198: only k = 8 (0.19) is within; the common
    # bound 0.22 from k = 2 (0.21) on; endpoint errors 0.02, 0.019 from k = 4 on.
    # The loose bound 2 x 0.2 = 0.4 from k = 1 on (0.4).
    want = {"own": 8, "common": 2, "loose": 1, "endpoint": 4}
    assert report.nfe_targets(r, cells[1]) == want
    text, verdict = report._fewer(r, "moons")
    assert text == "2 vs 8; 8 vs 8"
    assert verdict == "partly (fewer on some seeds, never more)"
    # dopri5 W2 differences -0.02 and +0.02: mean 0, so "no worse" holds.
    gap, se, n = report.w2_gap(r, "moons", "kinetic_optimal")
    assert (n, gap) == (2, pytest.approx(0.0, abs=1e-12))
    assert se == pytest.approx(0.02)  # stdev(-0.02, 0.02) / sqrt(2)
    assert report._no_worse(gap + 0.03, se) == "holds within noise (worse by < 2 se)"
    assert report._no_worse(gap + 0.05, se) == "misses"


def _energies(ko, ko_se, other, other_se):
    row = lambda e, se: {"t_max": {"formula": {"energy": e, "se": se},  # noqa: E731
                                   "mc": {"energy": e, "se": se}}}  # fmt: skip
    return {"schedules": {"kinetic_optimal": row(ko, ko_se),
                          "cond_ot": row(other, other_se)}}  # fmt: skip


def test_energy_verdict_needs_both_estimators_beyond_the_noise():
    # Gap -1 against a combined se of hypot(0.3, 0.4) = 0.5: exactly 2 se is not
    # beyond 2 se, a gap of -1.01 is.
    assert report.energy_verdict(_energies(4.0, 0.3, 5.0, 0.4), "cond_ot") == (
        "below, but by < 2 se (not established)"
    )
    assert report.energy_verdict(_energies(3.99, 0.3, 5.0, 0.4), "cond_ot") == "holds"
    assert report.energy_verdict(_energies(5.1, 0.3, 5.0, 0.4), "cond_ot") == "misses"
    e = _energies(3.0, 0.1, 5.0, 0.1)
    e["schedules"]["kinetic_optimal"]["t_max"]["mc"]["energy"] = 5.5  # MC disagrees
    assert report.energy_verdict(e, "cond_ot") == "misses"


def test_w2_helper_agrees_with_the_library_assignment():
    # POT's network simplex and scipy's assignment solve the same exact problem.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 2)), 1.5 * rng.normal(size=(300, 2)) + 0.5
    # Tolerances. Both are exact LP optima in float64; they differ only in the
    # summation order of the 300 costs: ~1e-15 relative, 1e-10 leaves room.
    assert study.w2(x, y) == pytest.approx(metrics.wasserstein2(x, y), rel=1e-10)


@pytest.mark.slow  # ~2 min on the shared 2-core machine, mostly compiling
@pytest.mark.heavy
def test_quick_run_writes_every_number(tmp_path):
    # A subprocess, as the command runs (float32: no x64 from the test conftest).
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run(
        [sys.executable, "-m", "reproductions.kinetic_optimal.run", "--quick",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["quick"]
    assert r["complete"]
    assert r["energy_tasks"] == list(protocol.QUICK["energy_tasks"])
    assert r["seeds"] == {"moons": [0], "digits": [0]}
    for name in ("jax", "flowlab_commit", "pot", "load_average_end", "cpu"):
        assert name in r["machine"]
    for task, e in r["energies"].items():
        assert set(e["schedules"]) == set(protocol.SCHEDULES), task
        for name, row in e["schedules"].items():
            assert ("t1" in row) == (name in protocol.FINITE_AT_1)
            for est in ("formula", "mc"):
                assert row["t_max"][est]["energy"] > 0
                assert row["t_max"][est]["se"] >= 0
        # Energy grows with the horizon: E(t <= 1) >= E(t <= t_max) by the formula
        # (a non-negative integrand over a longer interval).
        for name in protocol.FINITE_AT_1:
            row = e["schedules"][name]
            assert row["t1"]["formula"]["energy"] >= row["t_max"]["formula"]["energy"]
        assert 0 < e["total_angle"] <= np.pi / 2 + 1e-6
        assert e["separation_seconds"] > 0
    ks = protocol.PROTOCOL["euler_steps"]
    assert {(c["schedule"], c["seed"]) for c in r["cells"]} == {
        ("cond_ot", 0),
        ("kinetic_optimal", 0),
    }
    for cell in r["cells"]:
        curve = cell["curve"]
        assert [row["steps"] for row in curve] == [*ks, None]
        assert [row["nfe"] for row in curve[:-1]] == list(ks)  # Euler: one per step
        assert curve[-1]["solver"] == "dopri5"
        assert curve[-1]["nfe"] > 0
        assert all(row["w2"] > 0 for row in curve)
        assert cell["summary"]["steps"] == protocol.QUICK["steps"]
        assert len(cell["loss_curve"]) == 2  # log_every 100 of 200 steps
    assert {c["schedule"] for c in r["digits"]} == {"cond_ot", "kinetic_optimal"}
    for cell in r["digits"]:
        assert np.isfinite(cell["summary"]["test_bpd"])
    table = (tmp_path / "table.md").read_text()
    assert table.strip() == report.build_tables(r)
    assert table.startswith("**QUICK (not the protocol)**")
    assert (tmp_path / "nfe_moons.png").stat().st_size > 0


def test_readme_holds_the_tables_of_results_json():
    # The README's block is what `run --table` writes from the committed results.
    results = protocol.RESULTS / "results.json"
    if not results.exists():
        pytest.skip("no full results yet: python -m reproductions.kinetic_optimal.run")
    r = json.loads(results.read_text())
    assert not r["quick"]
    assert r["complete"]
    readme = blocks(protocol.README.read_text())
    assert readme["results"] == report.build_tables(r)
