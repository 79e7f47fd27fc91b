"""The `flowlab` command line, end to end on a tiny run."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import helpers
import jax
import numpy as np
import pytest

import flowlab as fl
from flowlab import metrics, run
from flowlab.cli import main
from flowlab.experiment import run_keys

# The tests of one xdist worker (`--dist loadgroup`) share `run_dir`, built once.
SHARED = pytest.mark.xdist_group("cli_run")


# Runs are float32, as users run them (the root conftest enables x64).
pytestmark = pytest.mark.usefixtures("float32_runs")


TINY = [
    "steps=120",
    "batch_size=64",
    "steps_per_call=20",
    "log_every=40",
    "checkpoint_every=60",
    "model.width=16",
    "model.depth=2",
    "data.n_train=500",
    "data.n_test=200",
    "sample.solver=euler",
    "sample.steps=20",
]


@pytest.fixture(scope="module")
def train_process(tmp_path_factory):
    """`flowlab train moons TINY` in its own process, stderr a pipe (not a terminal).

    Built once per worker: the tests of the run directory read its output, and
    `test_progress_off_a_terminal_is_plain_lines` reads its stderr.
    """
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = subprocess.run(
        [sys.executable, "-m", "flowlab.cli", "train", "moons", *TINY, "--out", out],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return out, proc


@pytest.fixture(scope="module")
def run_dir(train_process):
    out, proc = train_process
    assert proc.returncode == 0, proc.stderr
    return out


@SHARED
def test_train_writes_a_complete_run_directory(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.toml", "metrics.jsonl", "checkpoints", "samples.png"} <= names
    assert "summary.json" in names
    lines = [
        json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in lines] == [40, 80, 120]
    assert all({"step", "loss", "steps_per_sec"} <= set(r) for r in lines)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["nfe"] == 20
    assert summary["checkpoint_step"] == 120
    assert summary["w2"] > 0
    assert np.isfinite(summary["final_loss"])
    for key in ("steps_per_sec", "train_seconds", "wall_seconds", "mmd2_unbiased"):
        assert key in summary
    assert (run_dir / "samples.png").stat().st_size > 10_000
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]


@SHARED
def test_sample_same_seed_same_samples(run_dir, tmp_path):
    a, b, c = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy"
    assert (
        main(["sample", str(run_dir), "--n", "64", "--seed", "1", "--out", str(a)]) == 0
    )
    assert (
        main(["sample", str(run_dir), "--n", "64", "--seed", "1", "--out", str(b)]) == 0
    )
    assert (
        main(["sample", str(run_dir), "--n", "64", "--seed", "2", "--out", str(c)]) == 0
    )
    xa, xb, xc = np.load(a), np.load(b), np.load(c)
    assert xa.shape == (64, 2)
    np.testing.assert_array_equal(xa, xb)
    assert not np.allclose(xa, xc)


def _velocity(exp):
    """The run's field `v(t, x, params)`, as `flowlab sample` integrates it."""
    return lambda t, x, params: exp.model_fn(params, t, x, None)


@SHARED
def test_sample_with_another_solver(run_dir, tmp_path):
    """`--solver rk4 --steps 5` are the solve's: the samples are `sample_ode`'s.

    The reference integrates the same start (`--seed 0` is the default) from the
    newest checkpoint's EMA parameters with flowlab.sample_ode. Tolerance 1e-5:
    float32, the same computation. One step fewer moves the samples by more than
    1e-3 (checked), and the config's Euler with 20 steps by about 0.1.
    """
    out = tmp_path / "rk4.npy"
    args = ["sample", str(run_dir), "--n", "32", "--solver", "rk4", "--steps", "5"]
    assert main([*args, "--out", str(out)]) == 0
    x = np.load(out)
    assert x.shape == (32, 2)
    exp, state = run.load_run(run_dir)
    x0 = exp.source.sample(jax.random.key(0), 32)
    v = _velocity(exp)  # one function: the compiled solve is reused across steps

    def solve(solver, steps):
        return np.asarray(
            fl.sample_ode(v, x0, state.ema_params, solver=solver, steps=steps).x
        )

    np.testing.assert_allclose(x, solve("rk4", 5), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(x - solve("rk4", 4))) > 1e-3


@SHARED
def test_eval_recomputes_the_summary(run_dir, tmp_path):
    """`eval` recomputes the metrics from the checkpoint, without summary.json.

    Run on a copy of the run without its summary.json; its numbers equal the
    summary's and a recomputation from the newest checkpoint: the EMA samples
    from the run's `sample` key, against the held-out points of its `test` key
    (`flowlab.experiment.run_keys`), with `flowlab.metrics`.
    """
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "summary.json").unlink()
    assert main(["eval", str(copy)]) == 0
    result = json.loads((copy / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["step"] == result["checkpoint_step"] == 120
    # Same checkpoint, same keys, same solver: the same metric.
    assert result["w2"] == pytest.approx(summary["w2"], rel=1e-6)
    exp, state = run.load_run(copy)
    keys = run_keys(exp.config)
    n = exp.config.data.n_test
    test = exp.target.sample(keys["test"], n)
    x0 = exp.source.sample(keys["sample"], n)
    x = fl.sample_ode(_velocity(exp), x0, state.ema_params, solver="euler", steps=20)
    assert result["nfe"] == int(x.nfe) == 20
    assert result["n_eval"] == n == 200
    # The same float32 samples; W2 (exact assignment) and MMD are then computed
    # in float64 from them, so the only difference is the samples' rounding.
    assert result["w2"] == pytest.approx(metrics.wasserstein2(x.x, test), rel=1e-6)
    assert result["mmd2_unbiased"] == pytest.approx(
        float(metrics.mmd(x.x, test)), rel=1e-5
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "model.widht=3"], "model.widht"),
        (["train", "model.width=abc"], "model.width"),
        (["train", "no_such_config"], "unknown config"),
        (["train", "sample.solver=leapfrog"], "sample.solver"),
        (["train", "moons", "extra"], "one CONFIG at most"),
        (["sample", "/nonexistent/run"], "not a run directory"),
    ],
)
def test_bad_input_exits_2_with_a_reason(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    extra = ["--out", str(out)] if argv[0] == "train" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@SHARED
def test_sample_rejects_bad_solver_and_output(run_dir, tmp_path, capsys):
    assert main(["sample", str(run_dir), "--solver", "leapfrog"]) == 2
    assert "--solver" in capsys.readouterr().err
    assert main(["sample", str(run_dir), "--out", str(tmp_path / "x.txt")]) == 2
    assert ".npy" in capsys.readouterr().err


@SHARED
def test_train_refuses_a_non_empty_out_dir(run_dir, capsys):
    assert main(["train", *TINY, "--out", str(run_dir), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_failed_train_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "diverged"
    # An absurd learning rate: the loss is non-finite long before the checkpoint.
    argv = ["train", *TINY, "optim.lr=1e30", "checkpoint_every=1000", "steps=200"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert not out.exists()


@SHARED
def test_progress_off_a_terminal_is_plain_lines(train_process):
    """A log (stderr not a terminal) gets plain progress lines, then the phases.

    No tqdm carriage-return frames: a line each tenth of the run (12 of the 120
    steps, rounded to the calls of 20), then one line before each phase of the
    final evaluation. The run is `run_dir`'s, which the tests above check.
    """
    _, proc = train_process
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = proc.stderr.splitlines()
    progress = [x for x in lines if x.startswith("step ")]
    assert [x.split()[1] for x in progress] == [f"{s}/120" for s in range(20, 121, 20)]
    for line in progress:
        assert re.fullmatch(
            r"step \d+/120 loss \d\.\d+ \d+ steps/s( eta \d+ s)?", line
        ), line
    assert lines[len(progress) :] == [
        "sampling 200 points with euler, 20 steps ...",
        "computing W2 and MMD on 200 x 200 points (under a second) ...",
        "plotting samples.png: 200 samples with trajectories ...",
    ]


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["eval"], ["bench"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: flowlab" in capsys.readouterr().out


def test_console_script_is_installed():
    proc = subprocess.run(
        [sys.executable, "-m", "flowlab.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "key=value" in proc.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["coupling=psychic"], "coupling: unknown coupling 'psychic'"),
        (["coupling=exact_ot", "coupling_args.epsilon=0.1"], "coupling_args.epsilon"),
        (["coupling=sinkhorn", "coupling_args.epsilon=-1"], "coupling_args.epsilon"),
        (["coupling_args.eps=0.1"], "coupling_args.eps"),
    ],
)
def test_bad_coupling_arguments_exit_2_before_a_run_directory(
    overrides, message, tmp_path, capsys
):
    out = tmp_path / "never"
    assert main(["train", "moons", *overrides, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow  # ~20 s: compiles Sinkhorn inside the step
def test_train_with_coupling_arguments(tmp_path):
    out = tmp_path / "sb"
    short = ["steps=20", "steps_per_call=10", "log_every=10", "checkpoint_every=20"]
    argv = ["train", "moons", *TINY, *short, "coupling=sinkhorn"]
    argv += ["coupling_args.epsilon=0.5", "coupling_args.hard=true"]
    argv += ["global_coupling=true", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    config = (out / "config.toml").read_text()
    assert 'coupling = "sinkhorn"' in config
    assert "global_coupling = true" in config
    assert "[coupling_args]\nepsilon = 0.5\nhard = true\n" in config
    assert json.loads((out / "summary.json").read_text())["steps"] == 20


def test_cli_docs_list_every_coupling_and_its_arguments():
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for case in helpers.ALL_COUPLINGS:
        assert f"`{case.name}`" in text, case.name
        for key in case.kwargs:
            assert f"`{key}`" in text, (case.name, key)
    assert "`coupling_args." in text
    assert "`global_coupling`" in text


# --------------------------------------------------------------------------- bench


def _installed_copy(tmp_path: Path) -> Path:
    """flowlab laid out as its wheel installs it: the package plus the files
    `pyproject.toml` force-includes (the configs, the benchmark runners)."""
    import shutil
    import tomllib

    import flowlab

    root = Path(flowlab.__file__).resolve().parents[1]
    site = tmp_path / "site"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "flowlab", site / "flowlab", ignore=skip)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    for source, target in wheel["force-include"].items():
        if (root / source).is_dir():
            shutil.copytree(root / source, site / target, ignore=skip)
        else:
            (site / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / source, site / target)
    return site


def _run_installed(site: Path, cwd: Path, *argv: str, timeout: float = 300):
    # PYTHONPATH comes before site-packages, so `flowlab` is the installed copy,
    # whatever the editable install of this checkout adds to sys.path.
    import os

    cwd.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "flowlab.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.heavy
def test_bench_runs_from_an_installed_package(tmp_path):
    site = _installed_copy(tmp_path)
    proc = _run_installed(site, tmp_path / "work", "bench", "--list")
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The runners come from the package, not from a checkout's benchmarks/.
    shipped = site / "flowlab" / "_benchmarks"
    assert f"runners: flowlab._benchmarks ({shipped})" in proc.stdout
    for name in ("train", "sampling", "couplings", "couplings-1core", "devices"):
        assert any(line.split()[0] == name for line in proc.stdout.splitlines())
    proc = _run_installed(site, tmp_path / "work", "bench", "--help")
    assert proc.returncode == 0
    assert "usage: flowlab bench" in proc.stdout
    proc = _run_installed(site, tmp_path / "work", "bench", "--only", "psychic")
    assert proc.returncode == 2
    assert "invalid choice: 'psychic'" in proc.stderr


def test_bench_from_a_checkout_finds_its_benchmarks(capsys):
    # Without a packaged copy (an editable install), the checkout's benchmarks/.
    import importlib.util

    if importlib.util.find_spec("flowlab._benchmarks") is not None:
        pytest.skip("this flowlab ships its own runners")
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "runners: benchmarks (" in out
    assert "couplings-1core" in out


@pytest.mark.slow  # ~1-2 min: compiles every coupling, and POT at n = 512
def test_bench_quick_run_from_an_installed_package(tmp_path):
    site = _installed_copy(tmp_path)
    work = tmp_path / "work"
    argv = ["bench", "--quick", "--only", "couplings", "--name", "smoke"]
    proc = _run_installed(site, work, *argv, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = work / "benchmarks" / "runs" / "smoke"
    record = json.loads((run / "couplings" / "results.json").read_text())
    assert record["quick"] is True
    assert record["runner"] == "couplings"
    (size,) = record["result"]["sizes"]
    assert size["n"] == 512
    contenders = size["contenders"]
    if "pot_emd" in contenders:  # exact OT reaches POT's optimal cost
        assert contenders["exact_ot_x64"]["rel_diff_to_emd"] == pytest.approx(
            0, abs=1e-12
        )
    summary = (run / "summary.md").read_text()
    assert "exact OT coupling, batch 512" in summary
    assert "QUICK (smoke) run" in summary
