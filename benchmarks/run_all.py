"""Run every flowlab benchmark and write `benchmarks/results/<name>.{json,md}`.

    bash benchmarks/install_peers.sh        # optional: the PyTorch peers
    python benchmarks/run_all.py            # full run, ~10-15 min on 2 CPU cores
    python benchmarks/run_all.py --quick    # smoke run, under a minute
    python -m benchmarks.run_all --no-torch # flowlab alone

The JSON holds every raw timing with the machine's description and the date; the
markdown holds the tables. `--update-readme` also pastes the tables into
`benchmarks/README.md` between its results markers. The device-count benchmark
(`bench_devices.py`, subprocesses with simulated devices) and the [SF]²M table
(`sf2m_table2.py`, hours) run on their own.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

try:
    from benchmarks import _common as common
    from benchmarks import bench_couplings, bench_sampling, bench_train
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    import _common as common
    import bench_couplings
    import bench_sampling
    import bench_train

HERE = Path(__file__).resolve().parent
BENCHES = {
    "train": bench_train,
    "sampling": bench_sampling,
    "couplings": bench_couplings,
}
USES_TORCH = ("train", "sampling")  # couplings' peer is POT
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def machine_table(info: dict[str, Any]) -> str:
    """The machine facts as a two-column markdown table."""
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
        ("load_average_start", "load average at start (1/5/15 min)"),
        ("load_average_end", "load average at end"),
    ]
    rows = [
        [label, info[key] if info[key] != "" else "(unset)"]
        for key, label in keys
        if info.get(key) is not None
    ]
    rows += [[f"${key}", f"`{value}`"] for key, value in info.get("env", {}).items()]
    return common.markdown_table(["machine", ""], rows)


def to_markdown(results: dict[str, Any]) -> str:
    """The report: machine facts, then one section per benchmark."""
    mode = (
        "quick (smoke) run: too few reps to trust the numbers"
        if results["quick"]
        else "full run"
    )
    parts = [
        f"### {results['name']} — {mode}, {results['wall_s']:.0f} s",
        "",
        machine_table(results["machine"]),
    ]
    for name, bench in BENCHES.items():
        if name in results:
            parts += ["", bench.markdown(results[name])]
    return "\n".join(parts) + "\n"


def update_readme(markdown: str, readme: Path) -> bool:
    """Replace the text between the results markers of `readme`; False if absent."""
    text = readme.read_text() if readme.exists() else ""
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{markdown}{README_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few short reps (smoke)")
    parser.add_argument("--no-torch", action="store_true", help="skip the peers")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(BENCHES), help="run only these benches"
    )
    parser.add_argument(
        "--name", help="results file stem (default: the jax backend, +'-quick')"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="paste the tables into benchmarks/README.md",
    )
    args = parser.parse_args(argv)

    torch, _ = common.optional_torch(args.no_torch)
    info = common.machine_info(torch)
    name = args.name or info["jax_backend"] + ("-quick" if args.quick else "")
    results: dict[str, Any] = {"name": name, "quick": args.quick, "machine": info}
    start = time.perf_counter()
    for bench_name in args.only or list(BENCHES):
        print(f"running {bench_name} ...", file=sys.stderr, flush=True)
        bench_start = time.perf_counter()
        kwargs = {"no_torch": args.no_torch} if bench_name in USES_TORCH else {}
        results[bench_name] = BENCHES[bench_name].run(quick=args.quick, **kwargs)
        results[bench_name]["wall_s"] = time.perf_counter() - bench_start
    results["wall_s"] = time.perf_counter() - start
    info["load_average_end"] = common.load_average()

    markdown = to_markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"wrote {args.out / name}.json and .md", file=sys.stderr)
    if args.update_readme and not update_readme(markdown, HERE / "README.md"):
        print("README.md has no results markers; left alone", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
