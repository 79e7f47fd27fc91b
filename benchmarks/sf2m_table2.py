r"""Reproduce Tong et al. 2023 ([SF]²M), Table 2: 2-D W2 and normalised path energy.

Tasks N→8gaussians, 8gaussians→moons, N→moons, N→scurve; methods I-CFM, OT-CFM,
SB-CFM and FM (Lipman's σ_min path; Gaussian source only), with the paper's
protocol (see `PROTOCOL` and docs/reproduction.md):

- data: torchcfm's generators (`flowlab.data`, checked against the originals in
  tests/data/test_torchcfm_generators.py); 10k training points per distribution,
  a Gaussian source drawn fresh each step (as torchcfm's runner does), 10k test
  points and 10k evaluation source points;
- model and optimiser: MLP 3×64 SELU with t appended, AdamW lr 1e-3, weight decay
  1e-5, constant learning rate, no EMA, batch 512, 19,532 steps (1000 epochs of
  10k / 512), t ~ U(0, 1);
- evaluation: 100 Euler steps from the 10k evaluation source points; W2 is the exact
  OT distance (POT's network simplex when importable, else scipy's assignment)
  between the 10k samples and the 10k test points; the path energy
  $E\int_0^1\|v(t, x_t)\|^2dt$ is integrated along the same Euler steps and
  $\mathrm{NPE} = |PE - W_2^2(q_0, q_1)| / W_2^2(q_0, q_1)$, with $W_2(q_0, q_1)$ the
  exact OT distance between the evaluation source points and the test points.

Every (task, method, seed) result is written as one JSON file the moment it
finishes, and results already on disk are skipped, so the 75-run table can be
completed over several sessions; `--table` rebuilds the markdown table from
whatever results exist (a partial table says so in its first line).

    python benchmarks/sf2m_table2.py [--tasks ...] [--methods ...] [--seeds 0 1 ...]
        [--steps N] [--n-eval N] [--out DIR] [--force]
    python benchmarks/sf2m_table2.py --table
    python benchmarks/sf2m_table2.py --compare-w2   # time POT against scipy once
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowlab import couplings, data, losses, metrics, models, paths, schedules
from flowlab.run import write_atomic
from flowlab.training import fit, make_optimizer

try:
    from benchmarks import _common as common
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    import _common as common

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "sf2m_table2"
TABLE = HERE / "results" / "sf2m_table2.md"

PROTOCOL = {
    "n_train": 10_000,
    "batch_size": 512,
    "steps": 19_532,  # 1000 epochs of 10,000 / 512 batches
    "width": 64,
    "depth": 3,
    "activation": "selu",
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "lr_schedule": "constant",
    "ema": "none",
    "time_sampler": "uniform [0, 1)",
    "solver": "euler",
    "solver_steps": 100,
    "n_eval": 10_000,
    "seeds": [0, 1, 2, 3, 4],
    "data": {
        "gaussian": "N(0, I) in 2-D",
        "8gaussians": "torchcfm sample_8gaussians: radius 5, covariance sqrt(0.1) I",
        "moons": "torchdyn generate_moons(noise=0.2) * 3 - 1",
        "scurve": "scikit-learn make_s_curve(noise=0.05) on (x, z), times 1.5 "
        "(torchcfm runner's sklearn data module)",
    },
}
# Before the runner's S-curve was adopted: results without `protocol["data"]`.
LEGACY_DATA = {
    **PROTOCOL["data"],
    "scurve": "scikit-learn make_s_curve(noise=0.1) on (x, z), not rescaled",
}
STEPS_PER_CALL = 257  # 19,532 = 76 x 257: one compiled call size for a full run
SKIP_NONFINITE = "skip"  # SB-CFM's target diverges at t = 0 (drawn w.p. ~2^-23)


class Task(NamedTuple):
    """A transport problem: source and target sampler names and a label."""

    source: str
    target: str
    label: str


TASKS: dict[str, Task] = {
    "normal_8gaussians": Task("gaussian", "8gaussians", "N→8gaussians"),
    "8gaussians_moons": Task("8gaussians", "moons", "8gaussians→moons"),
    "normal_moons": Task("gaussian", "moons", "N→moons"),
    "normal_scurve": Task("gaussian", "scurve", "N→scurve"),
}


class Method(NamedTuple):
    """How a method trains: its path, its coupling, and what it is defined for."""

    label: str
    sigma: float
    path_fn: Callable[[float], paths.AbstractPath]
    coupling_fn: Callable[[float], Any]
    gaussian_source_only: bool
    note: str


# Cheapest first: the run order within a seed (measured per-step cost on CPU).
METHODS: dict[str, Method] = {
    "icfm": Method(
        "I-CFM",
        0.1,
        paths.ConstantNoisePath,
        lambda s: couplings.independent(),
        False,
        "x_t = (1-t)x0 + t x1 + σz, σ = 0.1, independent pairs",
    ),
    "fm": Method(
        "FM",
        0.1,
        lambda s: paths.AffinePath(schedules.lipman_ot(s)),
        lambda s: couplings.independent(),
        True,
        "Lipman's path x_t = t x1 + (1 - (1 - σ_min)t) x0, σ_min = 0.1",
    ),
    "sbcfm": Method(
        "SB-CFM",
        1.0,
        paths.schrodinger_bridge,
        lambda s: couplings.sinkhorn(epsilon=2 * s**2),
        False,
        "x_t = (1-t)x0 + t x1 + σ sqrt(t(1-t)) z, σ = 1.0, Sinkhorn plan ε = 2σ² = 2",
    ),
    "otcfm": Method(
        "OT-CFM",
        0.1,
        paths.ConstantNoisePath,
        lambda s: couplings.exact_ot(),
        False,
        "I-CFM's path (σ = 0.1) on exact minibatch OT pairs",
    ),
}

TABLE_ORDER = ("otcfm", "icfm", "fm", "sbcfm")  # the paper's row order

# (method, task) -> (W2 mean, W2 std or None, NPE); None where the paper has "—".
PUBLISHED: dict[tuple[str, str], tuple[float, float | None, float] | None] = {
    ("otcfm", "normal_8gaussians"): (0.303, 0.043, 0.031),
    ("otcfm", "8gaussians_moons"): (0.601, 0.027, 0.015),
    ("otcfm", "normal_moons"): (0.130, 0.016, 0.083),
    ("otcfm", "normal_scurve"): (0.144, 0.028, 0.027),
    ("icfm", "normal_8gaussians"): (0.373, 0.103, 0.202),
    ("icfm", "8gaussians_moons"): (1.557, 0.407, 2.680),
    ("icfm", "normal_moons"): (0.178, 0.014, 0.891),
    ("icfm", "normal_scurve"): (0.242, 0.141, 0.856),
    ("fm", "normal_8gaussians"): (0.343, None, 0.190),
    ("fm", "normal_moons"): (0.209, None, 0.762),
    ("fm", "normal_scurve"): (0.198, None, 0.743),
    ("sbcfm", "normal_8gaussians"): (2.314, 2.112, 1.000),
    ("sbcfm", "8gaussians_moons"): None,
    ("sbcfm", "normal_moons"): (0.434, None, 0.995),
    ("sbcfm", "normal_scurve"): (0.341, None, 0.745),
}


def cells(
    tasks: Sequence[str] = tuple(TASKS), methods: Sequence[str] = tuple(METHODS)
) -> list[tuple[str, str]]:
    """The (task, method) pairs that are defined, in run order (cheap methods first).

    FM needs a Gaussian source, so it has no 8gaussians→moons cell (15 in all).
    """
    return [
        (task, method)
        for method in METHODS
        if method in methods
        for task in TASKS
        if task in tasks
        and not (
            METHODS[method].gaussian_source_only and TASKS[task].source != "gaussian"
        )
    ]


def result_path(out: Path, task: str, method: str, seed: int) -> Path:
    """Where the result of one (task, method, seed) is stored."""
    return Path(out) / f"{task}__{method}__seed{seed}.json"


# ---------------------------------------------------------------------------------
# Exact W2
# ---------------------------------------------------------------------------------


def w2_backends() -> list[str]:
    """Exact W2 solvers available, fastest first: POT's `emd2`, then scipy."""
    _, reason = common.optional_module("ot")
    return (["pot"] if reason is None else []) + ["scipy"]


def wasserstein2(x, y, backend: str | None = None) -> tuple[float, str]:
    """Exact W2 between two equal-size point sets and the backend that solved it.

    `pot`: POT's network simplex (`ot.emd2`, uniform weights, squared-Euclidean
    cost in float64) with an iteration cap high enough that it ends optimal (it
    raises if it does not); `scipy`: `flowlab.metrics.wasserstein2`.
    """
    backend = backend or w2_backends()[0]
    if backend == "scipy":
        return metrics.wasserstein2(x, y), backend
    if backend != "pot":
        raise ValueError(f"unknown W2 backend {backend!r}; expected 'pot' or 'scipy'.")
    import ot

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape}, {y.shape}.")
    n = x.shape[0]
    weights = np.full(n, 1.0 / n)
    cost = ot.dist(x, y, metric="sqeuclidean")
    value, log = ot.emd2(weights, weights, cost, numItermax=10**9, log=True)
    if log.get("warning"):
        raise RuntimeError(f"POT's emd2 did not reach the optimum: {log['warning']}")
    return float(np.sqrt(max(value, 0.0))), backend


# ---------------------------------------------------------------------------------
# One result
# ---------------------------------------------------------------------------------


def _keys(task: str, seed: int) -> dict[str, jax.Array]:
    """Data keys of one (task, seed), shared by every method (same data per seed)."""
    root = jax.random.fold_in(jax.random.key(seed), list(TASKS).index(task))
    names = ("train_target", "train_source", "test", "eval_source", "init", "train")
    return dict(zip(names, jax.random.split(root, len(names)), strict=True))


def _sampler(name: str) -> data.AbstractSampler:
    """The sampler of one of `PROTOCOL["data"]`."""
    if name == "gaussian":
        return data.Gaussian(2)
    if name == "scurve":  # torchcfm's runner (its utils have no S-curve)
        return data.SCurve(noise=0.05, scale=1.5)
    return data.get(name)


def same_data(result: dict[str, Any], task: str) -> bool:
    """Whether `result` used the current definitions of `task`'s two data sets."""
    used = result.get("protocol", {}).get("data", LEGACY_DATA)
    spec = TASKS[task]
    return all(used.get(k) == PROTOCOL["data"][k] for k in (spec.source, spec.target))


def _git_commit() -> dict[str, Any]:
    def git(*args):
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return out.stdout.strip() if out.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "flowlab")
    return {
        "commit": git("rev-parse", "HEAD"),
        "flowlab_dirty_files": dirty.splitlines() if dirty else [],
    }


def coupling_seconds_per_step(
    coupling, source, target, batch_size: int, key, reps: int = 50
) -> float:
    """Median seconds of one jitted coupling call on a training-sized batch.

    The batch is drawn once from the training samplers; the first call (compile)
    is not timed. Multiplied by the steps it estimates the coupling's share of the
    training time (inside the fused step it runs the same computation).
    """
    k0, k1, kc = jax.random.split(key, 3)
    x0 = jax.block_until_ready(source.sample(k0, batch_size))
    x1 = jax.block_until_ready(target.sample(k1, batch_size))
    fn = jax.jit(coupling)
    jax.block_until_ready(fn(kc, x0, x1))
    seconds = []
    for k in jax.random.split(kc, reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(k, x0, x1))
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


_MODULE = models.MLP(
    PROTOCOL["width"], PROTOCOL["depth"], PROTOCOL["activation"], "identity"
)
_MODEL_FN = models.apply_fn(_MODULE)


def _velocity(t, x, params):
    """The trained field `v(t, x, params)`, the same function in every run.

    So the evaluation's compiled ODE solve is reused from one result to the next.
    """
    return _MODEL_FN(params, t, x, None)


def run_one(
    task: str,
    method: str,
    seed: int,
    *,
    steps: int = PROTOCOL["steps"],
    n_eval: int = PROTOCOL["n_eval"],
    n_train: int = PROTOCOL["n_train"],
    out: Path | None = None,
    w2_backend: str | None = None,
    steps_per_call: int = STEPS_PER_CALL,
    coupling_reps: int = 50,
    reference_w2: float | None = None,
    git: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one (task, method, seed); write its JSON to `out`.

    `reference_w2` is $W_2(q_0, q_1)$ on this (task, seed)'s evaluation points when
    already known (it depends on neither the method nor the training). `git` is
    the commit and uncommitted flowlab files of the code this process imported
    (taken when the run started: others may commit while it runs); default: now.
    """
    if (task, method) not in cells():
        raise ValueError(f"no cell ({task!r}, {method!r}); see cells().")
    spec, m = TASKS[task], METHODS[method]
    keys = _keys(task, seed)
    source, target = _sampler(spec.source), _sampler(spec.target)
    train_target = data.Empirical(target.sample(keys["train_target"], n_train))
    # A Gaussian source is drawn fresh each step (torchcfm's runner: randn_like);
    # a data source has its own 10k training points.
    train_source = (
        source
        if spec.source == "gaussian"
        else data.Empirical(source.sample(keys["train_source"], n_train))
    )
    path, coupling = m.path_fn(m.sigma), m.coupling_fn(m.sigma)
    loss = losses.FlowMatchingLoss(path, time_sampler=losses.uniform_time())
    _, params = models.init_model(_MODULE, keys["init"], jnp.zeros(2))
    optimizer, lr_fn = make_optimizer(
        PROTOCOL["optimizer"],
        PROTOCOL["lr"],
        weight_decay=PROTOCOL["weight_decay"],
        schedule=PROTOCOL["lr_schedule"],
        total_steps=steps,
    )
    batch_size = PROTOCOL["batch_size"]
    t0 = time.perf_counter()
    result = fit(
        _MODEL_FN,
        params,
        loss,
        source=train_source,
        target=train_target,
        key=keys["train"],
        steps=steps,
        batch_size=batch_size,
        optimizer=optimizer,
        lr_fn=lr_fn,
        coupling=coupling,
        ema_decay=0.0,
        steps_per_call=min(steps_per_call, steps),
        on_nonfinite=SKIP_NONFINITE,
        log_every=max(1, min(1000, steps)),
        devices=1,
        progress=False,
    )
    params = jax.block_until_ready(result.state.params)
    train_seconds = time.perf_counter() - t0

    if method in ("icfm", "fm"):
        coupling_s = 0.0
    else:
        coupling_s = coupling_seconds_per_step(
            coupling,
            train_source,
            train_target,
            batch_size,
            jax.random.key(seed),
            coupling_reps,
        )

    t1 = time.perf_counter()
    x0 = source.sample(keys["eval_source"], n_eval)
    test = target.sample(keys["test"], n_eval)

    x1, energy = metrics.path_energy(
        _velocity, x0, params, solver=PROTOCOL["solver"], steps=PROTOCOL["solver_steps"]
    )
    x1 = jax.block_until_ready(x1)
    sample_seconds = time.perf_counter() - t1
    t2 = time.perf_counter()
    w2, backend = wasserstein2(x1, test, w2_backend)
    w2_seconds = time.perf_counter() - t2
    ref_seconds = 0.0
    if reference_w2 is None:
        t3 = time.perf_counter()
        reference_w2, _ = wasserstein2(x0, test, backend)
        ref_seconds = time.perf_counter() - t3
    eval_seconds = time.perf_counter() - t1
    energy = float(energy)
    history = result.history
    record = {
        "task": task,
        "task_label": spec.label,
        "method": method,
        "method_label": m.label,
        "method_note": m.note,
        "sigma": m.sigma,
        "seed": seed,
        "w2": w2,
        "npe": metrics.normalized_path_energy(energy, reference_w2),
        "path_energy": energy,
        "w2_source_target": reference_w2,
        "w2_backend": backend,
        "finite_samples": bool(np.all(np.isfinite(np.asarray(x1)))),
        "final_loss": history[-1]["loss"] if history else None,
        "loss_curve": [[r["step"], r["loss"]] for r in history],
        "skipped_steps": int(sum(r["skipped_steps"] for r in history)),
        "train_seconds": train_seconds,
        "steps_per_sec": steps / train_seconds,
        "coupling_seconds_per_step": coupling_s,
        "coupling_seconds": coupling_s * steps,
        "coupling_share": coupling_s * steps / train_seconds,
        "eval_seconds": eval_seconds,
        "sample_seconds": sample_seconds,
        "w2_seconds": w2_seconds,
        "w2_source_target_seconds": ref_seconds,
        "steps": steps,
        "steps_per_call": min(steps_per_call, steps),
        "batch_size": batch_size,
        "n_train": n_train,
        "n_eval": n_eval,
        "protocol": PROTOCOL,
        "git": git if git is not None else _git_commit(),
        "machine": common.machine_info(),
    }
    if out is not None:
        path_ = result_path(out, task, method, seed)
        path_.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path_, json.dumps(record, indent=1) + "\n")
    return record


# ---------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every result JSON under `out` (unreadable or partial files are ignored)."""
    results = []
    for file in sorted(Path(out).glob("*__*__seed*.json")):
        try:
            results.append(json.loads(file.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return results


def verdict(
    mean: float | None, published: float | None, std: float | None
) -> tuple[str, str]:
    """`(verdict, note)`: within two published standard deviations, or below.

    `pass` when `mean <= published + 2 std`; where the paper gives no standard
    deviation the bound is the published mean itself (`note` says so); `n/a` when
    there is nothing to compare.
    """
    if published is None:
        return "n/a", "no published value"
    if mean is None or not math.isfinite(mean):
        return "n/a", "no result"
    if std is None:
        ok = mean <= published
        return ("pass" if ok else "fail"), "no published std: bound is the mean"
    ok = mean <= published + 2 * std
    return ("pass" if ok else "fail"), f"bound {published + 2 * std:.3f}"


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def _pm(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def summarise(
    results: Sequence[dict[str, Any]], n_eval: int = PROTOCOL["n_eval"]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per cell: seeds, W2/NPE mean and std, timings (full-protocol results only)."""
    summary = {}
    for task, method in cells():
        rows = [
            r
            for r in results
            if r["task"] == task
            and r["method"] == method
            and r["steps"] == PROTOCOL["steps"]
            and r["n_eval"] == n_eval
            and same_data(r, task)
        ]
        rows.sort(key=lambda r: r["seed"])
        w2 = _mean_std([r["w2"] for r in rows])
        npe = _mean_std([r["npe"] for r in rows])
        summary[task, method] = {
            "seeds": [r["seed"] for r in rows],
            "w2": w2,
            "npe": npe,
            "train_seconds": _mean_std([r["train_seconds"] for r in rows])[0],
            "coupling_share": _mean_std([r["coupling_share"] for r in rows])[0],
            "eval_seconds": _mean_std([r["eval_seconds"] for r in rows])[0],
            "skipped_steps": sum(r["skipped_steps"] for r in rows),
            "w2_backends": sorted({r["w2_backend"] for r in rows}),
        }
    return summary


def build_table(
    results: Sequence[dict[str, Any]], seeds: Sequence[int] = PROTOCOL["seeds"]
) -> str:
    """The markdown report: the table beside the published values, and timings."""
    summary = summarise(results)
    expected = len(cells()) * len(seeds)
    done = sum(
        len([s for s in cell["seeds"] if s in seeds]) for cell in summary.values()
    )
    lines = []
    if done < expected:
        lines.append(f"**PARTIAL: {done} of {expected} results.**")
    else:
        lines.append(f"**Complete: {done} of {expected} results.**")
    lines += [
        "",
        "Tong et al. 2023 ([SF]²M), Table 2, reproduced with flowlab "
        "(`benchmarks/sf2m_table2.py`; protocol in docs/reproduction.md). W2 is "
        "mean ± std over the seeds done (n); a verdict passes when flowlab's mean "
        "lies within two published standard deviations of the published mean or "
        "below it; where the paper gives no std (FM, some SB-CFM cells, every NPE) "
        "the bound is the published mean. Verdicts on fewer than 5 seeds are "
        "provisional (marked *).",
        "",
    ]
    headers = [
        "method",
        "task",
        "n",
        "W2 flowlab",
        "W2 published",
        "W2 verdict",
        "NPE flowlab",
        "NPE published",
        "NPE verdict",
    ]
    rows = []
    notes = set()
    for method in TABLE_ORDER:
        for task in TASKS:
            if (task, method) not in summary:
                continue
            cell = summary[task, method]
            pub = PUBLISHED.get((method, task))
            n = len(cell["seeds"])
            star = "*" if 0 < n < len(seeds) else ""
            w2_mean, w2_std = cell["w2"]
            npe_mean, npe_std = cell["npe"]
            w2_v, w2_note = verdict(w2_mean, *(pub[:2] if pub else (None, None)))
            npe_v, npe_note = verdict(npe_mean, pub[2] if pub else None, None)
            notes.update({w2_note, npe_note} - {"no result"})
            rows.append(
                [
                    METHODS[method].label,
                    TASKS[task].label,
                    n,
                    _pm(w2_mean, w2_std),
                    _pm(*pub[:2]) if pub else "—",
                    (w2_v + star) if w2_v != "n/a" else w2_note,
                    _pm(npe_mean, npe_std),
                    f"{pub[2]:.3f}" if pub else "—",
                    (npe_v + star) if npe_v != "n/a" else npe_note,
                ]
            )
    lines.append(common.markdown_table(headers, rows))
    lines += [
        "",
        "Timings, mean per result (seconds; the coupling's share of training):",
        "",
    ]
    t_rows = []
    for method in TABLE_ORDER:
        for task in TASKS:
            cell = summary.get((task, method))
            if cell is None or not cell["seeds"]:
                continue
            t_rows.append(
                [
                    METHODS[method].label,
                    TASKS[task].label,
                    len(cell["seeds"]),
                    common.fmt(cell["train_seconds"]),
                    f"{100 * cell['coupling_share']:.0f}%",
                    common.fmt(cell["eval_seconds"]),
                    cell["skipped_steps"],
                    ", ".join(cell["w2_backends"]),
                ]
            )
    lines.append(
        common.markdown_table(
            [
                "method",
                "task",
                "n",
                "train s",
                "coupling",
                "eval s",
                "skipped steps",
                "W2 solver",
            ],
            t_rows,
        )
        if t_rows
        else "(no results yet)"
    )
    machines = sorted({r["machine"]["cpu"] for r in results if "machine" in r})
    commits = sorted({(r["git"]["commit"] or "?")[:10] for r in results if "git" in r})
    lines += [
        "",
        f"Machines: {'; '.join(machines) or '–'}. flowlab commits: "
        f"{', '.join(commits) or '–'}. Methods: "
        + "; ".join(f"{METHODS[k].label}: {METHODS[k].note}" for k in TABLE_ORDER)
        + ".",
        "",
    ]
    return "\n".join(lines)


def write_table(out: Path, table: Path = TABLE) -> str:
    """Rebuild the markdown table from the results under `out`; return its text."""
    text = build_table(load_results(out))
    table.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(table, "# [SF]²M Table 2 reproduction\n\n" + text)
    return text


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def _reference_w2(out: Path, task: str, seed: int, n_eval: int) -> float | None:
    """W2(q0, q1) of this (task, seed) from a result already on disk, if any."""
    for r in load_results(out):
        if (
            r["task"] == task
            and r["seed"] == seed
            and r["n_eval"] == n_eval
            and same_data(r, task)
        ):
            return r["w2_source_target"]
    return None


def compare_w2(n: int = PROTOCOL["n_eval"]) -> dict[str, Any]:
    """Time every exact W2 backend on one case (N(0, I) vs moons, n points each)."""
    x = data.Gaussian(2).sample(jax.random.key(0), n)
    y = data.Moons().sample(jax.random.key(1), n)
    report = {"n": n, "machine": common.machine_info()}
    for backend in w2_backends():
        t0 = time.perf_counter()
        value, _ = wasserstein2(x, y, backend)
        report[backend] = {"w2": value, "seconds": time.perf_counter() - t0}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the missing results (or rebuild the table with `--table`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=PROTOCOL["seeds"])
    parser.add_argument("--steps", type=int, default=PROTOCOL["steps"])
    parser.add_argument("--n-eval", type=int, default=PROTOCOL["n_eval"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--w2-backend", choices=("pot", "scipy"), default=None)
    parser.add_argument("--force", action="store_true", help="redo existing results")
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    parser.add_argument(
        "--compare-w2", action="store_true", help="time POT and scipy W2 once"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.n_eval < 2:
        parser.error("--steps must be >= 1 and --n-eval >= 2")
    if args.compare_w2:
        report = compare_w2(args.n_eval)
        args.out.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out / "w2_backends.json", json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: v for k, v in report.items() if k != "machine"}))
        return 0
    if args.table:
        print(write_table(args.out))
        return 0
    todo = [
        (task, method, seed)
        for seed in args.seeds  # seed 0 of every cell before seed 1
        for task, method in cells(args.tasks, args.methods)
        if args.force or not result_path(args.out, task, method, seed).exists()
    ]
    git = _git_commit()  # the code this process has imported, before any result
    print(f"{len(todo)} results to run into {args.out}", flush=True)
    for i, (task, method, seed) in enumerate(todo, 1):
        r = run_one(
            task,
            method,
            seed,
            steps=args.steps,
            n_eval=args.n_eval,
            out=args.out,
            w2_backend=args.w2_backend,
            reference_w2=_reference_w2(args.out, task, seed, args.n_eval),
            git=git,
        )
        print(
            f"[{i}/{len(todo)}] {task} {method} seed {seed}: W2 {r['w2']:.4f} "
            f"NPE {r['npe']:.4f} loss {r['final_loss']:.4f} | train "
            f"{r['train_seconds']:.0f} s (coupling {100 * r['coupling_share']:.0f}%) "
            f"eval {r['eval_seconds']:.0f} s",
            flush=True,
        )
        if args.out == DEFAULT_OUT:
            write_table(args.out)
    if args.out == DEFAULT_OUT:
        write_table(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
