"""Never lose a run: SIGKILL + --resume, corrupt checkpoints, SIGTERM (subprocesses).

Also what a resume says and does: the printed step, the learning-rate schedule
kept or stretched by a new `--steps`, `--strict`, and the checkpoint step that
`sample` and `eval` report (a small finished run, in process).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import helpers
import numpy as np
import optax
import pytest

# The tests of one xdist worker (`--dist loadgroup`) share the module fixtures
# below (an uninterrupted run and a killed one), which are then built once.
SHARED = pytest.mark.xdist_group("resume")

RUN = [
    "moons",
    "steps=10000",
    "batch_size=64",
    "steps_per_call=10",
    "log_every=500",
    "checkpoint_every=1000",
    "keep_checkpoints=50",
    "model.width=16",
    "model.depth=2",
    "data.n_train=1000",
    "data.n_test=200",
    "sample.solver=euler",
    "sample.steps=10",
]


def _flowlab(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "flowlab.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        **kwargs,
    )


def _start(out: Path):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowlab.cli",
            "train",
            *RUN,
            "--out",
            str(out),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(proc, out: Path, step: int) -> None:
    deadline = time.time() + 300
    while not (out / "checkpoints" / str(step)).is_dir():
        assert proc.poll() is None, f"training ended early: {proc.communicate()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


def _checkpoint_bytes(out: Path, step: int) -> dict[str, bytes]:
    root = out / "checkpoints" / str(step) / "state"
    return {
        str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


def _samples(out: Path, tmp: Path) -> np.ndarray:
    # In this process (float32, tests/training/conftest.py): the same command as
    # `flowlab sample`, without a second interpreter and import of jax per run.
    from flowlab.cli import main

    path = tmp / f"{out.name}.npy"
    assert (
        main(["sample", str(out), "--n", "500", "--seed", "3", "--out", str(path)]) == 0
    )
    return np.load(path)


def _final_params(out: Path):
    import jax

    from flowlab.run import load_run

    _, state = load_run(out)
    return jax.tree_util.tree_leaves(jax.device_get((state.params, state.ema_params)))


def _steps(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["step"] for x in lines]


class Finished(NamedTuple):
    """What a finished run is compared on: parameters, samples, logged steps."""

    params: list
    samples: np.ndarray
    steps: list[int]


def _finished(out: Path, tmp: Path) -> Finished:
    return Finished(_final_params(out), _samples(out, tmp), _steps(out))


def _assert_bitwise_equal_runs(a: Finished, b: Finished) -> None:
    for x, y in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.steps == b.steps


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Finished:
    """The uninterrupted run, once per xdist worker that runs this module."""
    tmp = tmp_path_factory.mktemp("ref")
    proc = _flowlab("train", *RUN, "--out", str(tmp / "run"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return _finished(tmp / "run", tmp)


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A run SIGKILLed after its second checkpoint; tests resume copies of it."""
    out = tmp_path_factory.mktemp("killed") / "run"
    proc = _start(out)
    _wait_for_checkpoint(proc, out, 2000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    return out


@SHARED
@pytest.mark.heavy
def test_sigkill_then_resume_is_bitwise_identical(reference, killed, tmp_path):
    out = shutil.copytree(killed, tmp_path / "run")
    proc = _flowlab("train", "--resume", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (out / "summary.json").is_file()
    _assert_bitwise_equal_runs(reference, _finished(out, tmp_path))


def _corrupt(out: Path, step: int) -> None:
    for path in (out / "checkpoints" / str(step)).rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage" * 3)


@SHARED
@pytest.mark.heavy
def test_corrupted_newest_checkpoint_is_reported_and_skipped(
    reference, killed, tmp_path
):
    out = shutil.copytree(killed, tmp_path / "run")
    steps = sorted(
        int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()
    )
    newest, previous = steps[-1], steps[-2]
    assert previous == newest - 1000
    _corrupt(out, newest)
    proc = _flowlab("train", "--resume", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    # One line each, nothing else (no warning category, source line or traceback).
    assert proc.stderr.splitlines() == [
        f"checkpoint at step {newest} is unreadable: moved to "
        f"checkpoints/corrupt/{newest}; using step {previous}",
        f"resumed from step {previous} of 10000 "
        f"(checkpoint {out}/checkpoints/{previous})",
    ]
    assert (out / "checkpoints" / "corrupt" / str(newest)).is_dir()
    # The quarantined step did not shadow the new save of that step.
    assert (out / "checkpoints" / str(newest) / "state").is_dir()
    _assert_bitwise_equal_runs(reference, _finished(out, tmp_path))


@SHARED
@pytest.mark.heavy
def test_sigterm_saves_a_checkpoint_before_exit(reference, tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_checkpoint(proc, out, 1000)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: checkpoint saved at step" in err
    saved = int(err.split("checkpoint saved at step ")[1].split(".")[0])
    assert (out / "checkpoints" / str(saved)).is_dir()
    proc = _flowlab("train", "--resume", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    _assert_bitwise_equal_runs(reference, _finished(out, tmp_path))


def test_resume_rejects_bad_input(tmp_path):
    proc = _flowlab("train", "--resume", str(tmp_path / "none"))
    assert proc.returncode == 2
    assert "not a run directory" in proc.stderr
    proc = _flowlab("train", "moons", "--resume", str(tmp_path))
    assert proc.returncode == 2
    assert "--resume" in proc.stderr
    proc = _flowlab("train", "moons", "--strict", "--out", str(tmp_path / "new"))
    assert proc.returncode == 2
    assert proc.stderr == (
        "flowlab train: error: --strict applies to --resume RUN_DIR only.\n"
    )


# ---------------------------------------------------------- a small run, in process

SMALL = [
    "moons",
    *helpers.tiny_run(
        {
            "steps": 300,
            "steps_per_call": 10,
            "log_every": 50,
            "checkpoint_every": 100,
            "keep_checkpoints": 50,
        }
    ),
]
LR = 2e-3  # the default optim.lr, with the default cosine schedule


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A finished 300-step run with checkpoints at 100, 200 and 300."""
    from flowlab.cli import main

    out = tmp_path_factory.mktemp("small") / "run"
    assert main(["train", *SMALL, "--out", str(out), "--no-progress"]) == 0
    return out


def _lr(out: Path) -> dict[int, float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["lr"] for r in map(json.loads, lines)}


def _params(out: Path):
    import jax

    from flowlab.run import load_run

    return jax.tree_util.tree_leaves(jax.device_get(load_run(out)[1].params))


@pytest.mark.xdist_group("small")
def test_resume_with_more_steps_keeps_the_lr_schedule(small, tmp_path, capsys):
    """The default `optim.lr_resume=keep`: a longer run does not re-stretch it.

    The cosine schedule keeps its 300 steps and then stays at its final value,
    0, so the parameters do not move after step 300 (AdamW's update and weight
    decay are both scaled by the learning rate; the EMA still moves).
    """
    import tomllib

    from flowlab.cli import main

    out = shutil.copytree(small, tmp_path / "run")
    assert main(["train", "--resume", str(out), "--steps", "400", "--no-progress"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"resumed from step 300 of 400 (checkpoint {out}/checkpoints/300); the lr "
        "schedule keeps its 300 steps, then stays at 0 (optim.lr_resume=keep)"
    ]
    lr = _lr(out)
    assert sorted(lr) == [50, 100, 150, 200, 250, 300, 350, 400]
    cosine = optax.cosine_decay_schedule(LR, 300)
    assert lr[250] == pytest.approx(float(cosine(250)), rel=1e-6)
    assert lr[350] == lr[400] == 0.0
    for a, b in zip(_params(small), _params(out), strict=True):
        np.testing.assert_array_equal(a, b)
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["steps"] == 400
    assert config["optim"]["schedule_steps"] == 300


@pytest.mark.xdist_group("small")
def test_resume_with_lr_resume_stretch_spans_the_new_steps(small, tmp_path, capsys):
    import tomllib

    from flowlab.cli import main

    out = shutil.copytree(small, tmp_path / "run")
    argv = ["train", "optim.lr_resume=stretch", "--resume", str(out)]
    assert main([*argv, "--steps", "400", "--no-progress"]) == 0
    cosine = optax.cosine_decay_schedule(LR, 400)
    assert capsys.readouterr().err.splitlines() == [
        f"resumed from step 300 of 400 (checkpoint {out}/checkpoints/300); the lr "
        "schedule is stretched from 300 to 400 steps: lr at step 300 0 -> "
        f"{float(cosine(300)):.3g} (optim.lr_resume=stretch)"
    ]
    lr = _lr(out)
    assert lr[350] == pytest.approx(float(cosine(350)), rel=1e-6)
    assert lr[350] > 0
    assert lr[250] == pytest.approx(
        float(optax.cosine_decay_schedule(LR, 300)(250)), rel=1e-6
    )  # the lines before the resumed step are the first run's
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["steps"] == 400
    assert "schedule_steps" not in config["optim"]


@pytest.mark.xdist_group("small")
def test_strict_refuses_a_fallback_and_sample_eval_name_their_step(
    small, tmp_path, capsys
):
    from flowlab.cli import main

    out = shutil.copytree(small, tmp_path / "run")
    _corrupt(out, 300)
    for argv in (
        ["train", "--resume", str(out), "--strict"],
        ["sample", str(out), "--strict"],
        ["eval", str(out), "--strict"],
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err == (
            f"flowlab {argv[0]}: error: checkpoint at step 300 is unreadable; "
            "--strict forbids falling back to step 200.\n"
        )
    assert (out / "checkpoints" / "300").is_dir()  # --strict moves nothing
    assert not (out / "checkpoints" / "corrupt").exists()

    samples = tmp_path / "x.npy"
    assert main(["sample", str(out), "--n", "50", "--out", str(samples)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "checkpoint at step 300 is unreadable: moved to checkpoints/corrupt/300; "
        "using step 200",
        "sampling 50 points with euler, 10 steps, from the checkpoint at step 200 ...",
    ]
    assert captured.out == f"50 samples written to {samples}\n"
    assert (out / "checkpoints" / "corrupt" / "300").is_dir()

    assert main(["eval", str(out), "--strict"]) == 0  # 300 is out of the way now
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "sampling 200 points with euler, 10 steps ...",
        "computing W2 and MMD on 200 x 200 points (under a second) ...",
    ]
    result = json.loads((out / "eval.json").read_text())
    assert result["checkpoint_step"] == result["step"] == 200
    assert json.loads(captured.out) == result


def test_info_prints_devices_and_mesh():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = _flowlab("info", "--devices", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "devices: 4" in proc.stdout
    assert "mesh: {'data': 2}" in proc.stdout
    assert "jax " in proc.stdout
    proc = _flowlab("info", "--devices", "9", env=env)
    assert proc.returncode == 2
    assert "devices" in proc.stderr
