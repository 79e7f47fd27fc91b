"""Does testing the best checkpoint, or shuffling epochs, change [SF]²M Table 2's W2?

torchcfm's experiment runner validates every 10 epochs and tests its best
checkpoint, and draws minibatches by shuffling each epoch; `table2.py`
tests the last checkpoint and draws minibatches with replacement. This script
trains one (task, method, seed) of that protocol, 100 calls of 195 steps (10
epochs each), and after each call measures W2 between 2,000 samples and 2,000
held-out validation points. At the end it reports the test W2 (10,000 samples
against the 10,000 test points of `table2.py`) of the last checkpoint and of
the checkpoint with the lowest validation W2. Every W2 is
`flowlab.metrics.wasserstein2`.

    python -m reproductions.sf2m_table2.checkpoints normal_moons icfm 0 [--shuffle]
        [--out reproductions/sf2m_table2/results/checkpoints]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from flowlab import metrics
from flowlab.run import write_atomic
from flowlab.training import init_state, make_optimizer, make_train_step

from . import table2

CALLS, STEPS = 100, 195  # 100 validations, every 10 epochs of 10,000 / 512
N_VAL = 2_000


def _shuffled(points: np.ndarray, rng: np.random.Generator, batch: int) -> jax.Array:
    """`STEPS` batches of whole shuffled epochs (the last partial batch dropped)."""
    per_epoch = len(points) // batch
    epochs = -(-STEPS // per_epoch)
    order = np.concatenate(
        [rng.permutation(len(points))[: per_epoch * batch] for _ in range(epochs)]
    )[: STEPS * batch]
    return jnp.asarray(points[order].reshape(STEPS, batch, -1))


def run(task: str, method: str, seed: int, shuffle: bool) -> dict:
    """Train, validating every `STEPS` steps; test the last and the best checkpoint."""
    setup = table2.training_setup(task, method, seed)
    p = table2.PROTOCOL
    optimizer, _ = make_optimizer(
        p["optimizer"],
        p["lr"],
        weight_decay=p["weight_decay"],
        schedule=p["lr_schedule"],
        total_steps=CALLS * STEPS,
    )
    batch = table2.PROTOCOL["batch_size"]
    step = jax.jit(
        make_train_step(
            table2._MODEL_FN,
            setup.loss,
            optimizer,
            source=setup.train_source,
            batch_size=batch,
            coupling=setup.coupling,
            ema_decay=0.0,
            steps_per_call=STEPS,
            on_nonfinite=table2.SKIP_NONFINITE,
        ),
        donate_argnums=0,
    )
    state = init_state(setup.keys["train"], setup.params, optimizer)
    k_src, k_val = jax.random.split(jax.random.fold_in(setup.keys["test"], 1))
    source, target = setup.source, setup.target
    val_x0, val_x1 = source.sample(k_src, N_VAL), target.sample(k_val, N_VAL)
    rng = np.random.default_rng(seed)
    host_points = np.asarray(setup.train_target.points)
    curve, best = [], (np.inf, 0, None)
    t0 = time.perf_counter()
    for _ in range(CALLS):
        batches = _shuffled(host_points, rng, batch) if shuffle else setup.train_target
        state, _ = step(state, batches)
        x1, _ = metrics.path_energy(
            table2._velocity, val_x0, state.params, solver="euler", steps=100
        )
        w2 = metrics.wasserstein2(x1, val_x1)
        curve.append([int(state.step), w2])
        if w2 < best[0]:
            best = (
                w2,
                int(state.step),
                jax.tree_util.tree_map(np.asarray, state.params),
            )
    seconds = time.perf_counter() - t0
    x0 = source.sample(setup.keys["eval_source"], table2.PROTOCOL["n_eval"])
    test = target.sample(setup.keys["test"], table2.PROTOCOL["n_eval"])
    tested = {}
    for name, p in (("last", state.params), ("best_validation", best[2])):
        x1, _ = metrics.path_energy(table2._velocity, x0, p, solver="euler", steps=100)
        tested[name] = metrics.wasserstein2(x1, test)
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "minibatches": "shuffled epochs" if shuffle else "with replacement",
        "test_w2_last": tested["last"],
        "test_w2_best_validation": tested["best_validation"],
        "best_validation_w2": best[0],
        "best_step": best[1],
        "validation_curve": curve,
        "train_and_validation_seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=table2.TASKS)
    parser.add_argument("method", choices=table2.METHODS)
    parser.add_argument("seed", type=int)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=table2.HERE / "results" / "checkpoints"
    )
    args = parser.parse_args(argv)
    r = run(args.task, args.method, args.seed, args.shuffle)
    name = f"{args.task}__{args.method}__seed{args.seed}"
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "__shuffled" if args.shuffle else ""
    write_atomic(args.out / f"{name}{suffix}.json", json.dumps(r, indent=1) + "\n")
    print(json.dumps({k: v for k, v in r.items() if k != "validation_curve"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
