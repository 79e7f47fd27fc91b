"""manifold_ot: the quick pipeline end to end, the NFE criteria, the README."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks._common import blocks
from reproductions.manifold_ot import protocol, report, study

ROOT = protocol.HERE.parents[1]


def _curve(values, ref):
    rows = [
        {"solver": "euler", "steps": k, "w2": w, "mmd2": w**2, "endpoint_error": w}
        for k, w in zip((1, 2, 4, 8), values, strict=True)
    ]
    return [*rows, {"solver": "dopri5", "steps": None, "w2": ref, "mmd2": ref**2,
                    "endpoint_error": 0.0}]  # fmt: skip


def test_nfe_to_quality_needs_every_larger_k_within():
    curve = _curve([0.5, 0.2, 0.3, 0.21], ref=0.2)
    # k = 2 is within 1.1 x 0.2 but k = 4 is not: the answer is k = 8.
    assert study.nfe_to_quality(curve, "w2", 0.22) == 8
    assert study.nfe_to_quality(curve, "w2", 0.30) == 2
    assert study.nfe_to_quality(curve, "w2", 0.6) == 1
    assert study.nfe_to_quality(curve, "w2", 0.1) is None  # a miss
    s = {
        "tolerance": 1.1,
        "mmd_sigmas": 2.0,
        "endpoint_tolerance": 0.35,
        "reference_solver": "dopri5",
    }
    # MMD² = W2² here: within 0.04 + 2 x 0.0025 = 0.045 from k = 8 (0.0441) on.
    targets = report.nfe_targets({"curve": curve}, s, mmd2_std=0.0025)
    assert targets == {"w2": 8, "mmd": 8, "endpoint": 2}
    # A wider MMD² noise: k = 2 (0.04) and k = 4 (0.09 <= 0.04 + 0.06) are within.
    assert report.nfe_targets({"curve": curve}, s, mmd2_std=0.03)["mmd"] == 2


@pytest.mark.slow  # 78-92 s measured at load 4-7 on 2 cores, mostly compiling
@pytest.mark.heavy
def test_quick_run_writes_every_number(tmp_path):
    # A subprocess, as the command runs (float32: no x64 from the test conftest).
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run(
        [sys.executable, "-m", "reproductions.manifold_ot.run", "--quick",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["quick"]
    assert r["complete"]
    assert r["tasks"] == ["sphere"]
    assert r["seeds"] == {"sphere": [0]}
    assert r["settings"]["steps"] == protocol.QUICK["steps"]
    for name in ("jax", "flowlab_commit", "ott", "load_average_end", "cpu"):
        assert name in r["machine"]
    assert r["wall_seconds"] > 0
    assert {(c["method"], c["seed"]) for c in r["cells"]} == {
        ("independent", 0),
        ("ot", 0),
    }
    ks = protocol.PROTOCOL["euler_steps"]
    for cell in r["cells"]:
        curve = cell["curve"]
        assert [row["steps"] for row in curve] == [*ks, None]
        assert [row["nfe"] for row in curve[:-1]] == list(ks)  # Euler: one per step
        assert curve[-1]["solver"] == "dopri5"
        assert curve[-1]["nfe"] > 0
        assert curve[-1]["endpoint_error"] == 0.0  # dopri5 is its own reference
        assert all(row["w2"] > 0 for row in curve)
        assert cell["nll_finite"]
        assert cell["train_seconds"] > 0
        assert len(cell["loss_curve"]) == 2  # log_every 100 of 200 steps
    pairs = r["pairs"]["sphere"]
    # The OT pairs are closer: the optimal assignment's mean cost is the least.
    ot_d2 = pairs["ot"]["mean_sq_pair_distance"]
    assert ot_d2 < pairs["independent"]["mean_sq_pair_distance"]
    assert pairs["independent"]["coupling_seconds_per_call"] == 0.0
    table = (tmp_path / "table.md").read_text()
    assert table.strip() == report.build_tables(r)
    assert table.startswith("**QUICK (not the protocol)**")
    assert "S² vmf_mixture" in table


def test_readme_holds_the_tables_of_results_json():
    # The README's block is what `run --table` writes from the committed results.
    results = protocol.RESULTS / "results.json"
    if not results.exists():
        pytest.skip("no full results yet: python -m reproductions.manifold_ot.run")
    r = json.loads(results.read_text())
    assert not r["quick"]
    assert r["complete"]
    readme = blocks(protocol.README.read_text())
    assert readme["results"] == report.build_tables(r)
