"""[SF]²M Table 2 with torchcfm's own code, on exactly the data `table2.py` uses.

Where flowlab misses a published Table 2 value, is it flowlab or the protocol? This
script trains one (task, method, seed) of `table2.py`'s protocol with
torchcfm's classes instead of flowlab's:

- data: the same arrays as flowlab's run of that (task, seed) (its training points,
  evaluation source points and test points, from `table2.training_setup`);
  a Gaussian source is drawn fresh each step with `torch.randn`, target (and data
  source) minibatches are drawn with replacement, as in `table2.py`;
- method: `ConditionalFlowMatcher(sigma=0.1)` (I-CFM) or
  `ExactOptimalTransportConditionalFlowMatcher(sigma=0.1)` (OT-CFM: POT's exact
  plan, pairs then drawn from the plan with replacement, torchcfm's way);
- model and optimiser: `torchcfm.models.MLP(2, w=64, time_varying=True)` (3×64
  SELU), `torch.optim.AdamW(lr=1e-3, weight_decay=1e-5)`, batch 512, 19,532 steps;
- evaluation: 100 Euler steps from the evaluation source points with the kinetic
  energy summed along them, W2 to the test points and NPE computed by
  `flowlab.metrics.wasserstein2` and `flowlab.metrics.normalized_path_energy`, as
  there.

torch runs with one thread; results go to one JSON per (task, method, seed).

    python -m reproductions.sf2m_table2.torchcfm_peer TASK METHOD SEED [--steps N]
        [--out DIR]
    python -m reproductions.sf2m_table2.torchcfm_peer --table  # = table2 --table

Needs the benchmark peers (`bash benchmarks/install_peers.sh`).
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _common as common
from flowlab import metrics
from flowlab.run import write_atomic

from . import table2
from .report import build_torchcfm_table as build_table
from .report import write_tables

__all__ = ["DEFAULT_OUT", "MATCHERS", "build_table", "main", "run"]

DEFAULT_OUT = table2.HERE / "results" / "torchcfm"
MATCHERS = {
    "icfm": "ConditionalFlowMatcher",
    "otcfm": "ExactOptimalTransportConditionalFlowMatcher",
}


def _arrays(task: str, seed: int, n_eval: int) -> dict[str, np.ndarray | None]:
    """flowlab's arrays of this (task, seed): training, evaluation and test points."""
    setup = table2.training_setup(task, "icfm", seed)  # the data ignore the method
    keys = setup.keys
    gaussian = table2.TASKS[task].source == "gaussian"
    return {
        "train_target": np.asarray(setup.train_target.points),
        "train_source": None if gaussian else np.asarray(setup.train_source.points),
        "eval_source": np.asarray(setup.source.sample(keys["eval_source"], n_eval)),
        "test": np.asarray(setup.target.sample(keys["test"], n_eval)),
    }


def _euler_energy(torch, model, x0, steps: int):
    """Euler samples from `x0` and the mean of $\\sum_k \\|v(t_k, x_k)\\|^2 dt$."""
    dt = 1.0 / steps
    x = x0.clone()
    energy = torch.zeros(x.shape[0], dtype=x.dtype)
    with torch.no_grad():
        for k in range(steps):
            t = torch.full((x.shape[0], 1), k * dt, dtype=x.dtype)
            v = model(torch.cat([x, t], dim=-1))
            energy += (v**2).sum(-1) * dt
            x = x + v * dt
    return x, float(energy.mean())


def run(
    task: str,
    method: str,
    seed: int,
    *,
    steps: int = table2.PROTOCOL["steps"],
    n_eval: int = table2.PROTOCOL["n_eval"],
) -> dict[str, Any]:
    """Train and evaluate one (task, method, seed) with torchcfm; return the record."""
    if method not in MATCHERS:
        raise ValueError(f"method must be one of {sorted(MATCHERS)}, got {method!r}.")
    if task not in table2.TASKS:
        raise ValueError(f"task must be one of {sorted(table2.TASKS)}, got {task!r}.")
    if steps < 1 or n_eval < 2:
        raise ValueError(f"steps must be >= 1 and n_eval >= 2, got {steps}, {n_eval}.")
    import torch
    import torchcfm
    from torchcfm import conditional_flow_matching as cfm
    from torchcfm.models import MLP

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)  # torchcfm draws OT pairs from the plan with numpy
    p = table2.PROTOCOL
    arrays = _arrays(task, seed, n_eval)

    def tensor(a):  # float32, as flowlab trains (the arrays are float64 under x64)
        return torch.tensor(np.asarray(a, np.float32))

    target = tensor(arrays["train_target"])
    source = arrays["train_source"]
    source = None if source is None else tensor(source)
    batch = p["batch_size"]
    matcher = getattr(cfm, MATCHERS[method])(sigma=table2.METHODS[method].sigma)
    model = MLP(dim=2, w=p["width"], time_varying=True)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"]
    )
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        x1 = target[torch.randint(len(target), (batch,))]
        x0 = (
            torch.randn(batch, 2)
            if source is None
            else source[torch.randint(len(source), (batch,))]
        )
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        vt = model(torch.cat([xt, t[:, None]], dim=-1))
        loss = ((vt - ut) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 1000 == 0 or step == steps - 1:
            losses.append([step + 1, loss.item()])
    train_seconds = time.perf_counter() - t0
    x0 = tensor(arrays["eval_source"])
    x1, energy = _euler_energy(torch, model, x0, p["solver_steps"])
    w2 = metrics.wasserstein2(x1.numpy(), arrays["test"])
    reference = metrics.wasserstein2(arrays["eval_source"], arrays["test"])
    own = metrics.wasserstein2(arrays["eval_source"], x1.numpy())
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "w2": w2,
        "npe": metrics.normalized_path_energy(energy, reference),
        "path_energy": energy,
        "w2_source_target": reference,
        "w2_source_samples": own,
        "npe_own_endpoints": metrics.normalized_path_energy(energy, own),
        "w2_backend": table2.W2_BACKEND,
        "loss_curve": losses,
        "train_seconds": train_seconds,
        "steps": steps,
        "n_eval": n_eval,
        "matcher": MATCHERS[method],
        "protocol": p,
        "versions": {"torch": torch.__version__, "torchcfm": torchcfm.__version__},
        "machine": common.machine_info(torch),
    }


def main(argv=None) -> int:
    """Run one (task, method, seed) and write its JSON, or rebuild the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", nargs="?", choices=table2.TASKS)
    parser.add_argument("method", nargs="?", choices=MATCHERS)
    parser.add_argument("seed", nargs="?", type=int)
    parser.add_argument("--steps", type=int, default=table2.PROTOCOL["steps"])
    parser.add_argument("--n-eval", type=int, default=table2.PROTOCOL["n_eval"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--table", action="store_true", help="only rebuild the tables from the records"
    )
    args = parser.parse_args(argv)
    if args.table:
        print(write_tables()["torchcfm"])
        return 0
    if args.task is None or args.method is None or args.seed is None:
        parser.error("TASK, METHOD and SEED are required (or --table)")
    if args.steps < 1 or args.n_eval < 2:
        parser.error("--steps must be >= 1 and --n-eval >= 2")
    r = run(args.task, args.method, args.seed, steps=args.steps, n_eval=args.n_eval)
    path = table2.result_path(args.out, args.task, args.method, args.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(r, indent=1) + "\n")
    print(json.dumps({k: r[k] for k in ("task", "method", "seed", "w2", "npe")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
