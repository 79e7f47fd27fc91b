"""The [SF]²M Table 2 report: the records on disk, verdicts, the markdown tables.

Every table of the reproduction is computed here from the JSON records under
`results/` and written between markers into the README and the docs page
(`write_tables`), so a quoted number is always the one the records give.
"""

import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as common
from benchmarks._common import blocks, replace_blocks
from flowlab.run import write_atomic

from .protocol import (
    DEFAULT_OUT,
    DOCS_PAGE,
    METHODS,
    PROTOCOL,
    PUBLISHED,
    README,
    RESULTS,
    ROOT,
    TABLE_ORDER,
    TASKS,
    cells,
    same_data,
)


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

    `pass` when `mean <= published + 2 std`, else `miss`; where the paper gives no
    standard deviation the bound is the published mean itself (`note` says so);
    `n/a` when there is nothing to compare.
    """
    if published is None:
        return "n/a", "no published value"
    if mean is None or not math.isfinite(mean):
        return "n/a", "no result"
    if std is None:
        ok = mean <= published
        return ("pass" if ok else "miss"), "no published std: bound is the mean"
    ok = mean <= published + 2 * std
    return ("pass" if ok else "miss"), f"bound {published + 2 * std:.3f}"


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


def _share(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def _seeds(seeds: Sequence[int]) -> str:
    """`0–4` for a run of consecutive seeds, else `0, 2, 4`."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds)) or "–"


def _hardware(rows: Sequence[dict[str, Any]]) -> str:
    """The CPUs and usable cores the results of one cell ran on."""
    cpus = sorted({r.get("machine", {}).get("cpu", "?") for r in rows})
    cores = sorted(
        {r["machine"]["cores_usable"] for r in rows if "cores_usable" in r["machine"]}
    )
    if not cpus:
        return "–"
    if not cores:
        return "; ".join(cpus)
    span = str(cores[0]) if len(cores) == 1 else f"{cores[0]}–{cores[-1]}"
    return f"{'; '.join(cpus)}, {span} core{'s' if cores[-1] > 1 else ''}"


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
        summary[task, method] = {
            "seeds": [r["seed"] for r in rows],
            "w2": _mean_std([r["w2"] for r in rows]),
            "npe": _mean_std([r["npe"] for r in rows]),
            "train_seconds": _mean_std([r["train_seconds"] for r in rows])[0],
            "coupling_share": _mean_std([r["coupling_share"] for r in rows])[0],
            "eval_seconds": _mean_std([r["eval_seconds"] for r in rows])[0],
            "skipped_steps": sum(r["skipped_steps"] for r in rows),
            "w2_backends": Counter(r["w2_backend"] for r in rows),
            "hardware": _hardware(rows),
        }
    return summary


def build_table(
    results: Sequence[dict[str, Any]], seeds: Sequence[int] = PROTOCOL["seeds"]
) -> str:
    """The reproduced Table 2 beside the published values, one row per cell."""
    summary = summarise(results)
    expected = len(cells()) * len(seeds)
    done = sum(
        len([s for s in cell["seeds"] if s in seeds]) for cell in summary.values()
    )
    state = "Complete" if done >= expected else "PARTIAL"
    headers = [
        "method",
        "task",
        "seeds",
        "W2 flowlab",
        "W2 published",
        "W2 verdict",
        "NPE flowlab",
        "NPE published",
        "NPE verdict",
        "train s",
        "coupling",
        "eval s",
        "hardware",
    ]
    rows, missed, judged = [], {"W2": [], "NPE": []}, {"W2": 0, "NPE": 0}
    for method in TABLE_ORDER:
        for task in TASKS:
            if (task, method) not in summary:
                continue
            cell = summary[task, method]
            pub = PUBLISHED.get((method, task))
            star = "*" if 0 < len(cell["seeds"]) < len(seeds) else ""
            w2_mean, w2_std = cell["w2"]
            npe_mean, npe_std = cell["npe"]
            w2_v, w2_note = verdict(w2_mean, *(pub[:2] if pub else (None, None)))
            npe_v, npe_note = verdict(npe_mean, pub[2] if pub else None, None)
            label = f"{METHODS[method].label} {TASKS[task].label}"
            for name, v in (("W2", w2_v), ("NPE", npe_v)):
                judged[name] += v != "n/a"
                if v == "miss":
                    missed[name].append(label)
            rows.append(
                [
                    METHODS[method].label,
                    TASKS[task].label,
                    _seeds(cell["seeds"]),
                    _pm(w2_mean, w2_std),
                    _pm(*pub[:2]) if pub else "—",
                    (w2_v + star) if w2_v != "n/a" else w2_note,
                    _pm(npe_mean, npe_std),
                    f"{pub[2]:.3f}" if pub else "—",
                    (npe_v + star) if npe_v != "n/a" else npe_note,
                    common.fmt(cell["train_seconds"]),
                    _share(cell["coupling_share"]),
                    common.fmt(cell["eval_seconds"]),
                    cell["hardware"],
                ]
            )
    verdicts = []
    for name in ("W2", "NPE"):
        n_pass = judged[name] - len(missed[name])
        line = f"{name}: {n_pass} of {judged[name]} published values reproduced"
        if missed[name]:
            line += f"; missed: {', '.join(missed[name])}"
        verdicts.append(line + ".")
    backends = Counter()
    for cell in summary.values():
        backends.update(cell["w2_backends"])
    skipped = [c["skipped_steps"] for c in summary.values() if c["skipped_steps"]]
    machines = sorted({r["machine"]["cpu"] for r in results if "machine" in r})
    commits = sorted({(r["git"]["commit"] or "?")[:10] for r in results if "git" in r})
    lines = [
        f"**{state}: {done} of {expected} results.**",
        "",
        " ".join(verdicts),
        "",
        common.markdown_table(headers, rows),
        "",
        "Mean ± standard deviation over the seeds. train s and eval s: mean wall "
        "seconds per result; coupling: the jitted coupling timed alone, times the "
        "steps, over the training time (the two timings see different loads, so it "
        f"can exceed 100%). * marks a verdict on fewer than {len(seeds)} seeds "
        f"(provisional). Non-finite steps skipped: {sum(skipped)} in {len(skipped)} "
        "cells.",
        "",
        f"Machines: {'; '.join(machines) or '–'}. Exact W2 computed by: "
        + (", ".join(f"{k} ({v})" for k, v in sorted(backends.items())) or "–")
        + f". flowlab commits: {', '.join(commits) or '–'}. Methods: "
        + "; ".join(f"{METHODS[k].label}: {METHODS[k].note}" for k in TABLE_ORDER)
        + ".",
    ]
    return "\n".join(lines)


def build_summary_table(
    results: Sequence[dict[str, Any]], methods: Sequence[str] = ("otcfm", "icfm")
) -> str:
    """The repository README's excerpt: W2 of `methods` and the overall counts."""
    summary = summarise(results)
    rows, counts = [], {"W2": [0, 0], "NPE": [0, 0]}
    for method in TABLE_ORDER:
        for task in TASKS:
            cell, pub = summary.get((task, method)), PUBLISHED.get((method, task))
            if cell is None or pub is None:
                continue
            w2_v, _ = verdict(cell["w2"][0], *pub[:2])
            npe_v, _ = verdict(cell["npe"][0], pub[2], None)
            for name, v in (("W2", w2_v), ("NPE", npe_v)):
                counts[name][0] += v == "pass"
                counts[name][1] += v != "n/a"
            if method in methods:
                rows.append(
                    [
                        METHODS[method].label,
                        TASKS[task].label,
                        _seeds(cell["seeds"]),
                        _pm(*cell["w2"]),
                        _pm(*pub[:2]),
                        w2_v,
                    ]
                )
    headers = ["method", "task", "seeds", "W2 flowlab", "W2 published", "verdict"]
    return (
        common.markdown_table(headers, rows)
        + f"\n\nOver all 15 cells: W2 reproduced on {counts['W2'][0]} of "
        f"{counts['W2'][1]} published values, NPE on {counts['NPE'][0]} of "
        f"{counts['NPE'][1]}."
    )


def _f3(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _mean(records: list[dict | None], key: str) -> float | None:
    """Mean of `key` over `records`; None if any record is missing."""
    if not records or any(r is None for r in records):
        return None
    return statistics.fmean(r[key] for r in records)


def build_torchcfm_table(peer: list[dict], flowlab: list[dict]) -> str:
    """Per (task, method): torchcfm's and flowlab's means on the seeds both have."""
    full = PROTOCOL["steps"], PROTOCOL["n_eval"]
    ours = {
        (r["task"], r["method"], r["seed"]): r
        for r in flowlab
        if (r["steps"], r["n_eval"]) == full and same_data(r, r["task"])
    }
    rows = []
    for task, method in cells(methods=tuple({r["method"] for r in peer})):
        mine = [
            r
            for r in peer
            if (r["task"], r["method"]) == (task, method)
            and (r["steps"], r["n_eval"]) == full
            and same_data(r, task)
        ]
        if not mine:
            continue
        seeds = sorted(r["seed"] for r in mine)
        both = [ours.get((task, method, s)) for s in seeds]
        pub = PUBLISHED.get((method, task))
        rows.append(
            [
                METHODS[method].label,
                TASKS[task].label,
                ", ".join(map(str, seeds)),
                _f3(_mean(mine, "w2")),
                _f3(_mean(both, "w2")),
                f"{pub[0]:.3f} ± {pub[1]:.3f}" if pub else "—",
                _f3(_mean(mine, "npe")),
                _f3(_mean(both, "npe")),
                f"{pub[2]:.3f}" if pub else "—",
            ]
        )
    headers = [
        "method",
        "task",
        "seeds",
        "W2 torchcfm",
        "W2 flowlab",
        "W2 published",
        "NPE torchcfm",
        "NPE flowlab",
        "NPE published",
    ]
    return common.markdown_table(headers, rows)


def build_checkpoints_table(records: Sequence[dict[str, Any]]) -> str:
    """Test W2 of the last and the best-validation checkpoint, per minibatch mode."""
    rows = []
    for mode in ("with replacement", "shuffled epochs"):
        mine = sorted(
            (r for r in records if r["minibatches"] == mode), key=lambda r: r["seed"]
        )
        if not mine:
            continue
        worse = sum(r["test_w2_best_validation"] > r["test_w2_last"] for r in mine)
        labels = sorted(
            {f"{METHODS[r['method']].label} {TASKS[r['task']].label}" for r in mine}
        )
        rows.append(
            [
                mode,
                ", ".join(labels),
                _seeds([r["seed"] for r in mine]),
                _pm(*_mean_std([r["test_w2_last"] for r in mine])),
                _pm(*_mean_std([r["test_w2_best_validation"] for r in mine])),
                f"{worse} of {len(mine)}",
            ]
        )
    headers = [
        "minibatches",
        "cell",
        "seeds",
        "test W2, last checkpoint",
        "test W2, best-validation checkpoint",
        "best-validation worse than last",
    ]
    return common.markdown_table(headers, rows)


def build_npe_table(records: Sequence[dict[str, Any]]) -> str:
    """NPE against the data's transport cost and against the flow's own endpoints."""
    rows = []
    for r in sorted(records, key=lambda r: (r["task"], r["method"], r["seed"])):
        pub = PUBLISHED.get((r["method"], r["task"]))
        rows.append(
            [
                METHODS[r["method"]].label,
                TASKS[r["task"]].label,
                r["seed"],
                f"{r['w2']:.3f}",
                f"{r['npe']:.3f}",
                f"{r['path_energy']:.3f}",
                f"{r['w2_source_target'] ** 2:.3f}",
                f"{r['w2_source_samples'] ** 2:.3f}",
                f"{r['npe_own_endpoints']:.4f}",
                f"{pub[2]:.3f}" if pub else "—",
            ]
        )
    headers = [
        "method",
        "task",
        "seed",
        "W2",
        "NPE",
        "PE",
        "W2²(q0, q1)",
        "W2²(source, samples)",
        "NPE, own endpoints",
        "NPE published",
    ]
    return common.markdown_table(headers, rows)


PAGES = (README, DOCS_PAGE, ROOT / "README.md")  # where the tables are quoted


def tables(results: Path = RESULTS) -> dict[str, str]:
    """Every table of the reproduction, by marker name, from the records."""
    table2 = load_results(results / "table2")
    return {
        "table2": build_table(table2),
        "table2-summary": build_summary_table(table2),
        "torchcfm": build_torchcfm_table(load_results(results / "torchcfm"), table2),
        "checkpoints": build_checkpoints_table(
            [
                json.loads(f.read_text())
                for f in sorted((results / "checkpoints").glob("*.json"))
            ]
        ),
        "npe": build_npe_table(load_results(results / "npe")),
    }


def write_tables(
    results: Path = RESULTS, pages: Sequence[Path] = PAGES
) -> dict[str, str]:
    """Rebuild every table from the records into `pages`; return the tables."""
    new = tables(results)
    for page in pages:
        if page.is_file():
            text = page.read_text()
            updated = replace_blocks(text, new)
            if updated != text:
                write_atomic(page, updated)
    return new


__all__ = [
    "DEFAULT_OUT",
    "PAGES",
    "blocks",
    "build_checkpoints_table",
    "build_npe_table",
    "build_summary_table",
    "build_table",
    "build_torchcfm_table",
    "load_results",
    "replace_blocks",
    "summarise",
    "tables",
    "verdict",
    "write_tables",
]
