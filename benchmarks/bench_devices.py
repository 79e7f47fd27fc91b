"""Training throughput of `flowlab.fit` on 1 and 8 devices (simulated on CPU).

Each device count runs in its own subprocess, because
`XLA_FLAGS=--xla_force_host_platform_device_count=N` must be set before jax is
imported. On a CPU the eight "devices" share the same cores, so these numbers check
that the sharded path works and what it costs; they are not a speed-up. On a GPU
machine the same script records real devices (`--devices` takes the real count).

    python benchmarks/bench_devices.py [--quick] [--devices 1 8]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

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


def run(device_count: int, width, depth, batch, steps, k) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--name", default="devices_cpu", help="results file stem")
    args = parser.parse_args()
    rows = []
    for label, (width, depth, batch) in MODELS.items():
        big = width >= 512
        steps = (40 if big else 400) if args.quick else (200 if big else 4000)
        k = 10 if big else 50
        for n in args.devices:
            r = run(n, width, depth, batch, steps, k)
            r |= {"model": label, "batch": batch, "steps": steps, "steps_per_call": k}
            rows.append(r)
            print(
                f"{label:28s} devices={n}: {r['steps_per_sec']:9.1f} steps/s "
                f"{r['examples_per_sec']:12.0f} examples/s"
            )
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = [
        f"Training throughput on 1 and 8 devices ({rows[0]['device_kind']}; "
        f"{meta['date']}; {os.cpu_count()} CPU cores"
        f"{'; quick' if args.quick else ''}).",
        "",
        "| model | devices | steps/s | examples/s | first call (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['mesh']} | {r['steps_per_sec']:.1f} | "
            f"{r['examples_per_sec']:.0f} | {r['first_call_seconds']:.2f} |"
        )
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
