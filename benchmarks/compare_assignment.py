"""exact_ot's assignment solver at an earlier revision and now, beside POT's ot.emd.

For a change to `flowlab/couplings/_assignment.py` (issue 11's float32 refinement,
say): times, in one process and interleaved rep by rep so that all see the same
load,

- `base`: `exact_ot` with the solver of git revision `--base` (the package of that
  revision, `git archive REV flowlab`, imported as `flowlab_base`; needs a git
  checkout), i.e. the
  cost matrix, the assignment and the gather of `x1`, jitted;
- `now`: `flowlab.couplings.exact_ot()` of the working tree, jitted;
- `ot.emd` on float64 copies with the cost matrix built by `ot.dist` inside, as
  `bench_couplings` and torchcfm do (needs POT: the `bench` extra).

Batches as `bench_couplings`: x0 ~ N(0, I_2), x1 ~ two moons, float32, keys `n` and
`n + 1`; `--data 1d` adds x0, x1 ~ N(0, 1) in 1-D. x64 is off (the default outside
the tests) unless `--x64`, which runs both solvers on float64 copies. Reported per
contender: median and best wall ms per call, median process CPU ms per call, the
first call (trace + compile + run) apart, and the excess of the pairing's cost over
the optimum of the very cost matrix the solver saw, cast to float64 (scipy's
`linear_sum_assignment`), relative. `uptime`'s load average is printed before and
after. Without `--base` only `now` and `ot.emd` run.

    python -m benchmarks.compare_assignment --base 984938b [--reps 15]
        [--sizes 512 1024] [--data moons 1d] [--x64]
"""

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np


def load_revision(rev: str, directory: str):
    """`flowlab.couplings` of git revision `rev`, imported as `flowlab_base`."""
    archive = subprocess.run(
        ["git", "archive", rev, "flowlab"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
    os.rename(
        os.path.join(directory, "flowlab"), os.path.join(directory, "flowlab_base")
    )
    sys.path.insert(0, directory)
    try:
        return importlib.import_module("flowlab_base.couplings")
    finally:
        sys.path.remove(directory)


def batch(kind: str, n: int, x64: bool):
    from flowlab import data

    if kind == "moons":
        x0 = data.Gaussian(2).sample(jax.random.key(n), n)
        x1 = data.Moons().sample(jax.random.key(n + 1), n)
    else:
        x0 = jax.random.normal(jax.random.key(n), (n, 1), "float32")
        x1 = jax.random.normal(jax.random.key(n + 1), (n, 1), "float32")
    x0, x1 = np.asarray(x0, np.float32), np.asarray(x1, np.float32)
    if x64:
        return x0.astype(np.float64), x1.astype(np.float64)
    return x0, x1


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main(argv=None):
    """Time the contenders and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--data", nargs="+", default=["moons"], choices=["moons", "1d"])
    parser.add_argument("--x64", action="store_true")
    parser.add_argument("--base", help="the git revision to compare with")
    args = parser.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import ot
    from scipy.optimize import linear_sum_assignment

    from flowlab import couplings
    from flowlab.couplings import linear_assignment as la_new

    coupling = couplings.exact_ot()
    versions = {"now": la_new}
    if args.base is not None:
        with tempfile.TemporaryDirectory() as tmp:
            versions = {
                "base": load_revision(args.base, tmp).linear_assignment
            } | versions

    def with_solver(la):
        return lambda key, x0, x1: (x0, x1[la(coupling.cost_matrix(x0, x1))])

    fns = {name: jax.jit(with_solver(la)) for name, la in versions.items()}
    solvers = {
        name: jax.jit(lambda x0, x1, la=la: (m := coupling.cost_matrix(x0, x1), la(m)))
        for name, la in versions.items()
    }
    load0 = os.getloadavg()
    key = jax.random.key(7)
    rows = []
    for kind in args.data:
        for n in args.sizes:
            x0, x1 = batch(kind, n, args.x64)
            a, b = x0.astype(np.float64), x1.astype(np.float64)
            w = np.full(n, 1.0 / n)
            runs, first, excess = {}, {}, {}
            for name, fn in fns.items():
                runs[name] = lambda fn=fn, x0=x0, x1=x1: jax.block_until_ready(
                    fn(key, x0, x1)
                )
                first[name] = timed(runs[name])[0]
                # exactness on the very matrix the solver saw (XLA may round the
                # float32 costs differently in another program): both from one jit
                cost, sigma = solvers[name](x0, x1)
                cost, sigma = np.asarray(cost, np.float64), np.asarray(sigma)
                assert sorted(sigma.tolist()) == list(range(n)), name
                r, c = linear_sum_assignment(cost)
                best = cost[r, c].sum()
                excess[name] = (cost[np.arange(n), sigma].sum() - best) / best
            runs["ot.emd"] = lambda w=w, a=a, b=b: ot.emd(
                w, w, ot.dist(a, b), numItermax=10_000_000
            )
            runs["ot.emd"]()
            plan = ot.emd(w, w, cost, numItermax=10_000_000)  # the last matrix
            excess["ot.emd"] = ((plan * cost).sum() * n - best) / best
            first["ot.emd"] = None
            times = {name: [] for name in runs}
            for _ in range(args.reps):
                for name, run in runs.items():
                    times[name].append(timed(run))
            for name in runs:
                wall = [t[0] for t in times[name]]
                cpu = [t[1] for t in times[name]]
                rows.append(
                    (
                        kind,
                        n,
                        name,
                        1e3 * statistics.median(wall),
                        1e3 * min(wall),
                        1e3 * statistics.median(cpu),
                        first[name],
                        excess[name],
                    )
                )
            print(f"done {kind} {n}", flush=True)
    load1 = os.getloadavg()
    print()
    print(
        f"x64 {'on (float64 inputs)' if args.x64 else 'off (float32 inputs)'}, "
        f"{args.reps} interleaved reps, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"POT {ot.__version__}; load average (1, 5, 15 min) "
        f"{tuple(round(x, 2) for x in load0)} before, "
        f"{tuple(round(x, 2) for x in load1)} after"
    )
    print()
    print(
        "| data | n | contender | median ms | best ms | CPU ms (median) | "
        "first call s | excess over optimum |"
    )
    print("| :--- | ---: | :--- | ---: | ---: | ---: | ---: | ---: |")
    for kind, n, name, med, best, cpu, first, exc in rows:
        label = {"base": f"exact_ot at {args.base}", "now": "exact_ot now"}.get(
            name, name
        )
        f = "–" if first is None else f"{first:.2f}"
        print(
            f"| {kind} | {n} | {label} | {med:.1f} | {best:.1f} | {cpu:.1f} | {f} | "
            f"{exc:.1e} |"
        )


if __name__ == "__main__":
    main()
