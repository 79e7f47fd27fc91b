"""Run the benchmark runners and write their summary to `benchmarks/runs/<name>/`.

    bash benchmarks/install_peers.sh           # optional: the PyTorch peers
    python -m benchmarks.run_all               # every runner, full
    python -m benchmarks.run_all --quick       # a smoke run of the same code paths
    python -m benchmarks.run_all --only train sampling --no-torch
    python -m benchmarks.run_all --list        # the runners
    python -m benchmarks.run_all --summarise benchmarks/runs/cpu --publish

Each runner runs in its own process (`python -m <this package>.<module>`),
confined at launch to its cores when it asks for fewer, and writes its run folder
`<run>/<runner>/` (`results.json`: every raw number; `results.md`: its tables).
The run's `summary.md` holds the headline table (a row or two per runner), when
and where each runner ran, the machine and every runner's tables. `--publish`
(from a source checkout, for a full run of every runner) copies it to
`benchmarks/latest.md`, the one committed result, and pastes the headline table
into `benchmarks/README.md`, the repository's `README.md` and
`docs/benchmarks.md`. `flowlab bench` is this command.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import RUNNERS

__all__ = [
    "HEADLINE",
    "checkout",
    "headline_block",
    "list_runners",
    "load_run",
    "main",
    "pages",
    "publish",
    "python",
    "summary",
]

HERE = Path(__file__).resolve().parent
HEADLINE = "speed"  # the marker name of the headline block in the READMEs


def checkout() -> Path | None:
    """The repository root when this package is a source checkout's `benchmarks/`."""
    root = HERE.parent
    if HERE.name == "benchmarks" and (root / "pyproject.toml").is_file():
        return root
    return None


def pages(root: Path) -> tuple[Path, ...]:
    """The pages of a checkout that quote the headline table between markers."""
    return (HERE / "README.md", root / "README.md", root / "docs" / "benchmarks.md")


def list_runners() -> str:
    """One line per runner: its name, what it measures, and where the code is."""
    width = max(map(len, RUNNERS))
    lines = [f"{name:<{width}}  {r.what}" for name, r in RUNNERS.items()]
    return "\n".join([*lines, f"runners: {__package__} ({HERE})"])


# Runs a module in a process confined to its first N usable cores from the start, as
# `taskset` would: XLA sizes its thread pool from the cores it sees when it starts.
_CONFINED = (
    "import os, runpy, sys; "
    "os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:{cores}]); "
    "del sys.argv[0]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def python(cores: int | None = None) -> list[str]:
    """The command that runs a module (the next argument): `python -m`, or the same
    with the process confined to `cores` cores before anything is imported."""
    if cores is None or not hasattr(os, "sched_setaffinity"):
        return [sys.executable, "-m"]
    return [sys.executable, "-c", _CONFINED.format(cores=int(cores))]


def launch(name: str, out: Path, quick: bool, no_torch: bool) -> int:
    """Run one runner in its own process; its exit status."""
    runner = RUNNERS[name]
    module = f"{__package__}.{runner.module}"
    cmd = [*python(runner.cores), module, "--out", str(out)]
    if quick:
        cmd.append("--quick")
    if no_torch and runner.module in ("bench_train", "bench_sampling"):
        cmd.append("--no-torch")
    # The runner must import this package the way this process did.
    env = dict(os.environ)
    root = str(HERE.parents[len(__package__.split(".")) - 1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.call(cmd, env=env)


def load_run(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The records of a run folder, by runner name, in `RUNNERS` order."""
    records = {}
    for name in RUNNERS:
        file = Path(run_dir) / name / "results.json"
        if file.is_file():
            records[name] = json.loads(file.read_text())
    return records


def _module(name: str):
    return importlib.import_module(f".{RUNNERS[name].module}", __package__)


def _md(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    from ._common import markdown_table

    return markdown_table(headers, rows)


def headline_block(records: dict[str, dict[str, Any]]) -> str:
    """The headline table, and the machine it was measured on."""
    rows = []
    for name, record in records.items():
        module = _module(name)
        cores = record["machine"].get("cores_usable") if "couplings" in name else None
        extra = {"cores": cores} if "couplings" in name else {}
        rows += module.headline(record["result"], **extra)
    machine = next(iter(records.values()))["machine"] if records else {}
    for record in records.values():  # the record that saw the PyTorch peers
        if record["machine"].get("torch"):
            machine = record["machine"]
            break
    dates = sorted({r["machine"].get("date", "?")[:10] for r in records.values()})
    versions = ", ".join(
        f"{k} {machine[k]}" for k in ("jax", "torch") if machine.get(k) is not None
    )
    quick = any(r["quick"] for r in records.values())
    lines = [
        _md(rows, ["measure", "flowlab", "peer", "note"]),
        "",
        f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"jax device {machine.get('device_kind', '?')}; {versions}; measured "
        f"{', '.join(dates)}"
        + ("; QUICK (smoke) run: too few reps to trust the numbers" if quick else "")
        + ". Every table, with the machine and the load: `benchmarks/latest.md`.",
    ]
    return "\n".join(lines)


def _machine_table(info: dict[str, Any]) -> str:
    keys = [
        ("date", "date (UTC)"),
        ("cpu", "CPU"),
        ("cores", "cores"),
        ("device_kind", "jax device"),
        ("jax", "jax"),
        ("jaxlib", "jaxlib"),
        ("flax", "flax"),
        ("optax", "optax"),
        ("diffrax", "diffrax"),
        ("torch", "torch"),
        ("torch_threads", "torch threads (default)"),
        ("torchdiffeq", "torchdiffeq"),
        ("torchcfm", "torchcfm"),
        ("xla_flags", "XLA_FLAGS"),
        ("malloc_retains_freed_memory", "malloc keeps freed memory (mallopt)"),
    ]
    rows = [
        [label, info[key] if info[key] != "" else "(unset)"]
        for key, label in keys
        if info.get(key) is not None
    ]
    rows += [[f"${key}", f"`{value}`"] for key, value in info.get("env", {}).items()]
    return _md(rows, ["machine", ""])


def _short(commit: str) -> str:
    """`398485a314+dirty` for a full hash with a `+dirty` mark."""
    sha, plus, mark = commit.partition("+")
    return sha[:10] + plus + mark


def summary(records: dict[str, dict[str, Any]], name: str) -> str:
    """The run's summary: headline, runs, machine, then each runner's tables."""
    runs = []
    for runner, r in records.items():
        m = r["machine"]
        commit = m.get("flowlab_commit")
        load = " → ".join(
            str(m.get(k) or "–") for k in ("load_average_start", "load_average_end")
        )
        runs.append(
            [
                runner,
                m.get("date", "–"),
                "quick" if r["quick"] else "full",
                "–" if r["wall_s"] is None else f"{r['wall_s']:.0f}",
                m.get("cores_usable", "–"),
                load,
                _short(commit) if commit else r.get("converted_from", "–"),
            ]
        )
    parts = [
        f"# flowlab benchmarks: {name}",
        "",
        "Written by `python -m benchmarks.run_all` (see `benchmarks/README.md`).",
        "",
        "## Headline",
        "",
        f"<!-- {HEADLINE}:start -->",
        headline_block(records),
        f"<!-- {HEADLINE}:end -->",
        "",
        "## Runs",
        "",
        _md(
            runs,
            [
                "runner",
                "date (UTC)",
                "mode",
                "wall s",
                "cores usable",
                "load average at start → end",
                "flowlab commit",
            ],
        ),
    ]
    machine = next(
        (r["machine"] for r in records.values() if r["machine"].get("torch")),
        next(iter(records.values()))["machine"] if records else {},
    )
    parts += ["", "## Machine", "", _machine_table(machine)]
    for runner, r in records.items():
        parts += [
            "",
            f"## {runner}: {RUNNERS[runner].what}",
            "",
            _module(runner).markdown(r["result"]),
        ]
    return "\n".join(parts) + "\n"


def publish(run_dir: Path, records: dict[str, dict[str, Any]]) -> list[Path]:
    """Copy a full run's summary to `latest.md`; paste its headline in the READMEs."""
    from ._common import replace_blocks

    root = checkout()
    if root is None:
        raise ValueError("--publish writes into a source checkout; this is none.")
    missing = sorted(set(RUNNERS) - set(records))
    if missing or any(r["quick"] for r in records.values()):
        raise ValueError(
            "--publish takes a full run of every runner; this run "
            + (f"lacks {', '.join(missing)}" if missing else "is a quick run")
            + "."
        )
    text = (Path(run_dir) / "summary.md").read_text()
    latest = HERE / "latest.md"
    latest.write_text(text)
    block = headline_block(records)
    written = [latest]
    for page in pages(root):
        old = page.read_text()
        new = replace_blocks(old, {HEADLINE: block})
        if new != old:
            page.write_text(new)
            written.append(page)
    return written


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the runners (or `--list`, or `--summarise`); write the summary."""
    from ._common import RUNS

    parser = argparse.ArgumentParser(
        prog=prog or f"python -m {__package__}.run_all",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--quick", action="store_true", help="few short reps (smoke)")
    parser.add_argument("--no-torch", action="store_true", help="skip the peers")
    parser.add_argument(
        "--only", nargs="+", choices=list(RUNNERS), help="run only these runners"
    )
    parser.add_argument("--list", action="store_true", help="list the runners")
    parser.add_argument(
        "--name", help="the run folder's name (default: the jax backend, +'-quick')"
    )
    parser.add_argument(
        "--out", type=Path, default=RUNS, help=f"where run folders go ({RUNS})"
    )
    parser.add_argument(
        "--summarise",
        type=Path,
        metavar="RUN_DIR",
        help="measure nothing: rebuild RUN_DIR's summary from its runners' records",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="copy the summary to benchmarks/latest.md and the READMEs (checkout)",
    )
    args = parser.parse_args(argv)
    if args.list:
        print(list_runners())
        return 0
    if args.summarise is not None:
        run_dir = args.summarise
        if not run_dir.is_dir():
            raise ValueError(f"no run folder {str(run_dir)!r}.")
    else:
        import jax

        name = args.name or jax.default_backend() + ("-quick" if args.quick else "")
        run_dir = args.out / name
        start = time.perf_counter()
        for runner in args.only or list(RUNNERS):
            print(f"running {runner} ...", file=sys.stderr, flush=True)
            status = launch(runner, run_dir / runner, args.quick, args.no_torch)
            if status:
                raise ValueError(f"runner {runner!r} failed (exit status {status}).")
        print(f"all in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    records = load_run(run_dir)
    if not records:
        raise ValueError(f"no runner records in {str(run_dir)!r}.")
    text = summary(records, run_dir.name)
    (run_dir / "summary.md").write_text(text)
    print(text)
    print(f"wrote {run_dir / 'summary.md'}", file=sys.stderr)
    if args.publish:
        for page in publish(run_dir, records):
            print(f"updated {page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:
        sys.exit(f"run_all: error: {err}")
