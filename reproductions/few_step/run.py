"""Few-step generation: every `flowlab.flowmaps` method at 1, 2, 4 and 8 steps.

For each task (N(0, I) -> moons, 8gaussians -> moons, N(0, I) -> the 8x8 digits)
and seed: a teacher trained by Cond-OT flow matching, sampled with 100 Euler steps
and with dopri5; then each few-step method trained for the same number of steps
(reflow from the teacher, one and two rounds; consistency training and distillation;
shortcut; MeanFlow; Lagrangian and Eulerian map distillation), sampled at 1, 2, 4
and 8 jumps. Quality is the exact W2 between generated and held-out points; the
training cost is steps and seconds (the teacher's own cost is listed once). The
composition gap ||X(1/2, 1, X(0, 1/2, x)) - X(0, 1, x)|| is set beside the model's
one-step error against the teacher's dopri5 map, on held-out source points.

    python -m reproductions.few_step.run --tasks moons --seeds 0 1 2   # one process
    python -m reproductions.few_step.run --table                        # README
    python -m reproductions.few_step.run --quick                        # ~1 min

Each (task, seed) writes `<out>/cells/<task>_seed<k>.json` (and the one-step
samples, `.npz`), so cells can run in separate processes; `--table` gathers them
into `results.json`, `table.md`, `one_step.png` and the README's results block.
"""

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._common import load_average, machine_info, replace_blocks
from flowlab import data, flowmaps, models, registry, sample_ode, training
from flowlab.losses import FlowMatchingLoss
from flowlab.paths import AffinePath
from flowlab.run import write_atomic
from flowlab.schedules import cond_ot

from .._format import num, seed_range
from .._metrics import exact_w2

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
FIGURE = HERE.parents[1] / "docs" / "assets" / "few_step_one_step.png"
STEPS = (1, 2, 4, 8)

TASKS: dict[str, dict[str, Any]] = {
    "moons": {"source": "gaussian", "target": "moons", "width": 128, "depth": 4},
    "8gaussians_moons": {
        "source": "8gaussians", "target": "moons", "width": 128, "depth": 4,
    },
    "digits": {"source": "gaussian", "target": "digits", "width": 512, "depth": 4},
}  # fmt: skip

FULL = {"teacher_steps": 10_000, "steps": 10_000, "batch": 256, "n_eval": 10_000,
        "pairs": 20_000, "lr": 1e-3}  # fmt: skip
DIGITS = {**FULL, "teacher_steps": 5_000, "steps": 5_000, "pairs": 10_000}
EIGHT = {**FULL, "n_eval": 5_000}
"""8gaussians -> moons scores 5,000 points (an exact W2 of 10,000 takes 19 s here,
and the 10,000-point acceptance is on N(0, I) -> moons)."""
QUICK = {"teacher_steps": 300, "steps": 200, "batch": 128, "n_eval": 300,
         "pairs": 1_000, "lr": 1e-3}  # fmt: skip

METHODS = (
    "reflow_1",
    "reflow_2",
    "consistency_training",
    "consistency_distillation",
    "shortcut",
    "mean_flow",
    "lagrangian",
    "eulerian",
)
TRAJECTORY = ("trajectory", "trajectory_scratch", "trajectory_long")
"""Trajectory distillation on the teacher's 100-step Euler solutions saved at
k / 8, from the teacher's weights, from a fresh network, and from the teacher's
weights for three times the steps (added later, every task)."""
LONG = 3
"""How many times the other methods' steps `trajectory_long` trains."""
EXTRA = {"moons": ("mean_flow_p1", "reflow_euler_1", "reflow_euler_2")}
"""Variants run on moons only: MeanFlow with the paper's adaptive weight p = 1,
and reflow whose pairs are the teacher's 100-step Euler samples (the reference
sampler of the acceptance) rather than its dopri5 solve."""
ALL = (*METHODS, *EXTRA["moons"], *TRAJECTORY)
"""Every method, in the order that gives each its key (`fold_in(k, index)`): the
methods added to finished cells with `--add` come last, so the earlier keys hold."""
GRID = 8
"""The trajectory grid: jumps between the points k / 8 cover 1, 2, 4 and 8 steps."""


def task_methods(task: str) -> tuple[str, ...]:
    """The methods of one task's cell, in `ALL`'s order."""
    return (*METHODS, *EXTRA.get(task, ()), *TRAJECTORY)


def settings(task: str, quick: bool) -> dict[str, Any]:
    if quick:
        return QUICK
    return {"digits": DIGITS, "8gaussians_moons": EIGHT}.get(task, FULL)


w2 = exact_w2
"""Exact W2 (`reproductions._metrics.exact_w2`: POT when installed)."""


def _net(task: str):
    spec = TASKS[task]
    return models.MLP(
        width=spec["width"], depth=spec["depth"], activation="silu",
        time_embedding="identity",
    )  # fmt: skip


def _fit(model_fn, params, loss, key, s, *, source, target):
    optimizer, lr_fn = training.make_optimizer("adamw", s["lr"], total_steps=s["steps"])
    t0 = time.perf_counter()
    result = training.fit(
        model_fn, params, loss, source=source, target=target, key=key,
        steps=s["steps"], batch_size=s["batch"], optimizer=optimizer, lr_fn=lr_fn,
        progress=False, steps_per_call=50, log_every=s["steps"],
    )  # fmt: skip
    jax.block_until_ready(result.state.ema_params)
    return result.state.ema_params, time.perf_counter() - t0, result.history[-1]


def _method_loss(name: str, teacher: flowmaps.Teacher):
    return {
        "consistency_training": lambda: flowmaps.ConsistencyTraining(),
        "consistency_distillation": lambda: flowmaps.ConsistencyDistillation(teacher),
        "shortcut": lambda: flowmaps.ShortcutLoss(),
        "mean_flow": lambda: flowmaps.MeanFlowLoss(),
        "mean_flow_p1": lambda: flowmaps.MeanFlowLoss(power=1.0),
        "lagrangian": lambda: flowmaps.LagrangianDistillation(teacher),
        "eulerian": lambda: flowmaps.EulerianDistillation(teacher),
    }[name]()


def run_cell(
    task: str, seed: int, quick: bool = False, only: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Teacher and every method on one task and seed: the cell's numbers.

    With `only`, just those methods (the teacher is trained again, identically,
    but not scored): what `--add` merges into a finished cell.
    """
    s = settings(task, quick)
    spec = TASKS[task]
    target = registry.build("data", spec["target"])
    dim = target.event_shape[0]
    source = registry.build(
        "data",
        spec["source"],
        **registry.accepted("data", spec["source"], {"dim": dim}),
    )
    root = jax.random.key(seed)
    k_init, k_teacher, k_eval, k_test, k_methods = jax.random.split(root, 5)
    net = _net(task)
    wall0 = time.perf_counter()

    # The teacher: Cond-OT flow matching, the same network with one time.
    v_fn, v_init = models.init_model(net, k_init, jnp.zeros(dim))
    teacher_params, teacher_seconds, _ = _fit(
        v_fn, v_init, FlowMatchingLoss(AffinePath(cond_ot())), k_teacher,
        {**s, "steps": s["teacher_steps"]}, source=source, target=target,
    )  # fmt: skip
    field = flowmaps.EulerMap(v_fn).velocity_field()  # v(t, x, params)
    teacher = flowmaps.Teacher(field, teacher_params)
    n = s["n_eval"]
    test = np.asarray(target.held_out(k_test, n))
    n = min(n, len(test))  # the digits hold out 359 images
    test = test[:n]
    x0 = source.sample(k_eval, n)
    reference = sample_ode(field, x0, teacher_params, solver="dopri5")
    names = only or task_methods(task)
    rows = [] if only else [
        {"method": "teacher", "sampler": "dopri5", "nfe": int(reference.nfe),
         "w2": w2(reference.x, test)},
        {"method": "teacher", "sampler": "euler", "nfe": 100,
         "w2": w2(sample_ode(field, x0, teacher_params, solver="euler",
                             steps=100).x, test)},
    ]  # fmt: skip
    for k in () if only else STEPS:
        out = sample_ode(field, x0, teacher_params, solver="euler", steps=k)
        rows.append(
            {"method": "teacher", "sampler": "euler", "nfe": k, "w2": w2(out.x, test)}
        )
    methods: dict[str, Any] = {}
    one_step: dict[str, np.ndarray] = {"data": test[:2000]}
    reflows = {}
    euler_pairs = {"solver": "euler", "solver_steps": 100}
    for prefix, fold, solver in (
        ("reflow_", 99, {}),
        ("reflow_euler_", 98, euler_pairs),
    ):
        if any(n[:-1] == prefix for n in names):  # both rounds of one reflow
            reflows[prefix] = flowmaps.reflow(
                jax.random.fold_in(k_methods, fold), v_fn, teacher_params, teacher,
                source=source, rounds=2, pairs=s["pairs"], steps=s["steps"],
                batch_size=s["batch"], progress=False, steps_per_call=50,
                log_every=s["steps"], **solver,
            )  # fmt: skip
    for name in names:
        key = jax.random.fold_in(k_methods, ALL.index(name))
        if name.startswith("reflow"):  # round k of the one two-round reflow
            done = reflows[name[:-1]][: int(name[-1])]
            params = done[-1].params
            fmap = flowmaps.EulerMap(v_fn)
            seconds = sum(r.pair_seconds + r.train_seconds for r in done)
            train_steps = s["steps"] * len(done)
        elif name in TRAJECTORY:
            t0 = time.perf_counter()
            paths = flowmaps.teacher_trajectories(
                jax.random.fold_in(key, 2), teacher, source, s["pairs"], grid=GRID,
                solver="euler", steps=100,
            )  # fmt: skip
            jax.block_until_ready(paths)
            solve_seconds = time.perf_counter() - t0
            scratch = name == "trajectory_scratch"
            start = {} if scratch else {"velocity_params": teacher_params}
            fmap, fn, init = flowmaps.init_flow_map(
                net, jax.random.fold_in(key, 1), jnp.zeros(dim), **start
            )
            train_steps = s["steps"] * (LONG if name == "trajectory_long" else 1)
            params, seconds, _ = _fit(
                fn, init, flowmaps.TrajectoryDistillation(), key,
                {**s, "steps": train_steps}, source=None, target=data.Empirical(paths),
            )  # fmt: skip
            seconds += solve_seconds
        else:
            fmap, fn, init = flowmaps.init_flow_map(net, jax.random.fold_in(key, 1),
                                                    jnp.zeros(dim))  # fmt: skip
            params, seconds, _ = _fit(
                fn, init, _method_loss(name, teacher), key, s, source=source,
                target=target,
            )  # fmt: skip
            train_steps = s["steps"]
        curve = []
        for k in STEPS:
            out = flowmaps.sample_flow_map(fmap, params, x0, steps=k)
            curve.append({"steps": k, "w2": w2(out.x, test)})
            if k == 1:
                one = np.asarray(out.x)
                one_step[name] = one[:2000]
        half = flowmaps.sample_flow_map(fmap, params, x0, times=[0.0, 0.5, 1.0]).x
        methods[name] = {
            "train_steps": train_steps,
            "train_seconds": seconds,
            "curve": curve,
            "composition_gap": float(np.mean(np.linalg.norm(
                np.asarray(half - one).reshape(n, -1), axis=1))),
            "one_step_error": float(np.mean(np.linalg.norm(
                np.asarray(one - reference.x).reshape(n, -1), axis=1))),
            "finite": bool(np.all(np.isfinite(one))),
        }  # fmt: skip
        print(f"{task} seed {seed} {name}: " + ", ".join(
            f"{c['steps']}: {c['w2']:.3f}" for c in curve), flush=True)  # fmt: skip
    return {
        "task": task,
        "seed": seed,
        "settings": s,
        "n_eval_used": n,
        "teacher_seconds": teacher_seconds,
        "teacher": rows,
        "methods": methods,
        "wall_seconds": time.perf_counter() - wall0,
        "load_average": load_average(),
    }, one_step


def _cell_path(out: Path, task: str, seed: int) -> Path:
    return out / "cells" / f"{task}_seed{seed}.json"


def _teacher_w2(cell, sampler: str, nfe: int | None = None) -> float:
    for row in cell["teacher"]:
        if row["sampler"] == sampler and (nfe is None or row["nfe"] == nfe):
            return row["w2"]
    raise KeyError((sampler, nfe))


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return num(values[0])
    return f"{num(statistics.mean(values))} ± {num(statistics.stdev(values), 2)}"


def build_table(cells: list[dict]) -> tuple[str, dict[str, Any]]:
    """The README table (one row per task and method) and the acceptance checks."""
    by_task: dict[str, list[dict]] = {}
    for cell in cells:
        by_task.setdefault(cell["task"], []).append(cell)
    lines = [
        "| task | method | seeds | W2 at 1 | 2 | 4 | 8 steps | train steps | "
        "train s | composition gap | 1-step error |",
        "| :--- | :--- | :---: |" + " ---: |" * 8,
    ]
    checks: dict[str, Any] = {}
    for task in TASKS:
        group = sorted(by_task.get(task, []), key=lambda c: c["seed"])
        if not group:
            continue
        seeds = seed_range([c["seed"] for c in group])
        for sampler, nfe, label in (("dopri5", None, "teacher, dopri5"),
                                    ("euler", 100, "teacher, 100 Euler")):  # fmt: skip
            w = [_teacher_w2(c, sampler, nfe) for c in group]
            nfes = [
                r["nfe"]
                for c in group
                for r in c["teacher"]
                if r["sampler"] == sampler and (nfe is None or r["nfe"] == nfe)
            ]
            lines.append(
                f"| {task} | {label} (NFE {round(statistics.mean(nfes))}) | {seeds} | "
                f"{_mean_sd(w)} | | | | {group[0]['settings']['teacher_steps']:,} | "
                f"{num(statistics.mean(c['teacher_seconds'] for c in group), 3)} | | |"
            )
        euler = [_mean_sd([_teacher_w2(c, "euler", k) for c in group]) for k in STEPS]
        lines.append(
            f"| {task} | teacher, k Euler steps | {seeds} | {' | '.join(euler)} | | | "
            "| |"
        )
        names = [
            m for m in group[0]["methods"] if all(m in c["methods"] for c in group)
        ]
        for name in names:
            ms = [c["methods"][name] for c in group]
            cols = [
                _mean_sd([m["curve"][i]["w2"] for m in ms]) for i in range(len(STEPS))
            ]
            lines.append(
                f"| {task} | {name} | {seeds} | {' | '.join(cols)} | "
                f"{ms[0]['train_steps']:,} | "
                f"{num(statistics.mean(m['train_seconds'] for m in ms), 3)} | "
                f"{_mean_sd([m['composition_gap'] for m in ms])} | "
                f"{_mean_sd([m['one_step_error'] for m in ms])} |"
            )
        ref = statistics.mean(_teacher_w2(c, "euler", 100) for c in group)
        checks[task] = {
            "teacher_euler100_w2": ref,
            "methods": {
                name: {
                    "w2_1": statistics.mean(c["methods"][name]["curve"][0]["w2"]
                                            for c in group),
                    "w2_4": statistics.mean(c["methods"][name]["curve"][2]["w2"]
                                            for c in group),
                }
                for name in names
            },
        }  # fmt: skip
        for name, m in checks[task]["methods"].items():
            m["ratio_1"] = m["w2_1"] / ref
            m["ratio_4"] = m["w2_4"] / ref
            m["per_seed"] = {
                str(c["seed"]): [
                    c["methods"][name]["curve"][i]["w2"] / _teacher_w2(c, "euler", 100)
                    for i in (0, 2)
                ]
                for c in group
            }
            m["meets_1_step"] = m["ratio_1"] <= 1.5
            m["meets_4_steps"] = m["ratio_4"] <= 1.2
    return "\n".join(lines), checks


def verdict(checks: dict[str, Any], cells: list[dict]) -> str:
    """The acceptance, method by method: which meet the 1- and 4-step bars."""
    lines = []
    for task, check in checks.items():
        seeds = seed_range(sorted(c["seed"] for c in cells if c["task"] == task))
        n = next(c.get("n_eval_used", c["settings"]["n_eval"])
                 for c in cells if c["task"] == task)  # fmt: skip
        ref = check["teacher_euler100_w2"]
        both = [m for m, v in check["methods"].items()
                if v["meets_1_step"] and v["meets_4_steps"]]  # fmt: skip
        ratios = ", ".join(
            f"{m} {v['ratio_1']:.2f}× / {v['ratio_4']:.2f}×"
            for m, v in sorted(
                check["methods"].items(), key=lambda kv: kv[1]["ratio_1"]
            )
        )
        lines.append(
            f"- **{task}** (seeds {seeds}, W2 on {n:,} vs {n:,} points): the "
            f"teacher's 100-step W2 is {num(ref)}; W2 at 1 / 4 steps over it, best "
            f"first: {ratios}. Both bars (≤ 1.5× at 1 step, ≤ 1.2× at 4): "
            f"{', '.join(both) if both else 'none (a miss)'}."
        )
        if both and len(check["methods"][both[0]]["per_seed"]) > 1:
            per_seed = "; ".join(
                f"{m}: " + ", ".join(
                    f"seed {k} {r1:.2f}× / {r4:.2f}×"
                    for k, (r1, r4) in check["methods"][m]["per_seed"].items()
                )
                for m in both
            )  # fmt: skip
            lines.append(
                f"  Seed by seed, each over its own teacher (1 / 4 steps): {per_seed}."
            )
    return "\n".join(lines)


def plot(out: Path, task: str = "moons", seed: int = 0) -> Path | None:
    """Samples at one step of each method beside the data (one task, one seed)."""
    path = out / "cells" / f"{task}_seed{seed}.npz"
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = dict(np.load(path))
    # A fresh draw of the data (the cells keep the first held-out rows, which a
    # data set may hold in order), and limits that show it with a margin.
    target = registry.build("data", TASKS[task]["target"])
    samples["data"] = np.asarray(target.sample(jax.random.key(seed), 2000))
    lo, hi = samples["data"].min(0), samples["data"].max(0)
    pad = 0.25 * (hi - lo)
    names = list(samples)
    cols = 5
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 1.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        x = samples[name]
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4,
                   color="tab:blue" if name == "data" else "tab:orange")  # fmt: skip
        ax.set_title(name if name == "data" else f"{name}, 1 step", fontsize=9)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal")
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    figure = out / "one_step.png"
    fig.savefig(figure, dpi=100)
    plt.close(fig)
    return figure


def table(out: Path) -> str:
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    text, checks = build_table(cells)
    results = {"cells": cells, "checks": checks, "machine": machine_info()}
    write_atomic(out / "results.json", json.dumps(results, indent=1))
    write_atomic(out / "table.md", text + "\n")
    figure = plot(out)
    if out == RESULTS and figure is not None:  # the docs page shows it too
        shutil.copyfile(figure, FIGURE)
    if out == RESULTS and README.exists():
        blocks = {"results": text, "verdict": verdict(checks, cells)}
        write_atomic(README, replace_blocks(README.read_text(), blocks))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings")
    parser.add_argument("--table", action="store_true", help="only gather the cells")
    parser.add_argument(
        "--add", nargs="+", choices=ALL, default=(),
        help="run these methods and merge them into the finished cells",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="default results/ (results/quick/)")
    args = parser.parse_args(argv)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    if not args.table:
        for task in args.tasks:
            for seed in args.seeds:
                path = _cell_path(out, task, seed)
                cell, samples = run_cell(task, seed, args.quick, tuple(args.add))
                if args.add:  # merged into the finished cell
                    old = json.loads(path.read_text())
                    old["methods"].update(cell["methods"])
                    old["added_wall_seconds"] = cell["wall_seconds"]
                    cell = old
                    samples = {**np.load(path.with_suffix(".npz")), **samples}
                np.savez(path.with_suffix(".npz"), **samples)
                write_atomic(path, json.dumps(cell, indent=1))
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
