"""A run from a config: build its parts, train into a run directory, sample, evaluate.

This is the library side of `flowlab train | sample | eval`; the CLI only parses
arguments and prints, and `flowlab.experiment` turns the config into objects. A
run directory holds `config.toml` (the resolved config), `metrics.jsonl`,
`checkpoints/` (orbax), `samples.png` and `summary.json`.

The functions take `log_fn`, called with each one-line report a user waits on or
must know about: the step a resumed run continues from, checkpoints that did not
read back and were quarantined (`flowlab.training.Checkpointer.restore`), and, with
`progress`, each phase of the final evaluation. The CLI prints them to stderr;
`None` (the default) reports nothing.
"""

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from . import _image_run, _manifold_run, data, metrics, registry
from .config import ConfigError, TrainConfig, dump_toml, load_config, to_dict
from .experiment import Experiment, build, run_keys, solver_kind
from .sampling import sample_ode
from .training import (
    Callback,
    CheckpointCorruptError,
    Checkpointer,
    Restored,
    TrainState,
    fit,
    init_state,
    make_mesh,
    make_schedule,
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
    r"""The velocity field of the run's model, whatever `config.prediction` it has.

    A model trained on `x1`, `x0`/`epsilon` or `score` is converted by the loss's
    path (`flowlab.sampling.velocity_field`); a flow map gives its instantaneous
    velocity, $\partial_s X(t, s, x)$ at $s = t$. A conditional run's model is
    evaluated on the null condition: its unconditional field.
    """
    from .sampling import velocity_field

    if exp.flow_map is not None:  # the map's s -> t limit
        return exp.flow_map.velocity_field()
    null = None if exp.condition is None else exp.condition.null(1)[0]

    def model(t, x, params):
        return exp.model_fn(params, t, x, null)

    return velocity_field(model, exp.loss.path, exp.loss.prediction)


def _draw(
    exp: Experiment, params, key, n: int, solver=None, steps=None, trajectory=False
):
    s = exp.config.sample
    x0 = exp.source.sample(key, n)
    if exp.flow_map is not None:  # jumps, one evaluation each
        from .flowmaps import sample_flow_map

        return sample_flow_map(
            exp.flow_map,
            params,
            x0,
            steps=_jumps(exp, steps),
            save_trajectory=bool(trajectory),
        )
    return sample_ode(
        _velocity(exp),
        x0,
        params,
        solver=solver or s.solver,
        steps=steps if steps is not None else s.steps,
        rtol=s.rtol,
        atol=s.atol,
        save_trajectory=trajectory,
        manifold=exp.manifold,
    )


LogFn = Callable[[str], None]


def _silent(line: str) -> None:
    del line


def _reporter(log_fn: LogFn | None) -> LogFn:
    """`log_fn` on process 0; `_silent` elsewhere and for `None`."""
    if log_fn is None or jax.process_index() != 0:
        return _silent
    return log_fn


def _solver_text(solver: str, steps: int | None) -> str:
    return f"{solver} (adaptive)" if steps is None else f"{solver}, {steps} steps"


def _jumps(exp: Experiment, steps: int | None) -> int:
    """A flow-map run's number of jumps: `steps`, else `sample.steps`, else 1."""
    if steps is not None:
        return steps
    return 1 if exp.config.sample.steps is None else exp.config.sample.steps


def _how(exp: Experiment, solver: str | None, steps: int | None) -> str:
    """How a run samples, for the log lines: the solver, or the flow map's jumps."""
    if exp.flow_map is not None:
        k = _jumps(exp, steps)
        return f"the flow map, {k} jump{'s' * (k != 1)}"
    s = exp.config.sample
    return _solver_text(solver or s.solver, steps if steps is not None else s.steps)


def _solver_name(exp: Experiment) -> str:
    """The summary's `solver`: the ODE solver, or `flow_map_<k>` for jumps."""
    if exp.flow_map is not None:
        return f"flow_map_{_jumps(exp, None)}"
    return exp.config.sample.solver


# The time of scipy's Jonker-Volgenant assignment (metrics.wasserstein2) grows
# as about n^2.5 on 2-D point sets: from n/4 to n points it grew 21x (moons
# samples, n = 2,000), 26x (n = 4,000) and 40x (Gaussians, n = 2,000), measured.
_W2_EXPONENT = 2.5


def _w2_seconds(x, y) -> float:
    """An estimate of `metrics.wasserstein2(x, y)`'s time from a quarter of it."""
    x, y = np.asarray(x), np.asarray(y)
    m = max(len(x) // 4, 2)
    t0 = time.perf_counter()
    metrics.wasserstein2(x[:m], y[:m])
    return (time.perf_counter() - t0) * (len(x) / m) ** _W2_EXPONENT


def _about(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 100:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"


def _evaluate(exp: Experiment, params, log_fn: LogFn | None = None) -> dict[str, Any]:
    report = _reporter(log_fn)
    keys = run_keys(exp.config)
    test = exp.target.held_out(keys["test"], exp.config.data.n_test)
    n = exp.config.data.n_test
    report(f"sampling {n:,} points with {_how(exp, None, None)} ...")
    t0 = time.perf_counter()
    out = _draw(exp, params, keys["sample"], n)
    jax.block_until_ready(out.x)
    sample_time = time.perf_counter() - t0
    if exp.manifold is not None:
        return _manifold_run.evaluate(
            exp, params, test, out, sample_time, _velocity(exp), report
        )
    if _image_run.is_image_run(exp):
        return _image_run.evaluate(
            exp, params, test, out, sample_time, _velocity(exp), report, keys["test"]
        )
    if report is not _silent:  # the estimate costs a few percent of W2's time
        about = _about(_w2_seconds(out.x, test))
        report(f"computing W2 and MMD on {n:,} x {n:,} points ({about}) ...")
    return {
        "w2": metrics.wasserstein2(out.x, test),
        "mmd2_unbiased": float(metrics.mmd(out.x, test)),
        "nfe": int(out.nfe),
        "solver": _solver_name(exp),
        "n_eval": n,
        "sample_seconds": sample_time,
    }


def _plot(exp: Experiment, params, path: Path, log_fn: LogFn | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = run_keys(exp.config)
    n = min(exp.config.data.n_test, 2000)
    _reporter(log_fn)(f"plotting {path.name}: {n:,} samples with trajectories ...")
    test = exp.target.held_out(keys["test"], n)[:n]
    if _image_run.is_image_run(exp):  # image grids, not a scatter
        tmp = path.with_name(f".{path.stem}.tmp.png")
        x = _draw(exp, params, keys["sample"], 64).x
        _image_run.plot(exp, test, x, tmp, f"samples ({_solver_name(exp)})")
        os.replace(tmp, path)
        if exp.condition is not None:  # a labelled set: guided samples
            grid = path.with_name("guided_grid.png")
            _image_run.plot_guided(exp, params, keys["sample"], tmp)
            os.replace(tmp, grid)
        return
    out = _draw(exp, params, keys["sample"], n, trajectory=41)
    if exp.manifold is not None:
        tmp = path.with_name(f".{path.stem}.tmp.png")
        title = f"samples ({exp.config.sample.solver}) and trajectories"
        _manifold_run.plot(exp, test, out, tmp, title)
        os.replace(tmp, path)
        return
    test = np.asarray(test)
    x, traj = np.asarray(out.x), np.asarray(out.trajectory)
    labelled = isinstance(exp.target, data.AbstractLabelledSampler)
    fig, axes = plt.subplots(
        1, 2 + labelled, figsize=(10 + 5 * labelled, 5), sharex=True, sharey=True
    )
    axes[0].scatter(test[:, 0], test[:, 1], s=2, alpha=0.5, color="tab:blue")
    axes[0].set_title(f"data: {exp.config.data.target}")
    axes[1].scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, color="tab:orange")
    for i in range(min(24, n)):
        axes[1].plot(traj[:, i, 0], traj[:, i, 1], lw=0.7, color="k", alpha=0.6)
    axes[1].scatter(traj[0, :24, 0], traj[0, :24, 1], s=8, color="k")
    axes[1].set_title(f"samples ({_solver_name(exp)}) and trajectories")
    if labelled:
        _plot_classes(exp, params, keys["sample"], n, axes[2])
    for ax in axes:
        ax.set_aspect("equal")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _plot_classes(exp: Experiment, params, key, n: int, ax) -> None:
    """Conditional samples ($w = 1$) of a labelled run, one colour per class."""
    from .sampling import guided_field

    v = guided_field(
        exp.model_fn,
        exp.condition,
        1.0,
        path=exp.loss.path,
        prediction=exp.loss.prediction,
    )
    labels = np.arange(n) % exp.target.num_classes
    s = exp.config.sample
    out = sample_ode(
        v,
        v.state(exp.source.sample(key, n), labels),
        params,
        solver=s.solver,
        steps=s.steps,
        rtol=s.rtol,
        atol=s.atol,
    )
    x = np.asarray(out.x[0])
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, c=labels, cmap="tab10")
    ax.set_title("conditional samples, coloured by class")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after `step` (a run resumed from that step)."""
    if not path.is_file():
        return
    keep = [x for x in path.read_text().splitlines() if json.loads(x)["step"] <= step]
    write_atomic(path, "".join(x + "\n" for x in keep))


def _restore_like(exp: Experiment, mesh) -> TrainState:
    like = init_state(run_keys(exp.config)["train"], exp.params, exp.optimizer)
    return put_global(like, state_sharding(like, mesh, exp.config.shard_params))


def _fit(exp: Experiment, out: Path, state, mesh, progress: bool, callbacks=()):
    config = exp.config
    keys = run_keys(config)
    if config.data.n_train > 0:
        x, cond = exp.target.sample_batch(keys["data"], config.data.n_train)
        if cond is None:
            target = data.Empirical(x)
        else:  # a labelled set keeps its labels
            target = data.LabelledEmpirical(x, cond, exp.target.num_classes)
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
        callbacks=callbacks,
        condition=exp.condition,
        cond_dropout=config.cond_dropout,
    )


def _finish(
    exp: Experiment, out: Path, result, wall0: float, log_fn: LogFn | None
) -> dict[str, Any]:
    """Evaluate and plot the final EMA parameters; write `summary.json`.

    `log_fn` (given only with `progress`) hears one line before each phase.
    """
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
        # The final state, which fit saved as the last checkpoint.
        "checkpoint_step": int(result.state.step),
        **_evaluate(exp, params, log_fn),
    }
    if jax.process_index() == 0:
        _plot(exp, params, out / "samples.png", log_fn)
        summary["wall_seconds"] = time.perf_counter() - wall0
        write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def train_run(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    log_fn: LogFn | None = None,
) -> dict[str, Any]:
    """Train the run `config` into `out_dir` and return its summary.

    `callbacks` are passed to `fit` after the run's own (`flowlab.training`).

    Everything is validated before `out_dir` is created. If training fails before
    its first checkpoint the directory is removed; after that it stays a valid,
    resumable run (config, metrics, checkpoints) without `summary.json`. With
    `progress`, a progress bar runs during training and `log_fn` hears a line
    before each phase of the final evaluation.
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
        result = _fit(exp, out, None, mesh, progress, callbacks)
    except BaseException:
        ckpts = out / "checkpoints"
        if jax.process_index() == 0 and not (ckpts.is_dir() and any(ckpts.iterdir())):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return _finish(exp, out, result, wall0, log_fn if progress else None)


def _restore(
    run: Path, like: TrainState, strict: bool, log_fn: LogFn | None
) -> Restored:
    """The newest readable checkpoint of `run`; fallbacks reported or, strict, fatal."""
    ckpt_dir = run / "checkpoints"
    if not ckpt_dir.is_dir():
        raise ConfigError(f"{str(run)!r} has no checkpoints/.")
    ckpt = Checkpointer(ckpt_dir, keep=None)
    try:
        if ckpt.latest_step() is None:
            raise ConfigError(f"{str(run)!r} has no complete checkpoint.")
        restored = ckpt.restore(like, on_corrupt="raise" if strict else "record")
    except CheckpointCorruptError as err:
        older = "" if err.older is None else f" to step {err.older}"
        raise ConfigError(
            f"checkpoint at step {err.step} is unreadable; --strict forbids "
            f"falling back{older}."
        ) from err
    finally:
        ckpt.close()
    for line in restored.fallback_lines():
        _reporter(log_fn)(line)
    return restored


def _schedule_steps(config: TrainConfig) -> int:
    o = config.optim
    return config.steps if o.schedule_steps is None else o.schedule_steps


def _resume_config(config: TrainConfig, saved: TrainConfig) -> TrainConfig:
    """`config` with `optim.schedule_steps` set by `optim.lr_resume` (see there)."""
    o = config.optim
    if o.lr_resume == "keep" and _schedule_steps(saved) != _schedule_steps(config):
        o = dataclasses.replace(o, schedule_steps=_schedule_steps(saved))
    elif o.lr_resume == "stretch":
        o = dataclasses.replace(o, schedule_steps=None)
    return dataclasses.replace(config, optim=o)


def _resume_line(
    out: Path, restored: Restored, saved: TrainConfig, exp: Experiment, why: str
) -> str:
    """`resumed from step N of M (checkpoint PATH)`, and what the lr schedule does.

    `why` names the setting that decided the schedule's length.
    """
    config, step = exp.config, restored.step
    line = (
        f"resumed from step {step} of {config.steps} "
        f"(checkpoint {out / 'checkpoints' / restored.path.name})"
    )
    old, new = _schedule_steps(saved), _schedule_steps(config)
    if config.optim.schedule == "constant" or old == new == config.steps:
        return line
    if old == new:
        what = f"the lr schedule keeps its {new} steps"
        if new < config.steps:
            what += f", then stays at {float(exp.lr_fn(new)):.3g}"
    else:
        o = saved.optim
        old_fn = make_schedule(
            o.lr, o.schedule, total_steps=old, warmup_steps=o.warmup_steps
        )
        what = (
            f"the lr schedule is {'stretched' if new > old else 'shortened'} from "
            f"{old} to {new} steps: lr at step {step} {float(old_fn(step)):.3g} -> "
            f"{float(exp.lr_fn(step)):.3g}"
        )
    return f"{line}; {what} ({why})"


def resume_run(
    run_dir: str | os.PathLike,
    overrides: list[str] = (),
    *,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    strict: bool = False,
    log_fn: LogFn | None = None,
) -> dict[str, Any]:
    """Continue a run from its newest readable checkpoint and return its summary.

    `overrides` may change runtime fields (e.g. `steps=...`, `devices=1`); the
    checkpoint is resharded onto the current mesh. A new `steps` leaves the
    learning-rate schedule at its length unless `optim.lr_resume=stretch` (see
    `flowlab.config.OptimConfig`). Metric lines logged after the restored step are
    dropped, so `metrics.jsonl` reads as one run.

    Newer checkpoints that do not read back are quarantined to
    `checkpoints/corrupt/` (one `log_fn` line each) and an older one is used;
    with `strict` that is a `ConfigError` instead. `log_fn` then hears
    `resumed from step N of M (checkpoint PATH)` with what the schedule does,
    before training continues.
    """
    out = Path(run_dir)
    if not (out / "config.toml").is_file():
        raise ConfigError(f"{str(out)!r} is not a run directory (no config.toml).")
    overrides = list(overrides)
    saved = load_config(out / "config.toml")
    config = load_config(out / "config.toml", overrides)
    if any(x.split("=", 1)[0].strip() == "optim.schedule_steps" for x in overrides):
        why = "optim.schedule_steps"  # the user's own length wins
    else:
        why = f"optim.lr_resume={config.optim.lr_resume}"
        config = _resume_config(config, saved)
    exp = build(config)
    mesh = _mesh(config)
    restored = _restore(out, _restore_like(exp, mesh), strict, log_fn)
    if jax.process_index() == 0:
        _truncate_metrics(out / "metrics.jsonl", restored.step)
        if config != saved:
            write_atomic(out / "config.toml", dump_toml(config))
        (out / "summary.json").unlink(missing_ok=True)
    _reporter(log_fn)(_resume_line(out, restored, saved, exp, why))
    wall0 = time.perf_counter()
    result = _fit(exp, out, restored.state, mesh, progress, callbacks)
    return _finish(exp, out, result, wall0, log_fn if progress else None)


def _mesh(config: TrainConfig):
    return make_mesh(config.devices)


def load_run(
    run_dir: str | os.PathLike, *, strict: bool = False, log_fn: LogFn | None = None
) -> tuple[Experiment, TrainState]:
    """The experiment and newest readable checkpointed state of a run directory.

    Its `state.step` is the checkpoint's step. Newer checkpoints that do not read
    back are quarantined to `checkpoints/corrupt/`, one `log_fn` line each; with
    `strict` that is a `ConfigError` instead.
    """
    run = Path(run_dir)
    if not (run / "config.toml").is_file():
        raise ConfigError(f"{str(run)!r} is not a run directory (no config.toml).")
    config = load_config(run / "config.toml")
    exp = build(config)
    like = init_state(run_keys(config)["train"], exp.params, exp.optimizer)
    return exp, _restore(run, like, strict, log_fn).state


def sample_run(
    run_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    solver: str | None = None,
    steps: int | None = None,
    *,
    cond: Any = None,
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    strict: bool = False,
    log_fn: LogFn | None = None,
) -> np.ndarray:
    """`n` samples from the EMA parameters of a run's newest checkpoint.

    The same `seed` gives the same samples. `log_fn` hears the checkpoint step and
    solver before the samples are drawn, e.g. `sampling 500 points with euler, 10
    steps, from the checkpoint at step 2000 ...`; `strict` as in `load_run`.

    A conditional run (a labelled `data.target`) samples unconditionally (the
    null condition) by default; `cond` (one condition for every row, e.g. a label
    `3`, or one per row) samples that condition, with classifier-free guidance of
    scale `guidance` (default 1: the conditional model) on `guidance_interval`
    (`flowlab.sampling.guided_field`).
    """
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}.")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}.")
    if cond is None and (guidance is not None or guidance_interval is not None):
        raise ConfigError(
            "--guidance and --guidance-interval need --cond, the condition to "
            "guide towards (e.g. --cond 3 for class 3)."
        )
    if cond is not None:
        _check_conditional(run_dir)  # before the checkpoint is read
    exp, state = load_run(run_dir, strict=strict, log_fn=log_fn)
    if cond is not None:
        return _guided_samples(
            exp, state, n, seed, solver, steps, cond, guidance, guidance_interval,
            log_fn,
        )  # fmt: skip
    kind = solver_kind(exp.manifold)
    if solver is not None and exp.flow_map is not None:
        raise ConfigError(
            f"--solver {solver!r}: the run trained a flow map (loss = "
            f"{exp.config.loss!r}), which samples by jumps, not by an ODE solver; "
            "pass --steps K for K jumps."
        )
    if solver is not None and solver not in registry.table(kind):
        raise ConfigError(
            f"--solver {solver!r} is not one of {list(registry.names(kind))}."
        )
    how = _how(exp, solver, steps)
    _reporter(log_fn)(
        f"sampling {n:,} points with {how}, from the checkpoint at step "
        f"{int(state.step)} ..."
    )
    out = _draw(exp, state.ema_params, jax.random.key(seed), n, solver, steps)
    return np.asarray(out.x)


def _check_conditional(run_dir: str | os.PathLike) -> None:
    """A `ConfigError` unless the run's data set has a condition to sample."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no config.toml).")
    target = load_config(path).data.target
    if registry.build("data", target).condition is None:
        raise ConfigError(
            f"--cond/--guidance: the run {str(run_dir)!r} is unconditional (its "
            f"data.target {target!r} has no labels); train on a labelled data "
            "set, e.g. data.target = 'blobs'."
        )


def _guided_samples(
    exp, state, n, seed, solver, steps, cond, guidance, interval, log_fn
) -> np.ndarray:
    """`sample_run` with a condition: `guided_field` on the run's model."""
    from .sampling import guided_field

    if solver is not None and solver not in registry.table("ode_solver"):
        raise ConfigError(
            f"--solver {solver!r} is not one of {list(registry.names('ode_solver'))}."
        )
    scale = 1.0 if guidance is None else guidance
    try:
        v = guided_field(
            exp.model_fn,
            exp.condition,
            scale,
            interval=None if interval is None else tuple(interval),
            path=exp.loss.path,
            prediction=exp.loss.prediction,
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--guidance/--guidance-interval: {err}") from err
    x0 = exp.source.sample(jax.random.key(seed), n)
    cond = np.asarray(cond)
    if cond.shape == exp.condition.row_shape:  # one for every row
        cond = np.broadcast_to(cond, (n, *cond.shape))
    try:
        start = v.state(x0, cond)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--cond: {err}") from err
    s = exp.config.sample
    how = _solver_text(solver or s.solver, steps if steps is not None else s.steps)
    _reporter(log_fn)(
        f"sampling {n:,} points with {how}, guidance scale {scale:g}, from the "
        f"checkpoint at step {int(state.step)} ..."
    )
    out = sample_ode(
        v,
        start,
        state.ema_params,
        solver=solver or s.solver,
        steps=steps if steps is not None else s.steps,
        rtol=s.rtol,
        atol=s.atol,
    )
    return np.asarray(out.x[0])


def evaluate_run(
    run_dir: str | os.PathLike, *, strict: bool = False, log_fn: LogFn | None = None
) -> dict[str, Any]:
    """Recompute the summary metrics of a run from its newest checkpoint.

    The result's `checkpoint_step` (and `step`) is the step of the checkpoint
    used; `log_fn` hears a line before each phase; `strict` as in `load_run`.
    """
    exp, state = load_run(run_dir, strict=strict, log_fn=log_fn)
    step = int(state.step)
    result = {
        "step": step,
        "checkpoint_step": step,
        **_evaluate(exp, state.ema_params, log_fn),
    }
    return json.loads(json.dumps(result))
