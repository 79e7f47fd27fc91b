"""The markdown report of `bench_train.py`: throughput, FLOP/s and targets."""

from typing import Any

from . import _common as common


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def _rate(entry: dict[str, Any] | None) -> str:
    """Median steps/s with the best rep in brackets."""
    if entry is None:
        return "–"
    median, best = entry["steps_per_s"], entry["best_steps_per_s"]
    return f"{common.fmt(median)} ({common.fmt(best)})"


def markdown(result: dict[str, Any]) -> str:
    """The training tables in markdown."""
    fmt = common.fmt
    has_torch = result["torch_skipped"] is None
    threads = result["torch_threads"]
    headers = ["model", "batch", "flowlab K=1", "flowlab fused"]
    if has_torch:
        headers += [f"torch eager ({threads} threads)", "torch eager (1 thread)"]
        headers += ["torchcfm loop"]
    headers += ["first call K=1 / fused (s)"]
    rows, ratio_rows = [], []
    for case in result["cases"]:
        r = result[case["name"]]
        k1, fused = r["flowlab_k1"], r["flowlab_fused"]
        label = f"{case['name']}: {case['depth']}×{case['width']} SELU"
        row = [label, case["batch"], _rate(k1)]
        row += [f"K={case['fused_k']}: {_rate(fused)}"]
        if has_torch:
            row += [_rate(r["torch"]), _rate(r.get("torch_1thread"))]
            row += [_rate(r.get("torchcfm"))]
            ratio_rows.append(
                [
                    label,
                    f"{k1['ratio_to_torch']:.2f}×",
                    f"{fused['ratio_to_torch']:.2f}×",
                    f"{k1['ratio_to_best_torch']:.2f}×",
                    f"{fused['ratio_to_best_torch']:.2f}×",
                ]
            )
        row += [f"{k1['first_call_s']:.2f} / {fused['first_call_s']:.2f}"]
        rows.append(row)
    settings = result["settings"]
    lines = [
        f"**Training steps/s**: median (best) of up to {settings['reps']} "
        f"interleaved reps of ~{settings['target_s']:g} s each; higher is better; "
        "first call = trace + compile + one call.",
        "",
        common.markdown_table(headers, rows),
        "",
    ]
    if has_torch:
        ratio_headers = [
            "model",
            "flowlab K=1 / torch",
            "flowlab fused / torch",
            "K=1 / faster torch",
            "fused / faster torch",
        ]
        lines += [
            f"**flowlab / PyTorch** (torch = the eager loop at its default "
            f"{threads} threads; faster torch = the faster of {threads} threads "
            "and 1 thread)",
            "",
            common.markdown_table(ratio_headers, ratio_rows),
            "",
        ]
    else:
        lines += [f"PyTorch columns skipped: {result['torch_skipped']}.", ""]

    large, matmul = result["large"], result["matmul"]
    fused_k = result["cases"][1]["fused_k"]
    entries = [
        ("flowlab step K=1", large["flowlab_k1"]),
        (f"flowlab step K={fused_k}", large["flowlab_fused"]),
    ]
    if "breakdown" in large:
        entries += [
            ("flowlab loss value_and_grad only", large["breakdown"]["loss_grad"]),
            ("… the same with ReLU for SELU", large["breakdown"]["loss_grad_relu"]),
            ("its matmuls alone (fwd + bwd)", large["breakdown"]["matmuls_only"]),
        ]
    if has_torch:
        entries.append((f"torch eager step ({threads} threads)", large["torch"]))
        if "torch_1thread" in large:
            entries.append(("torch eager step (1 thread)", large["torch_1thread"]))
    rows = [
        [
            label,
            fmt(e["flops_per_s"] / 1e9),
            _percent(e["fraction_of_matmul"]),
            fmt(e["best_flops_per_s"] / 1e9),
            _percent(e["best_fraction_of_matmul"]),
            fmt(e["flops_per_cpu_s"] / 1e9),
            _percent(e["cpu_fraction_of_matmul"]),
            fmt(1e3 * e["sys_s_per_step"]),
            fmt(e["minor_faults_per_step"]),
        ]
        for label, e in entries
    ]
    headers = [
        "what",
        "GFLOP/s",
        "of matmul",
        "best-rep GFLOP/s",
        "of best matmul",
        "GFLOP per CPU-s",
        "of matmul, CPU time",
        "sys ms / step",
        "page faults / step",
    ]
    xla = large.get("xla_flops_per_step")
    xla_note = f"; XLA's `cost_analysis` counts {xla / 1e9:.2f} GFLOP" if xla else ""
    sizes = ", ".join(
        f"{m['n']}²: {fmt(m['flops_per_s'] / 1e9)}"
        for m in result["matmul_sweep"]["sizes"]
    )
    lines += [
        f"**Large model FLOP/s**: analytic {large['flops_per_step'] / 1e9:.2f} GFLOP "
        f"per step (6·B·Σ in·out{xla_note}). The reference is the fastest jitted "
        f"float32 square matmul of a sweep ({sizes} GFLOP/s, medians), "
        f"{matmul['n']}², timed again in the same interleaved rounds as the steps: "
        f"{fmt(matmul['flops_per_s'] / 1e9)} GFLOP/s (best rep "
        f"{fmt(matmul['best_flops_per_s'] / 1e9)}). CPU time is this process's "
        "user + system time: it moves much less than wall time when other work "
        "shares the machine; its reference is the best matmul of the sweep and the "
        f"interleaved runs, {fmt(matmul['reference_flops_per_cpu_s'] / 1e9)} GFLOP "
        "per CPU-second. Page faults are minor faults.",
        "",
        common.markdown_table(headers, rows),
        "",
    ]
    small_t = result["targets"]["small_vs_torch"]
    large_t = result["targets"]["large_vs_matmul"]
    if small_t["met"] is None:
        small_line = "not measured (no torch)"
    else:
        small_line = (
            f"{small_t['measured_fused']:.2f}× fused, {small_t['measured_k1']:.2f}× "
            f"at K=1 — {'met' if small_t['met'] else 'MISSED'} (fused vs the faster "
            f"torch: {small_t['measured_fused_vs_best_torch']:.2f}×)"
        )
    lines.append(
        f"Targets: small model ≥ {small_t['target']:g}× torch: {small_line}; "
        f"large model ≥ {_percent(large_t['target'])} of matmul FLOP/s: "
        f"{_percent(large_t['measured'])} — {'met' if large_t['met'] else 'MISSED'} "
        f"(best rep against best matmul: {_percent(large_t['measured_best_rep'])}; "
        f"in FLOPs per CPU second: {_percent(large_t['measured_cpu_time'])})."
    )
    return "\n".join(lines)


def headline(result: dict[str, Any]) -> list[list[str]]:
    """Summary rows: the small model against torch, the large one against matmul."""
    fmt = common.fmt
    has_torch = result["torch_skipped"] is None
    threads = result["torch_threads"]
    small, large = result["cases"]
    s, g = result["small"], result["large"]
    targets = result["targets"]
    small_t, large_t = targets["small_vs_torch"], targets["large_vs_matmul"]
    peer = "–"
    note = "torch not measured"
    if has_torch:
        peer = (
            f"torch eager {fmt(s['torch']['steps_per_s'])} ({threads} threads)"
            + (
                f", {fmt(s['torch_1thread']['steps_per_s'])} (1 thread)"
                if "torch_1thread" in s
                else ""
            )
            + (
                f"; torchcfm loop {fmt(s['torchcfm']['steps_per_s'])}"
                if "torchcfm" in s
                else ""
            )
        )
        best = small_t["measured_fused_vs_best_torch"]
        met = "met" if best >= small_t["target"] else "missed"
        note = (
            f"fused: {best:.2f}× the faster torch "
            f"(target ≥ {small_t['target']:g}×: {met})"
        )
    rows = [
        [
            f"train steps/s, {small['depth']}×{small['width']} SELU MLP, batch "
            f"{small['batch']}",
            f"{fmt(s['flowlab_fused']['steps_per_s'])} (K={small['fused_k']} fused); "
            f"{fmt(s['flowlab_k1']['steps_per_s'])} (K=1)",
            peer,
            note,
        ]
    ]
    fused = g["flowlab_fused"]
    large_peer = "–"
    if has_torch:
        large_peer = (
            f"torch eager {fmt(g['torch']['steps_per_s'])} steps/s, "
            f"{_percent(g['torch']['fraction_of_matmul'])}"
        )
    rows.append(
        [
            f"train steps/s, {large['depth']}×{large['width']} SELU MLP, batch "
            f"{large['batch']}",
            f"{fmt(fused['steps_per_s'])} (K={large['fused_k']}) = "
            f"{fmt(fused['flops_per_s'] / 1e9)} GFLOP/s, "
            f"{_percent(fused['fraction_of_matmul'])} of a float32 "
            f"{result['matmul']['n']}² matmul",
            large_peer,
            f"target ≥ {_percent(large_t['target'])}: "
            f"{'met' if large_t['met'] else 'missed'} (best rep against best rep: "
            f"{_percent(large_t['measured_best_rep'])})",
        ]
    )
    return rows
