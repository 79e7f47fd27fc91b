"""The [SF]²M Table 2 protocol: settings, tasks, methods, published values, data.

Shared by `table2.py` (training and evaluation), `report.py` (the tables),
`checkpoints.py` and `torchcfm_peer.py`.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from flowlab import couplings, data, paths, schedules

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the repository
RESULTS = HERE / "results"
DEFAULT_OUT = RESULTS / "table2"  # one JSON per (task, method, seed)
README = HERE / "README.md"  # the tables' home, between markers
DOCS_PAGE = ROOT / "docs" / "reproduction.md"  # the same tables on the docs site

PROTOCOL = {
    "n_train": 10_000,
    "batch_size": 512,
    "steps": 19_532,  # 1000 epochs of 10,000 / 512 batches
    "width": 64,
    "depth": 3,
    "activation": "selu",
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "lr_schedule": "constant",
    "ema": "none",
    "time_sampler": "uniform [0, 1)",
    "solver": "euler",
    "solver_steps": 100,
    "n_eval": 10_000,
    "seeds": [0, 1, 2, 3, 4],
    "data": {
        "gaussian": "N(0, I) in 2-D",
        "8gaussians": "torchcfm sample_8gaussians: radius 5, covariance sqrt(0.1) I",
        "moons": "torchdyn generate_moons(noise=0.2) * 3 - 1",
        "scurve": "scikit-learn make_s_curve(noise=0.05) on (x, z), times 1.5 "
        "(torchcfm runner's sklearn data module)",
    },
}
# Before the runner's S-curve was adopted: results without `protocol["data"]`.
LEGACY_DATA = {
    **PROTOCOL["data"],
    "scurve": "scikit-learn make_s_curve(noise=0.1) on (x, z), not rescaled",
}
STEPS_PER_CALL = 257  # 19,532 = 76 x 257: one compiled call size for a full run
SKIP_NONFINITE = "skip"  # SB-CFM's target diverges at t = 0 (drawn w.p. ~2^-23)


class Task(NamedTuple):
    """A transport problem: source and target sampler names and a label."""

    source: str
    target: str
    label: str


TASKS: dict[str, Task] = {
    "normal_8gaussians": Task("gaussian", "8gaussians", "N→8gaussians"),
    "8gaussians_moons": Task("8gaussians", "moons", "8gaussians→moons"),
    "normal_moons": Task("gaussian", "moons", "N→moons"),
    "normal_scurve": Task("gaussian", "scurve", "N→scurve"),
}


class Method(NamedTuple):
    """How a method trains: its path, its coupling, and what it is defined for."""

    label: str
    sigma: float
    path_fn: Callable[[float], paths.AbstractPath]
    coupling_fn: Callable[[float], Any]
    gaussian_source_only: bool
    note: str


# Cheapest first: the run order within a seed (measured per-step cost on CPU).
METHODS: dict[str, Method] = {
    "icfm": Method(
        "I-CFM",
        0.1,
        paths.ConstantNoisePath,
        lambda s: couplings.independent(),
        False,
        "x_t = (1-t)x0 + t x1 + σz, σ = 0.1, independent pairs",
    ),
    "fm": Method(
        "FM",
        0.1,
        lambda s: paths.AffinePath(schedules.lipman_ot(s)),
        lambda s: couplings.independent(),
        True,
        "Lipman's path x_t = t x1 + (1 - (1 - σ_min)t) x0, σ_min = 0.1",
    ),
    "sbcfm": Method(
        "SB-CFM",
        1.0,
        paths.schrodinger_bridge,
        lambda s: couplings.sinkhorn(epsilon=2 * s**2),
        False,
        "x_t = (1-t)x0 + t x1 + σ sqrt(t(1-t)) z, σ = 1.0, Sinkhorn plan ε = 2σ² = 2",
    ),
    "otcfm": Method(
        "OT-CFM",
        0.1,
        paths.ConstantNoisePath,
        lambda s: couplings.exact_ot(),
        False,
        "I-CFM's path (σ = 0.1) on exact minibatch OT pairs",
    ),
}

TABLE_ORDER = ("otcfm", "icfm", "fm", "sbcfm")  # the paper's row order

# (method, task) -> (W2 mean, W2 std or None, NPE); None where the paper has "—".
PUBLISHED: dict[tuple[str, str], tuple[float, float | None, float] | None] = {
    ("otcfm", "normal_8gaussians"): (0.303, 0.043, 0.031),
    ("otcfm", "8gaussians_moons"): (0.601, 0.027, 0.015),
    ("otcfm", "normal_moons"): (0.130, 0.016, 0.083),
    ("otcfm", "normal_scurve"): (0.144, 0.028, 0.027),
    ("icfm", "normal_8gaussians"): (0.373, 0.103, 0.202),
    ("icfm", "8gaussians_moons"): (1.557, 0.407, 2.680),
    ("icfm", "normal_moons"): (0.178, 0.014, 0.891),
    ("icfm", "normal_scurve"): (0.242, 0.141, 0.856),
    ("fm", "normal_8gaussians"): (0.343, None, 0.190),
    ("fm", "normal_moons"): (0.209, None, 0.762),
    ("fm", "normal_scurve"): (0.198, None, 0.743),
    ("sbcfm", "normal_8gaussians"): (2.314, 2.112, 1.000),
    ("sbcfm", "8gaussians_moons"): None,
    ("sbcfm", "normal_moons"): (0.434, None, 0.995),
    ("sbcfm", "normal_scurve"): (0.341, None, 0.745),
}


def cells(
    tasks: Sequence[str] = tuple(TASKS), methods: Sequence[str] = tuple(METHODS)
) -> list[tuple[str, str]]:
    """The (task, method) pairs that are defined, in run order (cheap methods first).

    FM needs a Gaussian source, so it has no 8gaussians→moons cell (15 in all).
    """
    return [
        (task, method)
        for method in METHODS
        if method in methods
        for task in TASKS
        if task in tasks
        and not (
            METHODS[method].gaussian_source_only and TASKS[task].source != "gaussian"
        )
    ]


def result_path(out: Path, task: str, method: str, seed: int) -> Path:
    """Where the result of one (task, method, seed) is stored."""
    return Path(out) / f"{task}__{method}__seed{seed}.json"


def sampler(name: str) -> data.AbstractSampler:
    """The sampler of one of `PROTOCOL["data"]`."""
    if name == "gaussian":
        return data.Gaussian(2)
    if name == "scurve":  # torchcfm's runner (its utils have no S-curve)
        return data.SCurve(noise=0.05, scale=1.5)
    return data.get(name)


def same_data(result: dict[str, Any], task: str) -> bool:
    """Whether `result` used the current definitions of `task`'s two data sets."""
    used = result.get("protocol", {}).get("data", LEGACY_DATA)
    spec = TASKS[task]
    return all(used.get(k) == PROTOCOL["data"][k] for k in (spec.source, spec.target))
