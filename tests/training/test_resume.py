"""Never lose a run: SIGKILL + --resume, corrupt checkpoints, SIGTERM (subprocesses)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
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
    for path in (out / "checkpoints" / str(newest)).rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage" * 3)
    proc = _flowlab("train", "--resume", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"step {newest}" in proc.stderr
    assert "unreadable" in proc.stderr
    assert f"using step {previous}" in proc.stderr
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
