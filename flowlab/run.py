"""A run from a config: build its parts, train into a run directory, sample, evaluate.

This is the library side of `flowlab train | sample | eval`; the CLI only parses
arguments and prints, and `flowlab.experiment` turns the config into objects. A
run directory holds `config.toml` (the resolved config), `metrics.jsonl`,
`checkpoints/` (orbax), `samples.png` and `summary.json`.
"""

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import data, metrics, registry
from .config import ConfigError, TrainConfig, dump_toml, load_config, to_dict
from .experiment import Experiment, build, run_keys
from .sampling import sample_ode
from .training import (
    Checkpointer,
    TrainState,
    fit,
    init_state,
    make_mesh,
    put_global,
    state_sharding,
    to_local,
)

__all__ = [
    "Experiment",
    "build",
    "evaluate_run",
    "load_run",
    "resume_run",
    "sample_run",
    "train_run",
    "write_atomic",
]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _velocity(exp: Experiment):
    def v(t, x, params):
        return exp.model_fn(params, t, x, None)

    return v


def _draw(
    exp: Experiment, params, key, n: int, solver=None, steps=None, trajectory=False
):
    s = exp.config.sample
    x0 = exp.source.sample(key, n)
    return sample_ode(
        _velocity(exp),
        x0,
        params,
        solver=solver or s.solver,
        steps=steps if steps is not None else s.steps,
        rtol=s.rtol,
        atol=s.atol,
        save_trajectory=trajectory,
    )


def _evaluate(exp: Experiment, params) -> dict[str, float]:
    keys = run_keys(exp.config)
    test = exp.target.sample(keys["test"], exp.config.data.n_test)
    n = exp.config.data.n_test
    t0 = time.perf_counter()
    out = _draw(exp, params, keys["sample"], n)
    jax.block_until_ready(out.x)
    sample_time = time.perf_counter() - t0
    return {
        "w2": metrics.wasserstein2(out.x, test),
        "mmd": float(metrics.mmd(out.x, test)),
        "nfe": int(out.nfe),
        "solver": exp.config.sample.solver,
        "n_eval": n,
        "sample_seconds": sample_time,
    }


def _plot(exp: Experiment, params, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = run_keys(exp.config)
    n = min(exp.config.data.n_test, 2000)
    test = np.asarray(exp.target.sample(keys["test"], n))
    out = _draw(exp, params, keys["sample"], n, trajectory=41)
    x, traj = np.asarray(out.x), np.asarray(out.trajectory)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    axes[0].scatter(test[:, 0], test[:, 1], s=2, alpha=0.5, color="tab:blue")
    axes[0].set_title(f"data: {exp.config.data.target}")
    axes[1].scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, color="tab:orange")
    for i in range(min(24, n)):
        axes[1].plot(traj[:, i, 0], traj[:, i, 1], lw=0.7, color="k", alpha=0.6)
    axes[1].scatter(traj[0, :24, 0], traj[0, :24, 1], s=8, color="k")
    axes[1].set_title(f"samples ({exp.config.sample.solver}) and trajectories")
    for ax in axes:
        ax.set_aspect("equal")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after `step` (a run resumed from that step)."""
    if not path.is_file():
        return
    keep = [x for x in path.read_text().splitlines() if json.loads(x)["step"] <= step]
    write_atomic(path, "".join(x + "\n" for x in keep))


def _restore_like(exp: Experiment, mesh) -> TrainState:
    like = init_state(run_keys(exp.config)["train"], exp.params, exp.optimizer)
    return put_global(like, state_sharding(like, mesh, exp.config.shard_params))


def _fit(exp: Experiment, out: Path, state, mesh, progress: bool):
    config = exp.config
    keys = run_keys(config)
    if config.data.n_train > 0:
        target = data.Empirical(exp.target.sample(keys["data"], config.data.n_train))
    else:
        target = exp.target
    return fit(
        exp.model_fn,
        exp.params,
        exp.loss,
        source=exp.source,
        target=target,
        key=keys["train"],
        steps=config.steps,
        batch_size=config.batch_size,
        optimizer=exp.optimizer,
        lr_fn=exp.lr_fn,
        coupling=exp.coupling,
        global_coupling=config.global_coupling,
        ema_decay=config.ema_decay,
        steps_per_call=config.steps_per_call,
        micro_batches=config.micro_batches,
        compute_dtype=registry.build("precision", config.precision),
        on_nonfinite=config.on_nonfinite,
        mesh=mesh,
        shard_params=config.shard_params,
        log_every=config.log_every,
        out_dir=out,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
        best_metric=config.best_metric,
        checkpoint_meta={"config": to_dict(config)},
        state=state,
        tensorboard=config.tensorboard,
        progress=progress,
    )


def _finish(exp: Experiment, out: Path, result, wall0: float) -> dict[str, Any]:
    config = exp.config
    train_seconds = time.perf_counter() - wall0
    params = to_local(result.state.ema_params)
    summary = {
        "name": config.name,
        "steps": config.steps,
        "devices": int(
            jax.device_count() if config.devices is None else config.devices
        ),
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "skipped_steps": int(sum(r["skipped_steps"] for r in result.history)),
        "steps_per_sec": result.history[-1]["steps_per_sec"]
        if result.history
        else None,
        "train_seconds": train_seconds,
        **_evaluate(exp, params),
    }
    if jax.process_index() == 0:
        _plot(exp, params, out / "samples.png")
        summary["wall_seconds"] = time.perf_counter() - wall0
        write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def train_run(
    config: TrainConfig, out_dir: str | os.PathLike, *, progress: bool = True
) -> dict[str, Any]:
    """Train the run `config` into `out_dir` and return its summary.

    Everything is validated before `out_dir` is created. If training fails before
    its first checkpoint the directory is removed; after that it stays a valid,
    resumable run (config, metrics, checkpoints) without `summary.json`.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"--out {str(out)!r} exists and is not empty; choose a new directory "
            "or continue it with --resume."
        )
    exp = build(config)
    mesh = _mesh(config)
    wall0 = time.perf_counter()
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "config.toml", dump_toml(config))
    try:
        result = _fit(exp, out, None, mesh, progress)
    except BaseException:
        ckpts = out / "checkpoints"
        if jax.process_index() == 0 and not (ckpts.is_dir() and any(ckpts.iterdir())):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return _finish(exp, out, result, wall0)


def resume_run(
    run_dir: str | os.PathLike,
    overrides: list[str] = (),
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Continue a run from its newest readable checkpoint and return its summary.

    `overrides` may change runtime fields (e.g. `steps=...`, `devices=1`); the
    checkpoint is resharded onto the current mesh. Metric lines logged after the
    restored step are dropped, so `metrics.jsonl` reads as one run.
    """
    out = Path(run_dir)
    if not (out / "config.toml").is_file():
        raise ConfigError(f"{str(out)!r} is not a run directory (no config.toml).")
    config = load_config(out / "config.toml", list(overrides))
    exp = build(config)
    mesh = _mesh(config)
    ckpt = Checkpointer(out / "checkpoints", keep=None)
    try:
        if ckpt.latest_step() is None:
            raise ConfigError(f"{str(out)!r} has no complete checkpoint to resume.")
        restored = ckpt.restore(_restore_like(exp, mesh))
    finally:
        ckpt.close()
    if jax.process_index() == 0:
        _truncate_metrics(out / "metrics.jsonl", restored.step)
        if overrides:
            write_atomic(out / "config.toml", dump_toml(config))
        (out / "summary.json").unlink(missing_ok=True)
    wall0 = time.perf_counter()
    result = _fit(exp, out, restored.state, mesh, progress)
    return _finish(exp, out, result, wall0)


def _mesh(config: TrainConfig):
    return make_mesh(config.devices)


def load_run(run_dir: str | os.PathLike) -> tuple[Experiment, TrainState]:
    """The experiment and newest readable checkpointed state of a run directory."""
    run = Path(run_dir)
    if not (run / "config.toml").is_file():
        raise ConfigError(f"{str(run)!r} is not a run directory (no config.toml).")
    config = load_config(run / "config.toml")
    exp = build(config)
    ckpt_dir = run / "checkpoints"
    if not ckpt_dir.is_dir():
        raise ConfigError(f"{str(run)!r} has no checkpoints/.")
    ckpt = Checkpointer(ckpt_dir, keep=None)
    try:
        if ckpt.latest_step() is None:
            raise ConfigError(f"{str(run)!r} has no complete checkpoint.")
        like = init_state(run_keys(config)["train"], exp.params, exp.optimizer)
        state = ckpt.restore(like).state
    finally:
        ckpt.close()
    return exp, state


def sample_run(
    run_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    solver: str | None = None,
    steps: int | None = None,
) -> np.ndarray:
    """`n` samples from the EMA parameters of a run's newest checkpoint.

    The same `seed` gives the same samples.
    """
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}.")
    if solver is not None and solver not in registry.table("ode_solver"):
        raise ConfigError(
            f"--solver {solver!r} is not one of {list(registry.names('ode_solver'))}."
        )
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}.")
    exp, state = load_run(run_dir)
    out = _draw(exp, state.ema_params, jax.random.key(seed), n, solver, steps)
    return np.asarray(out.x)


def evaluate_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Recompute the summary metrics of a run from its newest checkpoint."""
    exp, state = load_run(run_dir)
    result = {"step": int(state.step), **_evaluate(exp, state.ema_params)}
    return json.loads(json.dumps(result))
