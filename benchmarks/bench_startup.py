"""Start-up time of the `flowlab` command line: fresh processes, cold Python starts.

Each command runs in a new process, timed from launch to exit (wall seconds), over
N repetitions taken in turn so that every command sees the same load; one unmeasured
run of each comes first (it writes the `.pyc` files and warms the page cache). A
last run of each, through a small wrapper, records which heavy modules it loaded
(jax, ott, ...). `python -c pass` is the interpreter's own start and
`python -c 'import jax'` the floor for anything that needs JAX. The commands run in
the working directory with this interpreter, so they import the flowlab it imports.

    python -m benchmarks.bench_startup [--quick] [--commands help run] [--out DIR]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from . import _common as common

__all__ = ["COMMANDS", "Command", "headline", "main", "markdown", "measure", "run"]


class Command(NamedTuple):
    """A command line: its label, its arguments, the exit status it must return.

    `argv` follows the interpreter (`python -c ...`, `python -m ...`), or the
    console script `flowlab` when `script` is set.
    """

    label: str
    argv: tuple[str, ...]
    status: int = 0
    script: bool = False


_CLI = ("-m", "flowlab.cli")
COMMANDS: dict[str, Command] = {
    "python": Command("`python -c pass`", ("-c", "pass")),
    "jax": Command("`python -c 'import jax'`", ("-c", "import jax")),
    "import": Command("`python -c 'import flowlab'`", ("-c", "import flowlab")),
    "help": Command("`python -m flowlab.cli --help`", (*_CLI, "--help")),
    "script-help": Command("`flowlab --help` (console script)", ("--help",), 0, True),
    "train-help": Command("`flowlab train --help`", (*_CLI, "train", "--help")),
    "arg-error": Command(
        "`flowlab train model.widht=3` (exits 2)", (*_CLI, "train", "model.widht=3"), 2
    ),
    "run": Command("`python -c 'import flowlab.run'`", ("-c", "import flowlab.run")),
}

# The modules that make a start slow; each probe says which of them it loaded.
HEAVY = (
    "jax",
    "jaxlib",
    "numpy",
    "scipy",
    "ott",
    "flax",
    "optax",
    "diffrax",
    "equinox",
    "orbax",
    "torch",
    "matplotlib",
)

# Runs one command as its process would (the CLI through `flowlab.cli.main`, code
# with `exec`), then prints the heavy modules loaded, as the last line of stderr.
PROBE = r"""
import json, sys
heavy, kind, *args = sys.argv[1:]
status = 0
try:
    if kind == "cli":
        sys.argv = ["flowlab", *args]
        from flowlab.cli import main
        status = main(args)
    else:
        exec(args[0])
except SystemExit as err:
    status = 0 if err.code is None else err.code
top = {name.partition(".")[0] for name in sys.modules}
sys.stderr.write("\nPROBE " + json.dumps({
    "status": status,
    "modules": len(sys.modules),
    "heavy": [name for name in heavy.split(",") if name in top],
}) + "\n")
sys.exit(status)
"""


def _script() -> Path:
    """The console script `flowlab` beside this interpreter (it may be missing)."""
    return Path(sys.executable).with_name("flowlab")


def _launch(command: Command) -> list[str]:
    head = [str(_script())] if command.script else [sys.executable]
    return [*head, *command.argv]


def _probe(command: Command) -> list[str]:
    if command.script or command.argv[:2] == _CLI:
        kind, args = "cli", command.argv if command.script else command.argv[2:]
    else:
        kind, args = "code", command.argv[1:]
    return [sys.executable, "-c", PROBE, ",".join(HEAVY), kind, *args]


def _call(cmd: list[str], status: int) -> tuple[float, common.Usage, str]:
    """Run `cmd` to its end: wall seconds, its CPU time, its stderr."""
    before = _children()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode != status:
        raise RuntimeError(
            f"{cmd[1:]!r} exited {proc.returncode}, not {status}:\n"
            + proc.stderr[-2000:]
        )
    return wall, _children() - before, proc.stderr


def _children() -> common.Usage:
    """CPU seconds and minor faults of the waited-for child processes so far."""
    if common.resource is None:
        return common.Usage.now()  # NaNs off POSIX
    r = common.resource.getrusage(common.resource.RUSAGE_CHILDREN)
    return common.Usage(r.ru_utime, r.ru_stime, r.ru_minflt)


def measure(names: list[str], reps: int) -> dict[str, dict[str, Any]]:
    """Time each command `reps` times, in turn; then probe what each loaded."""
    commands = {name: COMMANDS[name] for name in names}
    first = {name: _call(_launch(c), c.status)[0] for name, c in commands.items()}
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    usage: dict[str, list[common.Usage]] = {name: [] for name in commands}
    for _ in range(reps):
        for name, command in commands.items():
            wall, used, _ = _call(_launch(command), command.status)
            seconds[name].append(wall)
            usage[name].append(used)
    rows = {}
    for name, command in commands.items():
        stderr = _call(_probe(command), command.status)[2]
        probe = json.loads(stderr.rsplit("\nPROBE ", 1)[1])
        rows[name] = {
            "label": command.label,
            "argv": _launch(command)[1:],
            "script": str(_script()) if command.script else None,
            "status": command.status,
            "first_run_s": first[name],
            "timing": common.Timing.of(seconds[name], 1, usage[name]),
            "modules": probe["modules"],
            "heavy": probe["heavy"],
        }
    return rows


def run(quick: bool = False, commands: list[str] | None = None) -> dict[str, Any]:
    """Every command (or `commands`), 5 reps (2 quick); a JSON-ready dict."""
    names = list(commands or COMMANDS)
    if "script-help" in names and not _script().is_file():
        print(f"  no console script {_script()}: skipped", file=sys.stderr)
        names.remove("script-help")
    reps = 2 if quick else 5
    print(f"  {len(names)} commands x {reps} reps", file=sys.stderr, flush=True)
    import flowlab

    return {
        "reps": reps,
        "python": sys.executable,
        "cwd": str(Path.cwd()),
        "flowlab_file": flowlab.__file__,
        "heavy_modules": list(HEAVY),
        "commands": measure(names, reps),
    }


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1e3:.0f} ms" if seconds < 0.9995 else f"{seconds:.2f} s"


def _loads(row: dict[str, Any], name: str) -> str:
    return "yes" if name in row["heavy"] else "no"


def markdown(result: dict[str, Any]) -> str:
    """The start-up table in markdown."""
    rows = result["commands"]
    floor = rows.get("python", {}).get("timing", {}).get("median")
    table = []
    for name, row in rows.items():
        t = row["timing"]
        above = None if floor is None else t["median"] - floor
        others = [m for m in row["heavy"] if m not in ("jax", "jaxlib", "ott")]
        table.append(
            [
                row["label"],
                _time(t["median"]),
                _time(t["best"]),
                _time(t["worst"]),
                _time(above) if name != "python" else "–",
                _time(t.get("cpu_s_per_unit")),
                _loads(row, "jax"),
                _loads(row, "ott"),
                ", ".join(others) or "–",
                row["modules"],
            ]
        )
    headers = [
        "command",
        "median",
        "min",
        "max",
        "above `python -c pass`",
        "CPU (mean)",
        "loads jax",
        "loads ott",
        "other heavy modules",
        "modules",
    ]
    return (
        f"**Start-up time of the command line** (wall time of a fresh process, "
        f"median, min and max of {result['reps']} cold starts taken in turn, after "
        "one unmeasured run of each; `flowlab` is `python -m flowlab.cli` unless "
        "marked).\n\n" + common.markdown_table(headers, table)
    )


def headline(result: dict[str, Any]) -> list[list[str]]:
    """Summary rows: `flowlab --help` and `import flowlab.run`, medians."""
    rows = result["commands"]

    def median(name: str) -> float | None:
        return rows[name]["timing"]["median"] if name in rows else None

    floors = "; ".join(
        f"{COMMANDS[name].label} {_time(median(name))}"
        for name in ("python", "jax")
        if name in rows
    )
    out = []
    help_name = next((n for n in ("script-help", "help") if n in rows), None)
    if help_name is not None:
        row = rows[help_name]
        seconds = median(help_name)
        out.append(
            [
                f"`flowlab --help` start-up, median of {result['reps']} cold starts",
                f"{_time(seconds)} (loads jax: {_loads(row, 'jax')}, "
                f"ott: {_loads(row, 'ott')})",
                floors or "–",
                f"target < 1 s: {'met' if seconds < 1 else 'missed'}",
            ]
        )
    if "run" in rows:
        row, jax_s = rows["run"], median("jax")
        note = "" if jax_s is None else f"{_time(median('run') - jax_s)} above jax's; "
        out.append(
            [
                "`import flowlab.run` (what a training run imports first)",
                _time(median("run")),
                floors or "–",
                f"{note}loads ott: {_loads(row, 'ott')}",
            ]
        )
    return out


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--commands", nargs="+", choices=list(COMMANDS), help="only these commands"
    )


def main(argv: list[str] | None = None) -> int:
    return common.runner_main(
        "startup",
        __doc__,
        run,
        markdown,
        argv,
        uses_torch=False,
        add_arguments=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
