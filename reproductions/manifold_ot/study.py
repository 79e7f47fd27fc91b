"""Train Riemannian flow matching with independent and exact-OT pairs, and score it.

One `run_cell(task, method, seed, settings, eval_set)` trains one model and returns
its record: training time and loss curve, then for Euler with k steps (k in
`euler_steps`) and for dopri5 the geodesic W2 and the MMD² of `n_samples` samples
to held-out target points, the mean geodesic distance of each Euler endpoint to
dopri5's from the same start, and the test NLL. `pair_statistics` measures the
coupled minibatches themselves (mean squared geodesic pair distance, coupling time).
"""

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowlab as fl
from flowlab import data, losses, metrics, models, paths, schedules

from .protocol import METHODS, TASKS


class EvalSet(NamedTuple):
    """The evaluation points of a task: the same for every seed and method."""

    x0: jax.Array  # uniform starting points, (n_samples, *shape)
    test: jax.Array  # held-out target points, (n_samples, *shape)
    test2: jax.Array  # a second held-out set: the finite-sample floor of the metrics
    nll: jax.Array  # target points scored by log_likelihood, (n_nll, *shape)


def _sync(tree):
    return jax.block_until_ready(tree)


def eval_set(task: str, p: dict[str, Any]) -> EvalSet:
    """The task's evaluation points, from `eval_seed` (independent of the seeds)."""
    t = TASKS[task]
    target, source = t.target_fn(), data.Uniform(t.manifold_fn())
    k = jax.random.split(jax.random.key(p["eval_seed"]), 4)
    n = p["n_samples"]
    return EvalSet(
        source.sample(k[0], n),
        target.sample(k[1], n),
        target.sample(k[2], n),
        target.sample(k[3], p["n_nll"]),
    )


def sq_dist_matrix(manifold, x, y) -> np.ndarray:
    """`d(x_i, y_j)^2`, the squared geodesic distances, as float64 on the host."""
    row = jax.jit(jax.vmap(lambda a, ys: jax.vmap(manifold.dist, (None, 0))(a, ys),
                           (0, None)))  # fmt: skip
    d = np.concatenate([np.asarray(row(x[i : i + 500], y)) for i in
                        range(0, len(x), 500)])  # fmt: skip
    return np.asarray(d, np.float64) ** 2


def geodesic_w2(manifold, x, y) -> tuple[float, str]:
    """Exact W2 for the geodesic cost between two equal-size sets (uniform weights).

    POT's network simplex (`ot.emd2`) where POT is installed, else scipy's exact
    assignment (the same number: with equal uniform weights an optimal plan is a
    permutation).
    """
    cost = sq_dist_matrix(manifold, x, y)
    try:
        import ot
    except ImportError:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        return float(np.sqrt(cost[rows, cols].mean())), "scipy"
    w = np.full(len(x), 1.0 / len(x))
    return float(np.sqrt(max(ot.emd2(w, w, cost, numItermax=10**7), 0.0))), "pot"


def mmd2(manifold, x, y, bandwidths) -> float:
    """Unbiased MMD² (`flowlab.metrics.mmd`) on the manifold's features.

    The ambient coordinates on S² and SO(3) (the 9 matrix entries), (cos, sin) of
    each angle on the torus.
    """
    f = jax.vmap(manifold.features)
    return float(metrics.mmd(f(x), f(y), bandwidths=tuple(bandwidths)))


def _setup(task: str, p: dict[str, Any]):
    t = TASKS[task]
    manifold = t.manifold_fn()
    path = paths.GeodesicPath(schedules.cond_ot(), manifold)
    net = models.MLP(
        width=p["width"], depth=p["depth"], time_embedding=p["time_embedding"]
    )
    return manifold, t.target_fn(), data.Uniform(manifold), path, net


def _coupling(method: str, manifold):
    factory = METHODS[method][1]
    return None if factory is None else factory(manifold)


def pair_statistics(task: str, p: dict[str, Any]) -> dict[str, Any]:
    """Mean squared geodesic distance of the pairs a training step sees, per method.

    `pair_batches` minibatches of `batch_size` (the same draws for both methods),
    and the median seconds of one jitted coupling call on such a batch.
    """
    manifold, target, source, _, _ = _setup(task, p)
    keys = jax.random.split(jax.random.key(p["eval_seed"] + 1), p["pair_batches"])
    sq = jax.jit(jax.vmap(lambda a, b: manifold.dist(a, b) ** 2))
    out = {}
    for method in METHODS:
        coupling = _coupling(method, manifold)
        fn = jax.jit(coupling) if coupling is not None else None
        means, seconds = [], []
        for key in keys:
            k0, k1, kc = jax.random.split(key, 3)
            x0 = source.sample(k0, p["batch_size"])
            x1 = target.sample(k1, p["batch_size"])
            if fn is not None:
                _sync(fn(kc, x0, x1))  # compiled on the first batch
                start = time.perf_counter()
                x0, x1 = _sync(fn(kc, x0, x1))
                seconds.append(time.perf_counter() - start)
            means.append(float(jnp.mean(sq(x0, x1))))
        if fn is not None:
            x0, x1 = (
                source.sample(keys[0], p["batch_size"]),
                target.sample(keys[-1], p["batch_size"]),
            )
            for _ in range(p["coupling_reps"]):
                start = time.perf_counter()
                _sync(fn(keys[0], x0, x1))
                seconds.append(time.perf_counter() - start)
        out[method] = {
            "mean_sq_pair_distance": float(np.mean(means)),
            "per_batch": means,
            "coupling_seconds_per_call": float(np.median(seconds)) if seconds else 0.0,
        }
    return out


def mmd2_null(manifold, x, y, bandwidths, permutations: int, key) -> list[float]:
    """MMD² between random halves of two samples of one distribution: its noise."""
    pooled = jnp.concatenate([x, y])
    values = []
    for k in jax.random.split(key, permutations):
        z = jax.random.permutation(k, pooled)
        values.append(mmd2(manifold, z[: len(x)], z[len(x) :], bandwidths))
    return values


def reference_metrics(task: str, ev: EvalSet, p: dict[str, Any]) -> dict[str, Any]:
    """The metrics' bounds: two target samples (the floor), source vs target.

    And the noise of MMD² at `n_samples` points: its standard deviation over
    `mmd_null_permutations` random splits of the two target samples pooled.
    """
    manifold, target, _, _, _ = _setup(task, p)
    bw = p["mmd_bandwidths"]
    w2_floor, backend = geodesic_w2(manifold, ev.test2, ev.test)
    null = mmd2_null(manifold, ev.test, ev.test2, bw, p["mmd_null_permutations"],
                     jax.random.key(p["eval_seed"] + 2))  # fmt: skip
    return {
        "w2_target_target": w2_floor,
        "w2_source_target": geodesic_w2(manifold, ev.x0, ev.test)[0],
        "mmd2_target_target": mmd2(manifold, ev.test2, ev.test, bw),
        "mmd2_source_target": mmd2(manifold, ev.x0, ev.test, bw),
        "mmd2_null": null,
        "mmd2_null_std": float(np.std(null, ddof=1)),
        "target_cross_entropy": -float(jnp.mean(jax.vmap(target.log_prob)(ev.nll))),
        "target_cross_entropy_test": -float(
            jnp.mean(jax.vmap(target.log_prob)(ev.test))
        ),
        "w2_backend": backend,
    }


_MODEL_FNS: dict[tuple[str, str], Any] = {}


def train(task: str, method: str, seed: int, p: dict[str, Any]):
    """One model: `(model_fn, ema_params, record)`.

    The seed gives the initialisation and the training key; both methods of a seed
    share them (the comparison is paired).
    """
    manifold, target, source, path, net = _setup(task, p)
    k_init, k_train = jax.random.split(jax.random.key(seed))
    model_fn, params = models.init_tangent_model(
        net, manifold, k_init, manifold.origin()
    )
    # Every init returns a new closure (`models.apply_fn`), which the solves see as
    # a new static field: keep the first one of the task, so that every model's
    # sample_ode / log_likelihood reuses one compilation.
    model_fn = _MODEL_FNS.setdefault((task, repr(net)), model_fn)
    steps = p["steps"]
    start = time.perf_counter()
    result = fl.fit(
        model_fn,
        params,
        losses.FlowMatchingLoss(path),
        source=source,
        target=target,
        key=k_train,
        steps=steps,
        batch_size=p["batch_size"],
        optimizer=optax.adam(optax.cosine_decay_schedule(p["lr"], steps)),
        coupling=_coupling(method, manifold),
        ema_decay=p["ema_decay"],
        steps_per_call=p["steps_per_call"],
        log_every=p["log_every"],
        progress=False,
        handle_signals=False,
    )
    ema = _sync(result.state.ema_params)
    seconds = time.perf_counter() - start
    curve = [[int(h["step"]), float(h["loss"])] for h in result.history]
    record = {
        "train_seconds": seconds,
        "final_loss": curve[-1][1],
        "loss_curve": curve,
        "skipped_steps": int(result.history[-1].get("skipped_steps", 0)),
    }
    return model_fn, ema, record


def evaluate(task: str, model_fn, params, ev: EvalSet, p: dict[str, Any]):
    """The curves of one model: Euler at each k and dopri5, and the test NLL."""
    manifold = TASKS[task].manifold_fn()
    v, args = _v, (model_fn, params)
    bw = p["mmd_bandwidths"]
    start = time.perf_counter()
    ref = _sync(
        fl.sample_ode(v, ev.x0, args, manifold=manifold,
                      solver=p["reference_solver"], rtol=p["rtol"], atol=p["rtol"])
    )  # fmt: skip
    dist = jax.jit(jax.vmap(manifold.dist))
    rows = []
    for k in [*p["euler_steps"], None]:
        if k is None:
            out, name = ref, p["reference_solver"]
        else:
            out = fl.sample_ode(
                v, ev.x0, args, manifold=manifold, solver="euler", steps=k
            )
            name = "euler"
        x = _sync(out.x)
        rows.append(
            {
                "solver": name,
                "steps": k,
                "nfe": int(out.nfe),
                "w2": geodesic_w2(manifold, x, ev.test)[0],
                "mmd2": mmd2(manifold, x, ev.test, bw),
                "endpoint_error": float(jnp.mean(dist(x, ref.x))),
                "mean_sq_travel": float(jnp.mean(dist(ev.x0, x) ** 2)),
            }
        )
    sample_seconds = time.perf_counter() - start
    start = time.perf_counter()
    log_p = fl.log_likelihood(
        v, ev.nll, args, manifold=manifold, solver=p["nll_solver"],
        steps=p["nll_steps"], rtol=p["rtol"], atol=p["rtol"],
    ).log_prob  # fmt: skip
    nll = -float(jnp.mean(_sync(log_p)))
    return {
        "curve": rows,
        "nll": nll,
        "nll_finite": bool(jnp.all(jnp.isfinite(log_p))),
        "sample_eval_seconds": sample_seconds,
        "nll_seconds": time.perf_counter() - start,
    }


def _v(t, x, args):
    """The learned field, `args = (model_fn, params)`: one function for every model,
    so repeated solves reuse their compilation."""
    model_fn, params = args
    return model_fn(params, t, x, None)


def run_cell(task: str, method: str, seed: int, ev: EvalSet, p: dict[str, Any]):
    """Train and evaluate one (task, method, seed): its record."""
    model_fn, params, record = train(task, method, seed, p)
    return {"task": task, "method": method, "seed": seed, **record,
            **evaluate(task, model_fn, params, ev, p)}  # fmt: skip


def nfe_to_quality(curve, key: str, bound: float) -> int | None:
    """The fewest Euler steps k from which on every larger k has `key` <= `bound`.

    `None` (a miss) when even the largest k is above it.
    """
    euler = [r for r in curve if r["solver"] == "euler"]
    best = None
    for row in reversed(euler):
        if row[key] > bound:
            break
        best = row["steps"]
    return best
