"""A run from a config: build its parts, train into a run directory, sample, evaluate.

This is the library side of `flowlab train | sample | eval`; the CLI only parses
arguments and prints. A run directory holds `config.toml` (the resolved config),
`metrics.jsonl`, `checkpoints/` (orbax), `samples.png` and `summary.json`.
"""

import dataclasses
import inspect
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import couplings, data, losses, metrics, models, paths, schedules
from .config import (
    ConfigError,
    CouplingArgsConfig,
    TrainConfig,
    dump_toml,
    load_config,
    to_dict,
)
from .sampling import ODE_SOLVERS, sample_ode
from .training import (
    Checkpointer,
    TrainState,
    fit,
    init_state,
    make_mesh,
    make_optimizer,
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

PRECISIONS = {"fp32": None, "bf16": jnp.bfloat16}

_SCHEDULE_PARAMS = {
    "lipman_ot": ("sigma_min",),
    "ve": ("sigma_min", "sigma_max"),
    "vp": ("beta_min", "beta_max"),
    "polynomial": ("n",),
}


class Experiment(NamedTuple):
    """Everything a run is made of, built (and validated) from a `TrainConfig`."""

    config: TrainConfig
    source: data.AbstractSampler
    target: data.AbstractSampler
    loss: losses.FlowMatchingLoss
    model_fn: Any
    params: Any
    optimizer: Any
    lr_fn: Any
    coupling: Any


def _check_values(config: TrainConfig) -> None:
    for key in (
        "steps",
        "batch_size",
        "steps_per_call",
        "log_every",
        "checkpoint_every",
    ):
        value = getattr(config, key)
        if value < 1:
            raise ConfigError(f"config key {key!r} must be >= 1, got {value}.")
    if config.data.n_train < 0 or config.data.n_test < 2:
        raise ConfigError("data.n_train must be >= 0 and data.n_test >= 2.")
    if config.sample.n < 1:
        raise ConfigError(f"sample.n must be >= 1, got {config.sample.n}.")
    if config.precision not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {sorted(PRECISIONS)}, got {config.precision!r}."
        )
    if config.on_nonfinite not in ("stop", "skip"):
        raise ConfigError(
            f"on_nonfinite must be 'stop' or 'skip', got {config.on_nonfinite!r}."
        )
    if config.micro_batches < 1 or config.keep_checkpoints < 1:
        raise ConfigError("micro_batches and keep_checkpoints must be >= 1.")
    if config.devices is not None and config.devices < 1:
        raise ConfigError(f"devices must be >= 1, got {config.devices}.")
    if config.sample.solver not in ODE_SOLVERS:
        raise ConfigError(
            f"sample.solver {config.sample.solver!r} is not one of "
            f"{sorted(ODE_SOLVERS)}."
        )


def _named(key: str, fn, *args, **kwargs):
    """Call `fn`, reporting its ValueError/TypeError as a ConfigError on `key`."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {err}") from err


def _coupling_arg_names(name: str) -> list[str] | None:
    """The `coupling_args` keys the factory of coupling `name` takes, if known."""
    factory = getattr(couplings, name, None)
    if not callable(factory):
        return None
    params = inspect.signature(factory).parameters
    return [f.name for f in dataclasses.fields(CouplingArgsConfig) if f.name in params]


def _coupling(config: TrainConfig):
    """`couplings.get(coupling, **coupling_args)`; errors name the config key."""
    name = config.coupling
    args = {k: v for k, v in to_dict(config.coupling_args).items() if v is not None}
    _named("coupling", couplings.get, name)  # an unknown name
    for key, value in args.items():
        try:
            couplings.get(name, **{key: value})
        except TypeError as err:
            known = _coupling_arg_names(name)
            if known is None:
                hint = ""
            elif known:
                hint = f"; it takes {', '.join(known)}"
            else:
                hint = "; it takes no coupling_args"
            raise ConfigError(
                f"coupling_args.{key}: coupling {name!r} has no argument {key!r}{hint}."
            ) from err
        except ValueError as err:
            raise ConfigError(f"coupling_args.{key}: {err}") from err
    return _named("coupling_args", couplings.get, name, **args)


def build(config: TrainConfig) -> Experiment:
    """Build and validate every part of a run (no files are touched)."""
    _check_values(config)
    target = _named("data.target", data.get, config.data.target)
    source_kwargs = (
        {"dim": target.event_shape[0]} if config.data.source == "gaussian" else {}
    )
    source = _named("data.source", data.get, config.data.source, **source_kwargs)
    if source.event_shape != target.event_shape:
        raise ConfigError(
            f"data.source draws shape {source.event_shape} but data.target "
            f"{target.event_shape}."
        )
    p = config.path
    params = {k: getattr(p, k) for k in _SCHEDULE_PARAMS.get(p.schedule, ())}
    schedule = _named("path.schedule", schedules.get, p.schedule, **params)
    sampler = _named("time_sampler", losses.get_time_sampler, config.time_sampler)
    loss = _named(
        "prediction",
        losses.FlowMatchingLoss,
        paths.AffinePath(schedule),
        prediction=config.prediction,
        time_sampler=sampler,
    )
    m = config.model
    module = models.MLP(m.width, m.depth, m.activation, m.time_embedding, m.time_dim)
    init_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    example = jnp.zeros(target.event_shape)
    model_fn, params_ = _named("model", models.init_model, module, init_key, example)
    o = config.optim
    optimizer, lr_fn = _named(
        "optim",
        make_optimizer,
        o.name,
        o.lr,
        weight_decay=o.weight_decay,
        schedule=o.schedule,
        total_steps=config.steps,
        warmup_steps=o.warmup_steps,
        grad_clip=o.grad_clip,
    )
    coupling = _coupling(config)
    return Experiment(
        config, source, target, loss, model_fn, params_, optimizer, lr_fn, coupling
    )


def _keys(config: TrainConfig):
    root = jax.random.key(config.seed)
    names = ("train", "data", "test", "sample")
    return dict(zip(names, jax.random.split(root, len(names)), strict=True))


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
    keys = _keys(exp.config)
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

    keys = _keys(exp.config)
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
    like = init_state(_keys(exp.config)["train"], exp.params, exp.optimizer)
    return put_global(like, state_sharding(like, mesh, exp.config.shard_params))


def _fit(exp: Experiment, out: Path, state, mesh, progress: bool):
    config = exp.config
    keys = _keys(config)
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
        compute_dtype=PRECISIONS[config.precision],
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
        like = init_state(_keys(config)["train"], exp.params, exp.optimizer)
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
    if solver is not None and solver not in ODE_SOLVERS:
        raise ConfigError(f"--solver {solver!r} is not one of {sorted(ODE_SOLVERS)}.")
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
