"""The study's tables and its verdicts, computed from `results.json` alone."""

import math
import statistics
from typing import Any

from benchmarks._common import markdown_table
from reproductions._format import decimals as _decimals
from reproductions._format import num as _num
from reproductions._format import seed_range as _seeds

from .protocol import ENERGY_TASKS, SCHEDULES
from .study import nfe_to_quality

SIGMAS = 2.0  # a difference "holds" beyond this many standard errors
# A second, looser common W2 target (chosen after the first full run, where the
# 1.1x target sat at the models' own error floor): the few-step regime.
LOOSE = 2.0


def _pm(mean: float, err: float, digits: int = 3) -> str:
    """`mean ± err` with the decimals of the coarser of the two."""
    d = max(_decimals(mean, digits), _decimals(err, 1)) if err > 0 else None
    d = _decimals(mean, digits) if d is None else d
    return f"{mean:,.{d}f} ± {err:,.{d}f}"


def _mean(values: list[float], digits: int = 3) -> str:
    """One value as it is; several as mean ± standard deviation."""
    if len(values) == 1 or all(v == 0 for v in values):
        return _num(values[0], digits)
    return _pm(statistics.mean(values), statistics.stdev(values), digits)


def _label(schedule: str) -> str:
    return SCHEDULES[schedule][0]


# --- energies ---------------------------------------------------------------


def energy_gap(e: dict[str, Any], a: str, b: str, est: str, end: str = "t_max"):
    """`(E_a - E_b, its standard error)` from one estimator ("formula" or "mc").

    The two estimates share their random numbers (one rho estimate, one set of
    Monte-Carlo draws), so their errors are positively correlated and
    sqrt(se_a² + se_b²) over-states the error of the difference: conservative.
    """
    ra, rb = e["schedules"][a][end][est], e["schedules"][b][end][est]
    return ra["energy"] - rb["energy"], math.hypot(ra["se"], rb["se"])


def energy_verdict(e: dict[str, Any], other: str) -> str:
    """Is the kinetic-optimal energy below `other`'s, by both estimators?"""
    gaps = [energy_gap(e, "kinetic_optimal", other, est) for est in ("formula", "mc")]
    if all(g < -SIGMAS * se for g, se in gaps):
        return "holds"
    if all(g < 0 for g, _ in gaps):
        return f"below, but by < {SIGMAS:g} se (not established)"
    return "misses"


def energy_table(results: dict[str, Any]) -> str:
    s = results["settings"]
    rows = []
    for task, e in results["energies"].items():
        base = e["schedules"]["cond_ot"]["t_max"]["mc"]["energy"]
        for name, row in e["schedules"].items():
            f, mc = row["t_max"]["formula"], row["t_max"]["mc"]
            t1 = row.get("t1")
            rows.append(
                [
                    ENERGY_TASKS[task].label,
                    _label(name),
                    _pm(f["energy"], f["se"]),
                    _pm(mc["energy"], mc["se"]),
                    _num(mc["energy"] / base),
                    "∞" if t1 is None else _pm(*t1["formula"].values()),
                    "∞" if t1 is None else _pm(*t1["mc"].values()),
                ]
            )
    headers = [
        "target",
        "schedule",
        f"energy, formula (t ≤ {s['t_max']})",
        f"energy, Monte Carlo (t ≤ {s['t_max']})",
        "MC / Cond-OT's",
        "formula (t ≤ 1)",
        "Monte Carlo (t ≤ 1)",
    ]
    return markdown_table(headers, rows)


def separation_table(results: dict[str, Any]) -> str:
    s = results["settings"]
    rows = []
    for task, e in results["energies"].items():
        rows.append(
            [
                ENERGY_TASKS[task].label,
                f"{e['n_points']:,} × {e['event_size']}",
                _num(e["mean_sq_norm"]),
                _num(e["separation_seconds"]),
                _num(e["separation_seconds_cold"]),
                _num(e["fit_seconds"]),
                _num(e["total_angle"]),
            ]
        )
    headers = [
        "target",
        "points",
        "E‖x1‖²",
        f"ρ̂ s ({s['grid']} SNRs × {s['n_queries']:,} queries)",
        "ρ̂ s, first call (compiling)",
        "kinetic_optimal s",
        "total angle W (π/2 = Cond-OT)",
    ]
    return markdown_table(headers, rows)


# --- 2-D training -------------------------------------------------------------


def _row(cell: dict[str, Any], solver: str) -> dict[str, Any]:
    return next(r for r in cell["curve"] if r["solver"] == solver)


def _cells(results, task, schedule):
    cells = [
        c for c in results["cells"] if (c["task"], c["schedule"]) == (task, schedule)
    ]
    return sorted(cells, key=lambda c: c["seed"])


def _paired(results, cell, schedule="cond_ot"):
    return next(
        (
            c
            for c in results["cells"]
            if (c["task"], c["schedule"], c["seed"])
            == (cell["task"], schedule, cell["seed"])
        ),
        None,
    )


def nfe_targets(results: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    """Euler steps to each criterion for one model (None: a miss).

    W2 within `tolerance` times its own dopri5 W2; W2 within `tolerance` times the
    dopri5 W2 of the Cond-OT model of the same task and seed (one bound for every
    schedule); mean endpoint distance to dopri5's at most `endpoint_tolerance`
    (relative to the test set's RMS norm).
    """
    s = results["settings"]
    ref = _row(cell, s["reference_solver"])["w2"]
    base = _paired(results, cell)
    common = loose = None
    if base is not None:
        base_w2 = _row(base, s["reference_solver"])["w2"]
        common = nfe_to_quality(cell["curve"], "w2", s["tolerance"] * base_w2)
        loose = nfe_to_quality(cell["curve"], "w2", LOOSE * base_w2)
    return {
        "own": nfe_to_quality(cell["curve"], "w2", s["tolerance"] * ref),
        "common": common,
        "loose": loose,
        "endpoint": nfe_to_quality(
            cell["curve"], "endpoint_error", s["endpoint_tolerance"]
        ),
    }


def _steps(values, largest: int) -> str:
    return ", ".join(f"miss (> {largest})" if v is None else str(v) for v in values)


def training_table(results: dict[str, Any]) -> str:
    s = results["settings"]
    largest = max(s["euler_steps"])
    rows = []
    for task in results["train_tasks"]:
        for schedule in results["schedules"]:
            cells = _cells(results, task, schedule)
            if not cells:
                continue
            targets = [nfe_targets(results, c) for c in cells]
            refs = [_row(c, s["reference_solver"]) for c in cells]
            rows.append(
                [
                    task,
                    _label(schedule),
                    _seeds([c["seed"] for c in cells]),
                    _mean([r["w2"] for r in refs]),
                    _mean([r["nfe"] for r in refs]),
                    _steps([t["own"] for t in targets], largest),
                    _steps([t["common"] for t in targets], largest),
                    _steps([t["loose"] for t in targets], largest),
                    _steps([t["endpoint"] for t in targets], largest),
                    _mean([_row(c, "euler")["w2"] for c in cells]),
                    _mean([c["final_loss"] for c in cells]),
                    _mean([c["train_run_seconds"] for c in cells]),
                ]
            )
    headers = [
        "target",
        "schedule",
        "seeds",
        "W2 dopri5",
        "dopri5 NFE",
        f"Euler steps: W2 ≤ {s['tolerance']}× own dopri5",
        f"W2 ≤ {s['tolerance']}× Cond-OT's dopri5",
        f"W2 ≤ {LOOSE:g}× Cond-OT's dopri5",
        f"endpoint error ≤ {s['endpoint_tolerance']:g}",
        "W2 at 1 Euler step",
        "final loss",
        "train_run s",
    ]
    return markdown_table(headers, rows)


def curve_table(results: dict[str, Any]) -> str:
    s = results["settings"]
    ks = s["euler_steps"]
    rows = []
    for task in results["train_tasks"]:
        for metric, name in (("w2", "W2"), ("endpoint_error", "endpoint error")):
            for schedule in results["schedules"]:
                cells = _cells(results, task, schedule)
                if not cells:
                    continue
                row = [task, name, _label(schedule)]
                for k in [*ks, None]:
                    values = [
                        next(r for r in c["curve"] if r["steps"] == k)[metric]
                        for c in cells
                    ]
                    row.append(_mean(values))
                rows.append(row)
    headers = ["target", "metric", "schedule", *[f"k = {k}" for k in ks],
               s["reference_solver"]]  # fmt: skip
    return markdown_table(headers, rows)


def reference_table(results: dict[str, Any]) -> str:
    rows = [
        [
            task,
            _num(r["w2_target_target"]),
            _num(r["w2_source_target"]),
            _num(r["rms_target"]),
        ]  # fmt: skip
        for task, r in results["references"].items()
    ]
    headers = ["target", "W2 target vs target (floor)", "W2 N(0, I) vs target",
               "RMS ‖x1‖ (test)"]  # fmt: skip
    return markdown_table(headers, rows)


def w2_gap(results, task: str, schedule: str) -> tuple[float, float, int] | None:
    """Mean and standard error over seeds of the paired dopri5 W2 difference to
    Cond-OT, and the number of pairs."""
    s = results["settings"]
    diffs = []
    for cell in _cells(results, task, schedule):
        base = _paired(results, cell)
        if base is not None:
            diffs.append(
                _row(cell, s["reference_solver"])["w2"]
                - _row(base, s["reference_solver"])["w2"]
            )
    if not diffs:
        return None
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
    return statistics.mean(diffs), se, len(diffs)


def _no_worse(gap: float, se: float) -> str:
    if gap <= 0:
        return "holds"
    if gap <= SIGMAS * se:
        return f"holds within noise (worse by < {SIGMAS:g} se)"
    return "misses"


def _fewer(results, task, target: str = "common") -> tuple[str, str]:
    pairs = []
    for cell in _cells(results, task, "kinetic_optimal"):
        base = _paired(results, cell)
        if base is None:
            continue
        a = nfe_targets(results, cell)[target]
        b = nfe_targets(results, base)[target]
        pairs.append((math.inf if a is None else a, math.inf if b is None else b))
    if not pairs:
        return "–", "not run"
    text = "; ".join(
        f"{'miss' if a == math.inf else a} vs {'miss' if b == math.inf else b}"
        for a, b in pairs
    )
    if all(a < b for a, b in pairs):
        verdict = "holds"
    elif all(a <= b for a, b in pairs) and any(a < b for a, b in pairs):
        verdict = "partly (fewer on some seeds, never more)"
    elif all(a == b for a, b in pairs):
        verdict = "misses (the same steps)"
    else:
        verdict = "misses"
    return text, verdict


# --- digits and the verdicts --------------------------------------------------


def digits_table(results: dict[str, Any]) -> str:
    rows = []
    for c in sorted(results["digits"], key=lambda c: (c["schedule"], c["seed"])):
        sm = c["summary"]
        model = sm.get("config", {}).get("model", {})
        rows.append(
            [
                _label(c["schedule"]),
                str(c["seed"]),
                f"{model.get('name', '–')} (width {model.get('width', '–')})",
                f"{sm['steps']:,}",
                f"{sm['test_bpd']:.3f} ± {sm['test_bpd_se']:.3f}",
                str(sm.get("n_bpd", "–")),
                str(sm.get("bpd_divergence", "–")),
                str(sm.get("bpd_nfe", "–")),
                _num(c["final_loss"]),
                _num(c["train_run_seconds"]),
            ]
        )
    headers = ["schedule", "seed", "model", "steps", "test bpd", "test images",
               "divergence", "bpd NFE", "final loss", "train_run s"]  # fmt: skip
    return markdown_table(headers, rows)


def _digits_verdict(results) -> tuple[str, str]:
    by = {c["schedule"]: c["summary"] for c in results.get("digits", [])}
    if not {"cond_ot", "kinetic_optimal"} <= set(by):
        return "–", "not run"
    a, b = by["kinetic_optimal"], by["cond_ot"]
    gap = a["test_bpd"] - b["test_bpd"]
    se = math.hypot(a["test_bpd_se"], b["test_bpd_se"])
    return f"{gap:+.3f} ± {se:.3f} bpd", _no_worse(gap, se)


def verdicts(results: dict[str, Any]) -> list[list[str]]:
    """One row per claim of the acceptance and target: evidence and verdict."""
    rows = []
    for task, e in results["energies"].items():
        for other in ("cond_ot", "cosine", "vp"):
            f = energy_gap(e, "kinetic_optimal", other, "formula")
            m = energy_gap(e, "kinetic_optimal", other, "mc")
            rows.append(
                [
                    f"kinetic energy below {_label(other)}'s",
                    ENERGY_TASKS[task].label,
                    f"formula {_pm(*f)}, MC {_pm(*m)}",
                    energy_verdict(e, other),
                ]
            )
    for task in results["train_tasks"]:
        gap = w2_gap(results, task, "kinetic_optimal")
        if gap is not None:
            rows.append(
                [
                    "W2 (dopri5) no worse than Cond-OT's at the same steps",
                    task,
                    f"{_pm(gap[0], gap[1])} over {gap[2]} paired seeds",
                    _no_worse(gap[0], gap[1]),
                ]
            )
        tol = results["settings"]["tolerance"]
        for target, factor, note in (("common", tol, ""),
                                     ("loose", LOOSE, ", post hoc")):  # fmt: skip
            text, verdict = _fewer(results, task, target)
            rows.append(
                [
                    f"fewer Euler steps to the same W2 ({factor:g}× Cond-OT's "
                    f"dopri5{note})",
                    task,
                    f"per seed, KO vs Cond-OT: {text}",
                    verdict,
                ]
            )
        eps = results["settings"]["endpoint_tolerance"]
        text, verdict = _fewer(results, task, "endpoint")
        rows.append(
            [
                f"(beside the claim) fewer Euler steps to endpoint error ≤ {eps:g}",
                task,
                f"per seed, KO vs Cond-OT: {text}",
                verdict,
            ]
        )
    text, verdict = _digits_verdict(results)
    rows.append(["test bpd no worse than Cond-OT's", "digits", text, verdict])
    return rows


def verdict_table(results: dict[str, Any]) -> str:
    return markdown_table(["claim", "target", "KO − Cond-OT", "verdict"],
                          verdicts(results))  # fmt: skip


def build_tables(results: dict[str, Any]) -> str:
    """The markdown of `results.json`."""
    s, m = results["settings"], results["machine"]
    head = (
        f"**{'QUICK (not the protocol)' if results['quick'] else 'Full protocol'}**"
        f": {s['steps']:,} training steps per 2-D model, {s['digits_steps']:,} per "
        f"digits model; total wall time {results['wall_seconds'] / 60:.1f} min on "
        f"{m['cpu']} ({m['cores_usable']} cores usable), load average "
        f"{', '.join(map(str, m['load_average_start']))} at the start and "
        f"{', '.join(map(str, m['load_average_end']))} at the end; "
        f"flowlab {m['flowlab_commit']}, jax {m['jax']}."
    )
    parts = [head, verdict_table(results), energy_table(results),
             separation_table(results)]  # fmt: skip
    if results["cells"]:
        parts += [training_table(results), reference_table(results),
                  curve_table(results)]  # fmt: skip
    if results.get("digits"):
        parts.append(digits_table(results))
    return "\n\n".join(parts)
