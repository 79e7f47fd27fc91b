"""flowlab's speed benchmarks: one runner per measured thing, beside the PyTorch peers.

Each runner is a module with `run(quick=...)` (a JSON-ready dict), `markdown` (its
tables), `headline` (its rows of the summary table) and `main`, which writes a run
folder: `results.json` with every raw timing and `results.md`. `run_all` runs the
runners in subprocesses and writes the summary. Run them as modules, from a
checkout (`python -m benchmarks.run_all`) or an installed flowlab, which ships this
package as `flowlab._benchmarks` (`flowlab bench`). See README.md.

This file imports nothing heavy: `flowlab bench --list` reads `RUNNERS` only.
"""

from typing import NamedTuple


class Runner(NamedTuple):
    """A measured thing: the module that measures it, what it measures, its cores.

    `cores`: the number of cores the runner's process is confined to at launch
    (as `taskset` does; None: every usable core).
    """

    module: str
    what: str
    cores: int | None = None


RUNNERS: dict[str, Runner] = {
    "train": Runner(
        "bench_train", "training steps/s: flowlab's jitted step beside PyTorch loops"
    ),
    "sampling": Runner(
        "bench_sampling", "10,000 samples with every ODE solver, beside torchdiffeq"
    ),
    "couplings": Runner(
        "bench_couplings", "minibatch couplings beside POT's ot.emd, every core"
    ),
    "couplings-1core": Runner(
        "bench_couplings", "the same, the process confined to one core", cores=1
    ),
    "devices": Runner("bench_devices", "fit on 1 and 8 devices (simulated on a CPU)"),
    "startup": Runner(
        "bench_startup", "the command line's start-up: fresh processes, cold starts"
    ),
}

__all__ = ["RUNNERS", "Runner"]
