"""Training throughput of `flowlab.fit` on 1 and 8 devices (simulated on a CPU).

Each device count runs in its own subprocess, because
`XLA_FLAGS=--xla_force_host_platform_device_count=N` must be set before jax is
imported. On a CPU the eight "devices" share the same cores, so these numbers check
that the sharded path works and what it costs; they are not a speed-up. On a GPU
machine the same runner records real devices (`--devices` takes the real count).

    python -m benchmarks.bench_devices [--quick] [--devices 1 8] [--out DIR]
"""

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from . import _common as common

__all__ = ["headline", "main", "markdown", "run"]

WORKER = r"""
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
import flowlab as fl
from flowlab import data, models, paths, schedules

devices, width, depth, batch, steps, k = map(int, sys.argv[1:7])
module = models.MLP(width=width, depth=depth, activation="selu")
model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(2))
loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
t0 = time.perf_counter()
result = fl.fit(model_fn, params, loss, source=data.Gaussian(2), target=data.Moons(),
                key=jax.random.key(1), steps=steps, batch_size=batch,
                steps_per_call=k, log_every=k, devices=devices, progress=False)
wall = time.perf_counter() - t0
rates = [r["steps_per_sec"] for r in result.history[1:]]  # first window compiles
print("RESULT " + json.dumps({
    "devices": jax.device_count(), "mesh": devices,
    "device_kind": jax.devices()[0].device_kind,
    "first_call_seconds": k / result.history[0]["steps_per_sec"],
    "steps_per_sec": float(np.median(rates)),
    "examples_per_sec": float(np.median(rates)) * batch,
    "wall_seconds": wall,
}))
"""

MODELS = {
    "torchcfm 3x64, batch 256": (64, 3, 256),
    "4x512, batch 4096": (512, 4, 4096),
}


def measure(device_count: int, width, depth, batch, steps, k) -> dict[str, Any]:
    """One `fit` in a fresh process that sees `device_count` devices."""
    env = dict(os.environ)
    if device_count > 1 and "cuda" not in env.get("JAX_PLATFORMS", ""):
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={device_count}"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            *map(str, (device_count, width, depth, batch, steps, k)),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def run(quick: bool = False, devices: list[int] | None = None) -> dict[str, Any]:
    """Every model on every device count; a JSON-ready dict."""
    devices = devices or [1, 8]
    rows = []
    for label, (width, depth, batch) in MODELS.items():
        big = width >= 512
        steps = (40 if big else 400) if quick else (200 if big else 4000)
        k = 10 if big else 50
        for n in devices:
            print(f"  {label}, {n} devices", file=sys.stderr, flush=True)
            r = measure(n, width, depth, batch, steps, k)
            r |= {"model": label, "batch": batch, "steps": steps, "steps_per_call": k}
            rows.append(r)
    return {"devices": devices, "cpu_count": os.cpu_count(), "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    """The device table in markdown."""
    rows = result["rows"]
    headers = ["model", "devices", "steps/s", "examples/s", "first call (s)"]
    table = common.markdown_table(
        headers,
        [
            [
                r["model"],
                r["mesh"],
                f"{r['steps_per_sec']:.1f}",
                f"{r['examples_per_sec']:,.0f}",
                f"{r['first_call_seconds']:.2f}",
            ]
            for r in rows
        ],
    )
    kind = rows[0]["device_kind"] if rows else "?"
    counts = " and ".join(map(str, result["devices"]))
    return (
        f"**Training throughput of `fit` on {counts} devices** ({kind}; "
        f"{result['cpu_count']} CPU cores; on a CPU the devices "
        "are simulated and share the cores).\n\n" + table
    )


def headline(result: dict[str, Any]) -> list[list[str]]:
    """Summary rows: steps/s per device count, per model."""
    rows = []
    for label in MODELS:
        mine = [r for r in result["rows"] if r["model"] == label]
        if not mine:
            continue
        counts = " / ".join(str(r["mesh"]) for r in mine)
        simulated = mine[0]["device_kind"] == "cpu"
        rows.append(
            [
                f"`fit` steps/s, {label}, {counts} devices",
                " / ".join(common.fmt(r["steps_per_sec"]) for r in mine),
                "–",
                "simulated CPU devices share the cores: a check of the sharded "
                "path, not a speed-up"
                if simulated
                else "real devices",
            ]
        )
    return rows


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, nargs="+", help="device counts")


def main(argv: list[str] | None = None) -> int:
    return common.runner_main(
        "devices",
        __doc__,
        run,
        markdown,
        argv,
        uses_torch=False,
        add_arguments=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
