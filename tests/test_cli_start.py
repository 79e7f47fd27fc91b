"""The command line's first seconds: arguments anywhere, a fast start, Ctrl-C, help.

Each test runs `flowlab` (or Python) in a subprocess, as a user meets it.
"""

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import helpers
import pytest

from flowlab import registry
from flowlab.cli import _parse, _split_train_args
from flowlab.config import named_configs

TINY = helpers.tiny_run(
    {
        "batch_size": 32,
        "steps_per_call": 10,
        "log_every": 10,
        "model.width": 8,
        "model.depth": 1,
        "data.n_train": 200,
        "data.n_test": 50,
        "sample.steps": 4,
    }
)


def _python(*args, timeout=300, **kwargs):
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **kwargs,
    )


def _flowlab(*args, **kwargs):
    return _python("-m", "flowlab.cli", *args, **kwargs)


# 1. Overrides before or after the flags, with or without a config name.


@pytest.mark.parametrize(
    ("argv", "config", "overrides"),
    [
        (["moons", "--steps", "3", "checkpoint_every=1"], "moons", ["a"]),
        (["--steps", "3", "moons", "checkpoint_every=1"], "moons", ["a"]),
        (["checkpoint_every=1", "--steps", "3", "moons"], "moons", ["a"]),
        (["--steps", "3", "checkpoint_every=1"], None, ["a"]),
        (["checkpoint_every=1", "--out", "o", "x.width=2"], None, ["a", "b"]),
    ],
)
def test_train_takes_config_and_overrides_around_its_flags(argv, config, overrides):
    args = _parse(["train", *argv])
    name, items = _split_train_args(args.args)
    assert name == config
    expected = {"a": "checkpoint_every=1", "b": "x.width=2"}
    assert items == [expected[k] for k in overrides]


def test_two_config_names_and_unknown_flags_are_errors():
    with pytest.raises(ValueError, match="one CONFIG at most, got \\['moons', 'x'\\]"):
        _split_train_args(["moons", "steps=3", "x"])
    out = _flowlab("train", "moons", "--stepz", "3", "steps=3")
    assert out.returncode == 2
    assert "unrecognized arguments: --stepz" in out.stderr


# The tests of one xdist worker (`--dist loadgroup`) share `issue_run`, built once.
ISSUE_RUN = pytest.mark.xdist_group("cli_start_issue_run")


@pytest.fixture(scope="module")
def issue_run(tmp_path_factory):
    """The issue's command line, run once: its run directory and its process."""
    out = tmp_path_factory.mktemp("issue") / "ck"
    res = _flowlab(
        "train",
        "moons",
        "--out",
        str(out),
        "--steps",
        "30",
        "checkpoint_every=10",
        *TINY,
        "--no-progress",
    )
    return out, res


@ISSUE_RUN
def test_the_issue_command_line_trains_with_its_override(issue_run):
    out, res = issue_run
    assert res.returncode == 0, res.stderr
    config = tomllib.loads((out / "config.toml").read_text())
    assert (config["steps"], config["checkpoint_every"]) == (30, 10)
    steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir())
    assert steps[-3:] == [10, 20, 30]


# 2. A fast start: no JAX for --help, no ott-jax unless an OT coupling is used.


def test_import_and_help_load_no_jax():
    code = (
        "import sys, contextlib, io\n"
        "import flowlab\n"
        "assert 'jax' not in sys.modules, 'import flowlab loaded jax'\n"
        "from flowlab.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as f:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0\n"
        "assert 'train' in f.getvalue()\n"
        "assert 'jax' not in sys.modules, '--help loaded jax'\n"
        "print(sorted(m for m in sys.modules if m.startswith('flowlab')))\n"
    )
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr
    assert "'flowlab.cli'" in res.stdout


def test_names_resolve_after_a_bare_import():
    """`import flowlab` defers its submodules; the registry still knows every name."""
    code = (
        "import sys\n"
        "from flowlab import registry\n"
        "print(registry.names('coupling'))\n"
        "print(registry.names('ode_solver'))\n"
        "assert 'ott' not in sys.modules\n"
        "import flowlab\n"
        "print(flowlab.sample_ode.__module__, len(dir(flowlab)))\n"
    )
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "'exact_ot'" in lines[0]
    assert "'independent'" in lines[0]
    assert "'dopri5'" in lines[1]
    assert lines[2].startswith("flowlab.sampling")


def test_the_default_run_does_not_import_ott_and_an_ot_coupling_does():
    code = (
        "import sys\n"
        "from flowlab.config import load_config\n"
        "from flowlab.experiment import build\n"
        "build(load_config(None, ['model.width=8']))\n"
        "print('ott' in sys.modules)\n"
        "exp = build(load_config(None, ['model.width=8', 'coupling=exact_ot']))\n"
        "import jax\n"
        "x = jax.random.normal(jax.random.key(0), (8, 2))\n"
        "exp.coupling(jax.random.key(1), x, x + 1.0)\n"
        "print('ott' in sys.modules)\n"
    )
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"]


def test_argument_errors_are_reported_before_jax_loads():
    """A config typo is caught by the config alone: one line, no JAX imported."""
    code = (
        "import sys\n"
        "from flowlab.cli import main\n"
        "rc = main(['train', 'model.widht=3'])\n"
        "print(rc, 'jax' in sys.modules)\n"
    )
    res = _python("-c", code)
    assert res.stdout.split() == ["2", "False"]
    assert res.stderr.strip().splitlines() == [
        "flowlab train: error: unknown config key 'model.widht'; known keys under "
        "model: ['activation', 'depth', 'name', 'time_dim', 'time_embedding', "
        "'width']."
    ]


# 6. Ctrl-C during start-up always ends the command, non-zero, with one line.


# Slow (18 s of repeated start-ups; timing-sensitive under load).
@pytest.mark.slow
@pytest.mark.heavy
def test_sigint_during_start_up_always_exits_non_zero_with_one_line(tmp_path):
    """SIGINT at 0.1-4 s after launch: imports, the backend's start, the build,
    compilation and the first steps. Without the deferred handler a SIGINT at
    0.1 s printed a traceback from inside numpy's import, at 0.12 s the process
    aborted from C++ (nanobind), and one at 0.3 s was swallowed by a garbage
    collector callback. A run that went on would train its 3,000 steps and exit 0.
    """
    for delay in (0.1, 0.3, 0.8, 1.5, 2.5, 4.0):
        out = tmp_path / f"run{delay}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowlab.cli", "train", "steps=3000", *TINY]
            + ["--out", str(out), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGINT, (delay, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (delay, err)
        assert lines[0].startswith("flowlab train: "), (delay, err)
        assert "Traceback" not in err
        assert not (out / "summary.json").exists()


# 9. Help and info that say what to do.


def test_train_help_lists_the_configs_and_the_names():
    res = _flowlab("train", "--help")
    assert res.returncode == 0
    text = res.stdout
    for name in named_configs():
        assert name in text
    rows = {
        line.split(":")[0].strip(): line.split(":", 1)[1]
        for line in text.splitlines()
        if line.startswith("  ") and ":" in line
    }
    assert set(registry.names("ode_solver")) == {
        s.strip() for s in rows["sample.solver"].split(",")
    }
    assert "exact_ot" in rows["coupling"]
    assert "package.module:attribute" in text


def test_info_with_too_many_devices_says_how_to_get_them():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    res = _flowlab("info", "--devices", "8", env={**env, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 2
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=8" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    flags = "--xla_force_host_platform_device_count=8"
    res = _flowlab(
        "info",
        "--devices",
        "8",
        env={**env, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags},
    )
    assert res.returncode == 0, res.stderr
    assert "mesh: {'data': 8}" in res.stdout


def test_other_commands_reject_stray_arguments(tmp_path):
    res = _flowlab("eval", str(tmp_path), "extra")
    assert res.returncode == 2
    assert "unrecognized arguments: extra" in res.stderr


@ISSUE_RUN
def test_summary_is_json_with_the_run_dir_line(issue_run):
    """`flowlab train` prints the summary as JSON, then where the run went.

    Read from the issue's run (`issue_run`, `--steps 30`): a second training
    process would print the same two parts.
    """
    out, res = issue_run
    assert res.returncode == 0, res.stderr
    text, last = res.stdout.rsplit("\n", 2)[0], res.stdout.strip().splitlines()[-1]
    assert last == f"run written to {out}"
    summary = json.loads(text)
    assert summary["steps"] == 30
    assert summary == json.loads((out / "summary.json").read_text())


# Slow (27 s); test_cli.py::test_bench_runs_from_an_installed_package runs the
# bench command by default.
@pytest.mark.slow
@pytest.mark.heavy
def test_bench_writes_its_results_folder_and_no_tracked_file(tmp_path):
    """`flowlab bench` writes under `--out` only; the published pages stay as they are.

    Only `python -m benchmarks.run_all --publish` rewrites them (`flowlab bench` has
    no `--publish`).
    """
    from benchmarks import run_all

    root = Path(__file__).resolve().parents[1]
    published = [root / "benchmarks" / "latest.md", *run_all.pages(root)]
    before = {p: p.read_bytes() for p in published}
    res = _flowlab(
        "bench", "--quick", "--only", "startup", "--no-torch", "--out", str(tmp_path)
    )
    assert res.returncode == 0, res.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.*"))
    assert "cpu-quick/summary.md" in written
    assert "cpu-quick/startup/results.json" in written
    assert {p: p.read_bytes() for p in published} == before
    assert "--publish" not in _flowlab("bench", "--help").stdout
