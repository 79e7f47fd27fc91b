"""The study's tables, computed from `results.json` alone."""

import statistics
from typing import Any

from benchmarks._common import markdown_table
from reproductions._format import decimals as _decimals
from reproductions._format import num as _num
from reproductions._format import seed_range as _seeds

from .protocol import METHODS, TASKS
from .study import nfe_to_quality


def _mean(values: list[float], digits: int = 3, fixed: int | None = None) -> str:
    """One value as it is; several as mean ± standard deviation, equal decimals.

    The decimals show the mean to `digits` significant figures and the standard
    deviation to at least one (or are `fixed`).
    """
    if len(values) == 1:
        return _num(values[0], digits, fixed)
    mean, std = statistics.mean(values), statistics.stdev(values)
    if mean == 0 and std == 0:
        return "0"
    d = max(_decimals(mean, digits), _decimals(std, 1)) if fixed is None else fixed
    return f"{mean:,.{d}f} ± {std:,.{d}f}"


def _row(cell: dict[str, Any], solver: str) -> dict[str, Any]:
    return next(r for r in cell["curve"] if r["solver"] == solver)


def nfe_targets(
    cell: dict[str, Any], s: dict[str, Any], mmd2_std: float
) -> dict[str, int | None]:
    """Euler steps to each quality criterion for one result (None: a miss).

    W2 within `tolerance` times dopri5's; MMD² within `mmd_sigmas` null standard
    deviations (`mmd2_std`) of dopri5's; the mean geodesic distance to dopri5's
    endpoints at most `endpoint_tolerance`.
    """
    curve = cell["curve"]
    ref = _row(cell, s["reference_solver"])
    mmd_bound = ref["mmd2"] + s["mmd_sigmas"] * mmd2_std
    return {
        "w2": nfe_to_quality(curve, "w2", s["tolerance"] * ref["w2"]),
        "mmd": nfe_to_quality(curve, "mmd2", mmd_bound),
        "endpoint": nfe_to_quality(curve, "endpoint_error", s["endpoint_tolerance"]),
    }


def common_w2_target(results: dict[str, Any], cell: dict[str, Any]) -> int | None:
    """Euler steps to W2 <= `tolerance` x the dopri5 W2 of the independent-pairs
    model of the same task and seed: one bound for both methods."""
    s = results["settings"]
    ind = next(
        c
        for c in results["cells"]
        if (c["task"], c["method"], c["seed"])
        == (cell["task"], "independent", cell["seed"])
    )
    bound = s["tolerance"] * _row(ind, s["reference_solver"])["w2"]
    return nfe_to_quality(cell["curve"], "w2", bound)


def _steps(values: list[int | None], largest: int) -> str:
    return ", ".join(f"miss (> {largest})" if v is None else str(v) for v in values)


def _cells(results, task, method):
    cells = [c for c in results["cells"] if (c["task"], c["method"]) == (task, method)]
    return sorted(cells, key=lambda c: c["seed"])


def summary_table(results: dict[str, Any]) -> str:
    """NFE-to-quality per (task, method), with the dopri5 values and the NLL."""
    s = results["settings"]
    largest = max(s["euler_steps"])
    rows = []
    for task in results["tasks"]:
        for method in METHODS:
            cells = _cells(results, task, method)
            if not cells:
                continue
            std = results["references"][task]["mmd2_null_std"]
            targets = [nfe_targets(c, s, std) for c in cells]
            common = [common_w2_target(results, c) for c in cells]
            refs = [_row(c, s["reference_solver"]) for c in cells]
            pairs = results["pairs"][task][method]["mean_sq_pair_distance"]
            rows.append(
                [
                    TASKS[task].label,
                    METHODS[method][0],
                    _seeds([c["seed"] for c in cells]),
                    _steps([t["w2"] for t in targets], largest),
                    _steps(common, largest),
                    _steps([t["mmd"] for t in targets], largest),
                    _steps([t["endpoint"] for t in targets], largest),
                    _mean([r["nfe"] for r in refs], 3),
                    _mean([r["w2"] for r in refs]),
                    _mean([1e3 * r["mmd2"] for r in refs]),
                    _mean([c["nll"] for c in cells], fixed=3),
                    _num(results["references"][task]["target_cross_entropy"], fixed=3),
                    _num(pairs),
                    _mean([c["final_loss"] for c in cells]),
                    _mean([c["train_seconds"] for c in cells]),
                ]
            )
    headers = [
        "task",
        "pairs",
        "seeds",
        f"Euler steps: W2 ≤ {s['tolerance']}× dopri5",
        f"W2 ≤ {s['tolerance']}× independent's dopri5",
        f"MMD² ≤ dopri5 + {s['mmd_sigmas']:g}σ",
        f"endpoint error ≤ {s['endpoint_tolerance']:g}",
        "dopri5 NFE",
        "W2 dopri5",
        "MMD² ×10³ dopri5",
        "test NLL",
        "target CE",
        "pair d²",
        "final loss",
        "train s",
    ]
    return markdown_table(headers, rows)


def curve_table(results: dict[str, Any]) -> str:
    """The raw curves: each metric at each Euler k and at dopri5, mean over seeds."""
    s = results["settings"]
    ks = s["euler_steps"]
    metrics = {
        "W2": lambda r: r["w2"],
        "MMD² ×10³": lambda r: 1e3 * r["mmd2"],
        "endpoint error": lambda r: r["endpoint_error"],
    }
    rows = []
    for task in results["tasks"]:
        for name, get in metrics.items():
            for method in METHODS:
                cells = _cells(results, task, method)
                if not cells:
                    continue
                row = [TASKS[task].label, name, METHODS[method][0]]
                for k in [*ks, None]:
                    values = [
                        get(next(r for r in c["curve"] if r["steps"] == k))
                        for c in cells
                    ]
                    row.append(_mean(values))
                rows.append(row)
    headers = ["task", "metric", "pairs", *[f"k = {k}" for k in ks],
               s["reference_solver"]]  # fmt: skip
    return markdown_table(headers, rows)


def reference_table(results: dict[str, Any]) -> str:
    """Per task: the metrics' floor and ceiling, the pairs, the coupling's cost."""
    s = results["settings"]
    rows = []
    for task in results["tasks"]:
        ref, pairs = results["references"][task], results["pairs"][task]
        ot_call = pairs["ot"]["coupling_seconds_per_call"]
        train = {
            m: [c["train_seconds"] for c in _cells(results, task, m)] for m in METHODS
        }
        rows.append(
            [
                TASKS[task].label,
                _num(ref["w2_target_target"]),
                _num(ref["w2_source_target"]),
                _num(1e3 * ref["mmd2_target_target"]),
                _num(1e3 * ref["mmd2_null_std"]),
                _num(1e3 * ref["mmd2_source_target"]),
                _num(ref["target_cross_entropy"], fixed=3),
                _num(ref["target_cross_entropy_test"], fixed=3),
                _num(pairs["independent"]["mean_sq_pair_distance"]),
                _num(pairs["ot"]["mean_sq_pair_distance"]),
                _num(ot_call * 1e3),
                _num(ot_call * s["steps"]),
                _num(
                    statistics.mean(train["ot"]) / statistics.mean(train["independent"])
                )
                if train["ot"] and train["independent"]
                else "–",
            ]
        )
    headers = [
        "task",
        "W2 target vs target",
        "W2 uniform vs target",
        "MMD² ×10³ target vs target",
        "σ of MMD² ×10³",
        "MMD² ×10³ uniform vs target",
        f"target CE ({s['n_nll']} NLL points)",
        f"target CE ({s['n_samples']} test points)",
        "pair d² independent",
        "pair d² OT",
        "OT coupling ms/call",
        "OT coupling s × steps",
        "train time OT / independent",
    ]
    return markdown_table(headers, rows)


def build_tables(results: dict[str, Any]) -> str:
    """The markdown of `results.json`: the summary, the references, the curves."""
    s, m = results["settings"], results["machine"]
    head = (
        f"**{'QUICK (not the protocol)' if results['quick'] else 'Full protocol'}**"
        f": {s['steps']:,} training steps per model; total wall time "
        f"{results['wall_seconds'] / 60:.1f} min on {m['cpu']} "
        f"({m['cores_usable']} cores usable), load average "
        f"{', '.join(map(str, m['load_average_start']))} at the start and "
        f"{', '.join(map(str, m['load_average_end']))} at the end; "
        f"flowlab {m['flowlab_commit']}, jax {m['jax']}."
    )
    return "\n\n".join([head, summary_table(results), reference_table(results),
                        curve_table(results)])  # fmt: skip
