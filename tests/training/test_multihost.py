"""Two processes on this machine stand in for two hosts (gloo CPU collectives)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import helpers
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
TINY = [
    "moons",
    *helpers.tiny_run(
        {"steps": 400, "steps_per_call": 20, "log_every": 100, "checkpoint_every": 200}
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, process: int | None = None, port: int | None = None) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    if process is not None:
        env["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"
        env["JAX_NUM_PROCESSES"] = "2"
        env["JAX_PROCESS_ID"] = str(process)
    return env


def _run_two(cmd: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = [
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env=_env(2, i, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    return [
        subprocess.CompletedProcess(cmd, p.returncode, o, e)
        for p, (o, e) in zip(procs, outs, strict=True)
    ]


def _result(stdout: str) -> dict:
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.heavy
def test_two_hosts_match_one_host_with_the_same_devices(tmp_path):
    worker = [sys.executable, str(HERE / "multihost_worker.py")]
    two = _run_two(worker, tmp_path)
    for proc in two:
        assert proc.returncode == 0, proc.stderr[-2000:]
    one = subprocess.run(
        worker, env=_env(4), capture_output=True, text=True, timeout=600, check=False
    )
    assert one.returncode == 0, one.stderr[-2000:]
    reference = _result(one.stdout)
    assert reference["devices"] == 4
    assert not reference["distributed"]
    for proc in two:
        got = _result(proc.stdout)
        assert got["distributed"]
        assert got["devices"] == 4
        # Same global batch, keys and mesh size: only the cross-process reduction
        # order differs (float32 round-off, measured ~1e-7).
        np.testing.assert_allclose(got["losses"], reference["losses"], rtol=1e-5)


@pytest.mark.slow
def test_two_host_cli_run_writes_once_and_resumes(tmp_path):
    cli = [sys.executable, "-m", "flowlab.cli", "train"]
    out = tmp_path / "run"
    for proc in _run_two([*cli, *TINY, "--out", str(out), "--no-progress"], tmp_path):
        assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [
        json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [100, 200, 300, 400]  # process 0 alone writes the log
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir()) == [200, 400]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"] == 4
    resume = [*cli, "--resume", str(out), "--steps", "600", "--no-progress"]
    for proc in _run_two(resume, tmp_path):
        assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [
        json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [100, 200, 300, 400, 500, 600]
    sample = subprocess.run(
        [sys.executable, "-m", "flowlab.cli", "sample", str(out), "--n", "50"],
        env=_env(1),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert sample.returncode == 0, sample.stderr
    assert np.load(out / "samples.npy").shape == (50, 2)
