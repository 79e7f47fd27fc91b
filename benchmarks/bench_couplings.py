"""Minibatch couplings: time per call and transport cost, beside POT's `ot.emd`.

Each batch is x0 ~ N(0, I) and x1 ~ two moons (`flowlab.data.Moons`), 2-D, float32
as users train. For every batch size every contender couples the same batch:

- flowlab `exact_ot()` (float32 inputs: the auction on 32-bit integers, refined
  until its certificate says the pairing is optimal for the float32 costs), and
  again with x64 enabled on float64 copies (64-bit integers, refined to float64);
- flowlab `sinkhorn(eps)` for two regularisations (pairs drawn from the plan, with
  the number of Sinkhorn iterations), `stable_matching()`, `independent()`;
- POT `ot.emd` (torchcfm's exact OT): the time includes building the float64 cost
  matrix with `ot.dist` in numpy, as torchcfm does per batch.

flowlab calls are jitted; the first call (trace + compile + one call) is reported
apart from the median of the timed calls, which run interleaved with `ot.emd` so
that both see the same machine load. The transport cost is the mean squared
distance of the returned pairs, in float64; exact OT's must equal POT's.

XLA's CPU thread pool is sized when the process starts, so to measure on one core
confine the process at launch (`run_all` does it for `couplings-1core`):

    python -m benchmarks.bench_couplings [--quick] [--sizes N ...] [--out DIR]
    taskset -c 0 python -m benchmarks.bench_couplings --out DIR
"""

import argparse
import sys
import time
from typing import Any

import jax
import numpy as np

from flowlab import couplings, data

from . import _common as common

__all__ = ["headline", "main", "markdown", "run"]

EPSILONS = (0.05, 0.5)
HEADLINE_N = 512  # the batch of the summary row (torchcfm's 2-D batch size)


def settings(
    quick: bool, sizes: list[int] | None = None, reps: int | None = None
) -> dict[str, Any]:
    """Batch sizes, timed calls per size, and which contenders run where."""
    if quick:
        cfg = {"sizes": [512], "reps": 3, "big_reps": 1, "stable_max": 512}
    else:
        cfg = {"sizes": [256, 512, 1024, 4096], "reps": 9, "big_reps": 3}
        cfg["stable_max"] = 4096
    if sizes:
        cfg["sizes"] = sorted(sizes)
        cfg["stable_max"] = max(cfg["stable_max"], max(sizes))
    if reps:
        cfg["reps"] = cfg["big_reps"] = reps
    return cfg


def batch(n: int) -> tuple[jax.Array, jax.Array]:
    """The float32 batch `(x0, x1)` of size `n` (fixed keys)."""
    x0 = data.Gaussian(2).sample(jax.random.key(n), n)
    x1 = data.Moons().sample(jax.random.key(n + 1), n)
    return x0, x1


def pair_cost(y0, y1) -> float:
    """Mean squared distance of the pairs, in float64."""
    d = np.asarray(y0, np.float64) - np.asarray(y1, np.float64)
    return float((d**2).sum(-1).mean())


def flowlab_call(coupling, x0, x1, x64: bool = False):
    """`(first_call_s, run, pairs)`: `run(units)` couples `units` times, blocking."""
    key = jax.random.key(7)
    fn = jax.jit(coupling)

    def call():
        if x64:
            with jax.enable_x64(True):
                return jax.block_until_ready(
                    fn(key, np.asarray(x0, np.float64), np.asarray(x1, np.float64))
                )
        return jax.block_until_ready(fn(key, x0, x1))

    start = time.perf_counter()
    pairs = call()
    first = time.perf_counter() - start

    def run(units):
        for _ in range(units):
            call()

    return first, run, pairs


def pot_emd(ot, x0, x1):
    """`(run, cost)` for `ot.emd` on float64 copies, the cost matrix built inside."""
    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    w = np.full(len(a), 1.0 / len(a))

    def solve():
        m = ot.dist(a, b)  # squared Euclidean, as torchcfm's OTPlanSampler
        return m, ot.emd(w, w, m, numItermax=10_000_000)

    m, plan = solve()

    def run(units):
        for _ in range(units):
            solve()

    return run, float((plan * m).sum())


def bench_size(n: int, cfg: dict[str, Any], ot) -> dict[str, Any]:
    """Every contender on one batch of size `n`."""
    x0, x1 = batch(n)
    reps = cfg["reps"] if n <= 1024 else cfg["big_reps"]
    contenders: dict[str, Any] = {
        "exact_ot": (couplings.exact_ot(), False),
        "exact_ot_x64": (couplings.exact_ot(), True),
        **{f"sinkhorn_{eps}": (couplings.sinkhorn(eps), False) for eps in EPSILONS},
        "independent": (couplings.independent(), False),
    }
    if n <= cfg["stable_max"]:
        contenders["stable_matching"] = (couplings.stable_matching(), False)
    entries: dict[str, Any] = {}
    runs = {}
    for name, (coupling, x64) in contenders.items():
        first, run, pairs = flowlab_call(coupling, x0, x1, x64)
        entries[name] = {"first_call_s": first, "cost": pair_cost(*pairs)}
        runs[name] = run
        if name.startswith("sinkhorn"):
            out, _ = jax.jit(coupling.solve)(x0, x1)
            entries[name]["sinkhorn_iterations"] = int(out.n_iters)
            entries[name]["converged"] = bool(out.converged)
    if ot is not None:
        runs["pot_emd"], emd_cost = pot_emd(ot, x0, x1)
        entries["pot_emd"] = {"first_call_s": None, "cost": emd_cost}
    timings = common.time_interleaved(runs, dict.fromkeys(runs, 1), reps)
    for name, timing in timings.items():
        entries[name]["timing"] = timing
    if ot is not None:
        for name in ("exact_ot", "exact_ot_x64"):
            entries[name]["rel_diff_to_emd"] = entries[name]["cost"] / emd_cost - 1
            entries[name]["emd_over_flowlab"] = (
                timings["pot_emd"]["median"] / timings[name]["median"]
            )
            entries[name]["emd_over_flowlab_best"] = (
                timings["pot_emd"]["best"] / timings[name]["best"]
            )
    return {"n": n, "reps": reps, "contenders": entries}


def run(
    quick: bool = False, sizes: list[int] | None = None, reps: int | None = None
) -> dict[str, Any]:
    """The whole couplings benchmark; a JSON-ready dict."""
    cfg = settings(quick, sizes, reps)
    ot, reason = common.optional_module("ot")
    result: dict[str, Any] = {
        "settings": cfg,
        "data": "x0 ~ N(0, I_2), x1 ~ flowlab.data.Moons(); float32",
        "pot": getattr(ot, "__version__", None),
        "pot_skipped": None if ot is not None else f"POT not importable ({reason})",
        "sizes": [],
    }
    for n in cfg["sizes"]:
        print(f"  n = {n}", file=sys.stderr, flush=True)
        result["sizes"].append(bench_size(n, cfg, ot))
    return result


LABELS = {
    "exact_ot": "flowlab exact_ot (float32)",
    "exact_ot_x64": "flowlab exact_ot (x64)",
    "sinkhorn_0.05": "flowlab sinkhorn ε=0.05",
    "sinkhorn_0.5": "flowlab sinkhorn ε=0.5",
    "stable_matching": "flowlab stable_matching",
    "independent": "flowlab independent",
    "pot_emd": "POT ot.emd (+ ot.dist)",
}


def markdown(result: dict[str, Any]) -> str:
    """The couplings table in markdown."""
    headers = [
        "n",
        "coupling",
        "first call (s)",
        "per call, ms (best)",
        "pair cost",
        "vs emd cost",
        "emd time / this: median (best)",
        "notes",
    ]
    rows = []
    for size in result["sizes"]:
        for name, label in LABELS.items():
            if name not in size["contenders"]:
                continue
            e = size["contenders"][name]
            t = e["timing"]
            first = e["first_call_s"]
            notes = ""
            if "sinkhorn_iterations" in e:
                notes = f"{e['sinkhorn_iterations']} iterations"
                notes += "" if e["converged"] else " (not converged)"
            rel = e.get("rel_diff_to_emd")
            ratio = e.get("emd_over_flowlab")
            best = e.get("emd_over_flowlab_best")
            rows.append(
                [
                    size["n"],
                    label,
                    "–" if first is None else f"{first:.2f}",
                    f"{common.fmt(1e3 * t['median'])} ({common.fmt(1e3 * t['best'])})",
                    f"{e['cost']:.6f}",
                    "–" if rel is None else f"{rel:+.1e}",
                    "–" if ratio is None else f"{ratio:.2f}× ({best:.2f}×)",
                    notes,
                ]
            )
    parts = [
        "#### Minibatch couplings (N(0, I) → moons, 2-D)",
        "",
        f"Median of {result['settings']['reps']} interleaved calls "
        f"({result['settings']['big_reps']} at n = 4096); pair cost = mean squared "
        "distance of the returned pairs.",
        "",
        common.markdown_table(headers, rows),
    ]
    if result["pot_skipped"]:
        parts += ["", f"POT columns skipped: {result['pot_skipped']}."]
    if result["settings"]["stable_max"] < max(result["settings"]["sizes"]):
        parts += [
            "",
            "stable_matching is skipped above n = "
            f"{result['settings']['stable_max']} in this mode.",
        ]
    return "\n".join(parts)


def headline(result: dict[str, Any], cores: int | None = None) -> list[list[str]]:
    """Summary row: exact OT against `ot.emd` at batch 512 (or the nearest size)."""
    size = min(result["sizes"], key=lambda r: abs(r["n"] - HEADLINE_N))
    e = size["contenders"]
    where = f", {cores} core{'s' if cores != 1 else ''} usable" if cores else ""
    ours = e["exact_ot"]
    peer = e.get("pot_emd")
    ratio = ours.get("emd_over_flowlab")
    same = ours.get("rel_diff_to_emd")
    note = "–"
    if ratio is not None:
        faster = "faster" if ratio >= 1 else "slower"
        note = f"{ratio:.2f}× emd's speed ({faster}); cost {same:+.1e} vs emd's"
    return [
        [
            f"exact OT coupling, batch {size['n']}{where}",
            f"`exact_ot` {common.fmt(1e3 * ours['timing']['median'])} ms",
            "–"
            if peer is None
            else f"POT `ot.emd` {common.fmt(1e3 * peer['timing']['median'])} ms",
            note,
        ]
    ]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", help="batch sizes to time")
    parser.add_argument("--reps", type=int, help="timed calls per size")


def main(argv: list[str] | None = None) -> int:
    return common.runner_main(
        "couplings",
        __doc__,
        run,
        markdown,
        argv,
        uses_torch=False,
        add_arguments=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
