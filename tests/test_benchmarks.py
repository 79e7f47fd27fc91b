"""benchmarks/: the runners' interface, the shipped copy, and the quoted numbers.

The numbers the READMEs and docs/benchmarks.md quote must be the headline of the
committed summary (`benchmarks/latest.md`, written by `run_all --publish`).
"""

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a top-level package of the checkout

from benchmarks import RUNNERS, _common, run_all  # noqa: E402


def test_every_runner_file_is_shipped_in_the_wheel():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    shipped = {s: t for s, t in force.items() if s.startswith("benchmarks/")}
    modules = {f"benchmarks/{p.name}" for p in (ROOT / "benchmarks").glob("*.py")}
    assert set(shipped) == modules
    assert all(
        t == "flowlab/_benchmarks/" + s.split("/", 1)[1] for s, t in shipped.items()
    )


@pytest.mark.parametrize("name", list(RUNNERS))
def test_runners_have_the_interface(name):
    module = importlib.import_module(f"benchmarks.{RUNNERS[name].module}")
    for attr in ("run", "markdown", "headline", "main"):
        assert callable(getattr(module, attr)), f"{module.__name__} lacks {attr}"
    assert module.__doc__.splitlines()[0]


def test_latest_summary_is_a_full_run_of_every_runner():
    text = (ROOT / "benchmarks" / "latest.md").read_text()
    runs = text.split("## Runs", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in runs.splitlines() if line.startswith("| ")]
    by_runner = {row[0].lstrip("| "): row for row in rows[2:]}
    assert set(by_runner) == set(RUNNERS)
    assert all(row[2] == "full" for row in by_runner.values())
    assert "QUICK" not in text


@pytest.mark.parametrize(
    "page",
    ["README.md", "benchmarks/README.md", "docs/benchmarks.md"],
)
def test_quoted_speed_numbers_are_the_latest_summary(page):
    latest = _common.blocks((ROOT / "benchmarks" / "latest.md").read_text())
    quoted = _common.blocks((ROOT / page).read_text())
    assert run_all.HEADLINE in quoted, f"{page} has no headline block"
    assert quoted[run_all.HEADLINE] == latest[run_all.HEADLINE], (
        f"{page} quotes numbers that are not benchmarks/latest.md's; run "
        "`python -m benchmarks.run_all --publish` (or --summarise RUN --publish)"
    )


def _couplings_record(cores: int, flowlab_ms: float, emd_ms: float) -> dict:
    """A record as `bench_couplings` writes it: exact OT and `ot.emd` at 512."""

    def timing(ms):
        return {"median": ms / 1e3, "best": ms / 1e3}

    ratio = emd_ms / flowlab_ms
    contenders = {
        "exact_ot": {
            "first_call_s": 3.0,
            "cost": 4.0327,
            "timing": timing(flowlab_ms),
            "rel_diff_to_emd": 0.0,
            "emd_over_flowlab": ratio,
            "emd_over_flowlab_best": ratio,
        },
        "pot_emd": {"first_call_s": None, "cost": 4.0327, "timing": timing(emd_ms)},
    }
    result = {
        "settings": {"sizes": [512], "reps": 3, "big_reps": 1, "stable_max": 512},
        "pot_skipped": None,
        "sizes": [{"n": 512, "reps": 3, "contenders": contenders}],
    }
    machine = {"date": "2026-01-01T00:00:00+00:00", "cpu": "test", "cores": 2}
    machine |= {"cores_usable": cores, "device_kind": "cpu", "jax": "0"}
    return {
        "runner": "couplings",
        "quick": False,
        "wall_s": 1.0,
        "machine": machine,
        "result": result,
    }


def test_summary_of_a_run_folder_and_publish_refuses_a_partial_run(tmp_path):
    run = tmp_path / "run"
    for name, cores, ms in (("couplings", 2, 40.0), ("couplings-1core", 1, 16.0)):
        _common.write_run(run / name, _couplings_record(cores, ms, 20.0), "table")
    records = run_all.load_run(run)
    assert list(records) == ["couplings", "couplings-1core"]
    text = run_all.summary(records, "run")
    block = _common.blocks(text)[run_all.HEADLINE]
    assert "exact OT coupling, batch 512, 2 cores usable" in block
    assert "0.50× emd's speed (slower)" in block  # 20 / 40
    assert "exact OT coupling, batch 512, 1 core usable" in block
    assert "1.25× emd's speed (faster)" in block  # 20 / 16
    assert "## couplings-1core: " in text  # each runner's own tables follow
    with pytest.raises(ValueError, match="lacks devices, sampling, startup, train"):
        run_all.publish(run, records)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_a_one_core_runner_starts_confined_to_one_core(tmp_path):
    (tmp_path / "probe.py").write_text(
        "import os, sys\nprint(len(os.sched_getaffinity(0)), sys.argv[1:])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cores = RUNNERS["couplings-1core"].cores
    out = subprocess.run(
        [*run_all.python(cores), "probe", "--out", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split(maxsplit=1) == ["1", "['--out', 'x']\n"]
    every = subprocess.run(
        [*run_all.python(None), "probe"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(every.stdout.split()[0]) == len(os.sched_getaffinity(0))


def test_startup_runner_times_fresh_processes():
    """Two cheap commands (quick: 2 reps each): the record, the table, the headline."""
    from benchmarks import bench_startup

    result = bench_startup.run(quick=True, commands=["python", "help"])
    rows = result["commands"]
    assert list(rows) == ["python", "help"]
    assert all(len(r["timing"]["seconds_per_unit"]) == 2 for r in rows.values())
    assert rows["python"]["heavy"] == []
    assert "jax" not in rows["help"]["heavy"], "`flowlab --help` imports jax"
    assert "`python -m flowlab.cli --help`" in bench_startup.markdown(result)
    [row] = bench_startup.headline(result)
    assert row[0].startswith("`flowlab --help` start-up")


def test_runner_writes_its_run_folder(tmp_path):
    record = {"runner": "x", "quick": True, "result": {"n": 1}}
    _common.write_run(tmp_path / "x", record, "| a |")
    assert json.loads((tmp_path / "x" / "results.json").read_text()) == record
    assert (tmp_path / "x" / "results.md").read_text() == "| a |\n"


def test_compare_assignment_times_a_revision_beside_emd(capsys):
    """The revision comparison runs on a tiny batch (HEAD against the tree)."""
    pytest.importorskip("ot")
    git = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    if git.returncode:
        pytest.skip("needs a git checkout")
    from benchmarks import compare_assignment

    compare_assignment.main(["--base", "HEAD", "--reps", "1", "--sizes", "16"])
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| moons | 16 |")]
    assert [r.split("|")[3].strip() for r in rows] == [
        "exact_ot at HEAD",
        "exact_ot now",
        "ot.emd",
    ]
    # Every contender is exact on 16 points (the last column: excess over scipy).
    assert all(float(r.split("|")[-2]) == 0.0 for r in rows)
