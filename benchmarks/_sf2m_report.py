"""The [SF]²M Table 2 report: results on disk, verdicts, the markdown table."""

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as common
from benchmarks._sf2m_protocol import (
    METHODS,
    PROTOCOL,
    PUBLISHED,
    TABLE,
    TABLE_ORDER,
    TASKS,
    cells,
    same_data,
)
from flowlab.run import write_atomic


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
