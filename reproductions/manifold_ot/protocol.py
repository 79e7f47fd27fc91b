"""The manifold OT study's protocol: tasks, methods, settings, the quick variant.

Shared by `study.py` (training and evaluation), `report.py` (the tables) and
`run.py` (the command line).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from flowlab import couplings, data, manifolds

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"  # the tables' home, between markers


class Task(NamedTuple):
    """A transport from the uniform distribution of `manifold` to `target`."""

    label: str  # as the tables print it
    manifold_fn: Callable[[], manifolds.AbstractManifold]
    target_fn: Callable[[], Any]  # a `flowlab.data` sampler with an exact log_prob
    seeds: tuple[int, ...]


TASKS = {
    "sphere": Task("S² vmf_mixture", lambda: manifolds.Sphere(2), data.vmf_mixture,
                   (0, 1, 2)),
    "torus": Task("T² torus_mixture", lambda: manifolds.FlatTorus(2),
                  data.torus_mixture, (0,)),
    "so3": Task("SO(3) so3_mixture", manifolds.SO3, data.so3_mixture, (0,)),
}  # fmt: skip

METHODS = {
    # name: (label, coupling factory of the manifold; None = independent pairs)
    "independent": ("independent", None),
    "ot": ("exact OT", lambda m: couplings.exact_ot(manifold=m)),
}

PROTOCOL: dict[str, Any] = {
    "steps": 5_000,
    "batch_size": 256,
    "lr": 2e-3,  # optax.adam(optax.cosine_decay_schedule(lr, steps))
    "ema_decay": 0.999,  # fit's default; the EMA parameters are evaluated
    "steps_per_call": 10,  # fit's default
    "log_every": 250,
    "width": 128,
    "depth": 3,
    "time_embedding": "sinusoidal",
    "euler_steps": (1, 2, 4, 8, 16, 32, 64),
    "reference_solver": "dopri5",
    "rtol": 1e-5,  # dopri5's and the likelihood solve's tolerances (both rtol, atol)
    "n_samples": 2_000,  # samples per k, and held-out target points to compare them to
    "n_nll": 256,  # test points scored by log_likelihood
    "nll_solver": "tsit5",  # adaptive, exact Riemannian divergence
    "nll_steps": None,  # None: adaptive steps
    "mmd_bandwidths": (0.1, 0.5, 1.0, 2.0, 5.0),  # flowlab.metrics.mmd's defaults
    "tolerance": 1.1,  # W2 within 1.1x of the method's own dopri5 value
    "mmd_null_permutations": 8,  # splits of two target samples: MMD²'s noise
    "mmd_sigmas": 2.0,  # MMD² within 2 null standard deviations of dopri5's
    "endpoint_tolerance": 0.05,  # radians: mean geodesic distance to dopri5's end
    "pair_batches": 20,  # minibatches for the mean squared pair distance
    "coupling_reps": 20,  # timed calls of the jitted coupling
    "eval_seed": 10_000,  # the evaluation points: the same for every seed and method
}

# `--quick`: the whole pipeline on S² in seconds (numbers meaningless, shapes right).
QUICK: dict[str, Any] = {
    "steps": 200,
    "log_every": 100,
    "n_samples": 256,
    "n_nll": 16,
    "nll_solver": "rk4",
    "nll_steps": 4,
    "rtol": 1e-3,
    "pair_batches": 2,
    "mmd_null_permutations": 2,
    "coupling_reps": 2,
    "tasks": ("sphere",),
    "seeds": (0,),
}


def settings(quick: bool = False) -> dict[str, Any]:
    """The protocol, with the quick overrides (minus task and seed lists) if asked."""
    p = dict(PROTOCOL)
    if quick:
        p.update({k: v for k, v in QUICK.items() if k not in ("tasks", "seeds")})
    p["euler_steps"] = list(p["euler_steps"])
    p["mmd_bandwidths"] = list(p["mmd_bandwidths"])
    return p
