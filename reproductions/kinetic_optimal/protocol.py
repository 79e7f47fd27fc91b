"""The kinetic-optimal study's protocol: tasks, schedules, settings, the quick variant.

Shared by `study.py` (energies, training, evaluation), `report.py` (the tables)
and `run.py` (the command line).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from flowlab import data, schedules

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"  # the tables' home, between markers
FIGURE = HERE.parents[1] / "docs" / "assets" / "kinetic_optimal_nfe.png"


def _toy(name: str) -> Callable[[int, int], jax.Array]:
    def draw(n: int, seed: int) -> jax.Array:
        return data.get(name).sample(jax.random.key(seed), n)

    return draw


def _digits(n: int, seed: int) -> jax.Array:
    """The 1,438 training digits (all of them: `n` and `seed` are not used)."""
    del n, seed
    return jnp.asarray(data.load_digits("train").x)


class EnergyTask(NamedTuple):
    """A target whose kinetic energies are measured, from N(0, I)."""

    label: str  # as the tables print it
    points: Callable[[int, int], jax.Array]  # (n, seed) -> target points


ENERGY_TASKS = {
    "moons": EnergyTask("moons (2-D)", _toy("moons")),
    "8gaussians": EnergyTask("8gaussians (2-D)", _toy("8gaussians")),
    "digits": EnergyTask("digits (64-D)", _digits),
}

# name: (label, factory); "kinetic_optimal" is fitted to each task's points.
SCHEDULES: dict[str, tuple[str, Callable[[], Any] | None]] = {
    "cond_ot": ("Cond-OT", schedules.cond_ot),
    "cosine": ("cosine", schedules.cosine),
    "vp": ("VP (0.1, 20)", schedules.vp),
    "linear_vp": ("linear VP", schedules.linear_vp),
    "kinetic_optimal": ("kinetic-optimal", None),
}
# Finite energy up to t = 1 (VP's sigma ~ sqrt(1 - t) makes its integral diverge).
FINITE_AT_1 = ("cond_ot", "cosine", "kinetic_optimal")

# The trained comparisons: a named config of `configs/`, its schedules, seeds.
TRAIN_TASKS = {
    "moons": ("moons", ("cond_ot", "kinetic_optimal", "cosine"), (0, 1, 2)),
    "8gaussians": ("8gaussians", ("cond_ot", "kinetic_optimal", "cosine"), (0, 1, 2)),
}
DIGITS = ("digits", ("cond_ot", "kinetic_optimal"), (0,))

PROTOCOL: dict[str, Any] = {
    # Energies.
    "energy_points": 4_000,  # target points of the 2-D sets (digits: its 1,438)
    "data_seed": 0,  # their draw
    "separation_seed": 1,  # the one key of data_separation (and of the fit)
    "grid": 64,  # kinetic_optimal's defaults
    "n_queries": 1_024,
    "regularization": 0.1,
    "t_max": 0.999,
    "quadrature_nodes": 512,
    "mc_n": 16_384,  # Monte-Carlo triples of kinetic_energy_mc
    "mc_seed": 2,
    # 2-D training: the named configs as they are, but for these.
    "steps": 20_000,  # the configs' default
    "log_every": 1_000,
    "euler_steps": (1, 2, 4, 8, 16, 32, 64, 128),
    "reference_solver": "dopri5",
    "rtol": 1e-5,  # dopri5's rtol and atol (the configs' sample defaults)
    "n_samples": 2_000,  # samples per solve, and held-out target points
    "eval_seed": 10_000,  # the evaluation points: the same for every seed and schedule
    "tolerance": 1.1,  # W2 within 1.1x of a dopri5 value
    "endpoint_tolerance": 0.02,  # mean |Euler - dopri5| / RMS |x1| of the test set
    # Digits.
    "digits_steps": 5_000,
    "digits_overrides": (),
}

# `--quick`: the whole pipeline in about a minute (numbers meaningless, shapes right).
QUICK: dict[str, Any] = {
    "energy_points": 500,
    "grid": 16,
    "n_queries": 128,
    "quadrature_nodes": 64,
    "mc_n": 512,
    "steps": 200,
    "log_every": 100,
    "n_samples": 256,
    "rtol": 1e-3,
    "digits_steps": 20,
    "digits_overrides": (
        "data.n_test=16",
        "sample.n_likelihood=16",
        "sample.rtol=1e-3",
        "sample.atol=1e-3",
        "model.width=8",
    ),
    "energy_tasks": ("moons", "digits"),
    "train_tasks": ("moons",),
    "schedules": ("cond_ot", "kinetic_optimal"),
    "seeds": (0,),
}


def settings(quick: bool = False) -> dict[str, Any]:
    """The protocol, with the quick overrides (minus the task lists) if asked."""
    p = dict(PROTOCOL)
    if quick:
        p.update({k: v for k, v in QUICK.items() if k not in _LISTS})
    p["euler_steps"] = list(p["euler_steps"])
    p["digits_overrides"] = list(p["digits_overrides"])
    return p


_LISTS = ("energy_tasks", "train_tasks", "schedules", "seeds")
