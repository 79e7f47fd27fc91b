"""Shared helpers of the benchmarks: timing, machine facts, optional peers, tables.

Nothing here imports torch at module level: the PyTorch peers are optional, and
`optional_torch()` says why they are missing when they are. `runner_main` is the
command line every runner shares: run, then write the run folder.
"""

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

try:
    import resource
except ImportError:  # Windows
    resource = None

import jax
import jax.numpy as jnp
import numpy as np

from flowlab.training import retain_freed_memory

# As `flowlab train` does: XLA's CPU temporaries are malloc'd on every call, and
# glibc would otherwise unmap or trim them on free (~25% of a large CPU step in
# page faults). It is process-wide, so the PyTorch peers run under it too.
MALLOC_RETAINS_FREED = retain_freed_memory()

__all__ = [
    "RUNS",
    "Timing",
    "Usage",
    "blocks",
    "calibrate",
    "default_out",
    "fmt",
    "load_average",
    "machine_info",
    "markdown_table",
    "markers",
    "matmul_flops",
    "matmul_reference",
    "matmul_run",
    "optional_module",
    "optional_torch",
    "replace_blocks",
    "runner_main",
    "time_interleaved",
    "time_reps",
    "write_run",
]

# Where runs go by default, relative to the working directory (git-ignored in a
# checkout): `benchmarks/runs/<name>/`.
RUNS = Path("benchmarks") / "runs"


class Usage(NamedTuple):
    """CPU seconds (user, system) and minor page faults of this process so far."""

    user_s: float
    sys_s: float
    minor_faults: int

    @classmethod
    def now(cls) -> "Usage":
        if resource is None:  # not on a POSIX system
            return cls(math.nan, math.nan, 0)
        r = resource.getrusage(resource.RUSAGE_SELF)
        return cls(r.ru_utime, r.ru_stime, r.ru_minflt)

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(*(a - b for a, b in zip(self, other, strict=True)))


class Timing(dict):
    """Seconds per unit of work over repetitions, with `median`, `best` and spread.

    Also the process's CPU time and minor page faults per unit over all reps: on a
    machine shared with other work, CPU seconds per unit move much less than wall
    seconds do. A plain `dict` subclass so that it serialises to JSON as it is.
    """

    @classmethod
    def of(
        cls, seconds: Sequence[float], units: int, usage: Sequence[Usage] = ()
    ) -> "Timing":
        per_unit = [s / units for s in seconds]
        timing = cls(
            units_per_rep=units,
            reps=len(per_unit),
            seconds_per_unit=per_unit,
            median=statistics.median(per_unit),
            best=min(per_unit),
            worst=max(per_unit),
        )
        if usage:
            total = len(usage) * units
            timing.update(
                cpu_s_per_unit=sum(u.user_s + u.sys_s for u in usage) / total,
                sys_s_per_unit=sum(u.sys_s for u in usage) / total,
                minor_faults_per_unit=sum(u.minor_faults for u in usage) / total,
            )
        return timing


def _timed(run: Callable[[int], Any], units: int) -> tuple[float, Usage]:
    usage = Usage.now()
    start = time.perf_counter()
    run(units)
    return time.perf_counter() - start, Usage.now() - usage


def time_reps(run: Callable[[int], Any], units: int, reps: int) -> Timing:
    """Time `run(units)` `reps` times; `run` must block until its work is done."""
    seconds, usage = zip(*(_timed(run, units) for _ in range(reps)), strict=True)
    return Timing.of(seconds, units, usage)


def time_interleaved(
    runs: dict[str, Callable[[int], Any]],
    units: dict[str, int],
    reps: int,
    budget_s: float | None = None,
    min_reps: int = 3,
) -> dict[str, Timing]:
    """Time several contenders in turn, rep by rep, so they share the same noise.

    On a shared machine the load drifts; interleaving keeps a ratio between two
    contenders fair even when the absolute numbers move. After `min_reps` rounds,
    no new round starts once `budget_s` seconds have passed (a slow peer on a busy
    machine must not stretch a run without end).
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    usage: dict[str, list[Usage]] = {name: [] for name in runs}
    start_all = time.perf_counter()
    for rep in range(reps):
        elapsed = time.perf_counter() - start_all
        if budget_s is not None and rep >= min_reps and elapsed > budget_s:
            break
        for name, run in runs.items():
            wall, used = _timed(run, units[name])
            seconds[name].append(wall)
            usage[name].append(used)
    return {name: Timing.of(seconds[name], units[name], usage[name]) for name in runs}


def calibrate(run: Callable[[int], Any], target_s: float, max_units: int) -> int:
    """Units of work that take about `target_s` seconds (`run` is warm already)."""
    units = 1
    while True:
        start = time.perf_counter()
        run(units)
        elapsed = time.perf_counter() - start
        if elapsed >= target_s / 4 or units >= max_units:
            break
        units *= 4
    per_unit = elapsed / units
    return int(min(max_units, max(1, round(target_s / max(per_unit, 1e-9)))))


def matmul_run(n: int) -> Callable[[int], None]:
    """`run(units)`: `units` jitted float32 `n x n` matmuls, warmed up, blocking."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))

    def run(units: int) -> None:
        for _ in range(units):
            out = matmul(a, b)
        jax.block_until_ready(out)

    return run


def matmul_flops(n: int, reps: int, target_s: float = 0.25) -> dict[str, Any]:
    """FLOP/s of a jitted float32 `n x n` matmul (2 n^3 FLOPs) over `reps` reps."""
    run = matmul_run(n)
    timing = time_reps(run, calibrate(run, target_s, 1000), reps)
    flops = 2.0 * n**3
    return {
        "n": n,
        "dtype": "float32",
        "timing": timing,
        "flops_per_s": flops / timing["median"],
        "best_flops_per_s": flops / timing["best"],
        "flops_per_cpu_s": flops / timing["cpu_s_per_unit"],
    }


def matmul_reference(sizes: Sequence[int], reps: int) -> dict[str, Any]:
    """The machine's matmul FLOP/s: the fastest (by median) of several sizes."""
    by_size = [matmul_flops(n, reps) for n in sizes]
    best = max(by_size, key=lambda m: m["flops_per_s"])
    return {**best, "sizes": by_size}


def optional_module(name: str) -> tuple[Any, str | None]:
    """`(module, None)`, or `(None, reason)` when `name` does not import."""
    try:
        return importlib.import_module(name), None
    except Exception as err:  # any import failure means: skip that peer
        return None, f"{type(err).__name__}: {err}"


def optional_torch(disabled: bool = False) -> tuple[Any, str | None]:
    """torch, or `None` and the reason its columns are skipped."""
    if disabled:
        return None, "disabled with --no-torch"
    torch, reason = optional_module("torch")
    if torch is None:
        reason = f"torch not installed ({reason}); run benchmarks/install_peers.sh"
    return torch, reason


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work on a shared machine)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                    return [flag for flag in wanted if flag in flags]
    except OSError:
        pass
    return []


# Environment variables that change what the numbers mean (threads, allocator).
_ENV_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "OMP_", "MKL_", "JAX_", "TF_CPP")


def _flowlab_commit() -> str | None:
    """The git commit of the flowlab source imported, when it is a checkout.

    `+dirty` is appended when `flowlab/` has uncommitted changes.
    """
    import flowlab

    root = Path(flowlab.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", "flowlab")
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def machine_info(torch: Any = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, versions, device, load."""
    device = jax.devices()[0]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "jaxlib": importlib.import_module("jaxlib").__version__,
        "jax_backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "env": {
            key: value
            for key, value in sorted(os.environ.items())
            if key.startswith(_ENV_PREFIXES)
        },
        "numpy": np.__version__,
        "malloc_retains_freed_memory": MALLOC_RETAINS_FREED,
        "load_average_start": load_average(),
    }
    for name in ("flax", "optax", "diffrax", "flowlab"):
        module, _ = optional_module(name)
        info[name] = getattr(module, "__version__", None)
    info["flowlab_commit"] = _flowlab_commit()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
        for name in ("torchdiffeq", "torchcfm", "flow_matching"):
            module, _ = optional_module(name)
            info[name] = getattr(module, "__version__", None) if module else None
    return info


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with `digits` significant figures, thousands separated; `-` if None."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; the first column is left-aligned, the rest right."""
    align = [":---"] + ["---:"] * (len(headers) - 1)
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markers(name: str) -> tuple[str, str]:
    """The HTML comments a generated block of a markdown page sits between."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def blocks(text: str) -> dict[str, str]:
    """The generated blocks of a markdown text, by name (stripped)."""
    pattern = r"<!-- ([\w-]+):start -->(.*?)<!-- \1:end -->"
    return {m[1]: m[2].strip() for m in re.finditer(pattern, text, flags=re.S)}


def replace_blocks(text: str, new: dict[str, str]) -> str:
    """`text` with each block that has markers in it replaced by `new[name]`."""
    for name, block in new.items():
        start, end = markers(name)
        if start in text and end in text:
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{start}\n{block}\n{end}{tail}"
    return text


def default_out(runner: str, quick: bool = False) -> Path:
    """`benchmarks/runs/<runner>-<backend>[-quick]`, under the working directory."""
    return RUNS / f"{runner}-{jax.default_backend()}{'-quick' if quick else ''}"


def write_run(out: Path, record: dict[str, Any], markdown: str) -> None:
    """A run folder: `results.json` (every raw number) and `results.md` (tables)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "results.md").write_text(markdown + "\n")


def runner_main(
    runner: str,
    doc: str,
    run: Callable[..., dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
    *,
    uses_torch: bool = True,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The command line of one runner: measure, print, write the run folder.

    `run(quick=..., [no_torch=...], **extra)` returns a JSON-ready dict; the run
    folder's `results.json` holds it under `result`, with the runner's name, the
    machine (load average at start and end), the mode and the wall time;
    `results.md` holds `markdown(result)`. `add_arguments` adds runner options,
    passed to `run` by name.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}.{runner_module(runner)}",
        description=doc.splitlines()[0],
    )
    parser.add_argument("--quick", action="store_true", help="few short reps (smoke)")
    if uses_torch:
        parser.add_argument("--no-torch", action="store_true", help="skip the peers")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"run folder (default {RUNS}/{runner}-<backend>[-quick])",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = vars(parser.parse_args(argv))
    quick, out = args.pop("quick"), args.pop("out")
    out = out or default_out(runner, quick)
    torch = None
    if uses_torch:
        torch, _ = optional_torch(args["no_torch"])
    machine = machine_info(torch)
    start = time.perf_counter()
    result = run(quick=quick, **args)
    wall = time.perf_counter() - start
    machine["load_average_end"] = load_average()
    record = {
        "runner": runner,
        "quick": quick,
        "argv": list(sys.argv[1:] if argv is None else argv),
        "wall_s": wall,
        "machine": machine,
        "result": result,
    }
    text = markdown(result)
    write_run(out, record, text)
    print(text)
    print(f"wrote {out}/results.json and results.md", file=sys.stderr)
    return 0


def runner_module(runner: str) -> str:
    """The module of a runner name (`train` -> `bench_train`)."""
    from . import RUNNERS

    return RUNNERS[runner].module
