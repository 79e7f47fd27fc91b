"""A run's parts from a `TrainConfig`: every name of the config becomes an object here.

Names go through `flowlab.registry` (data sets, schedules, time samplers,
couplings, optimisers, precisions, solvers), and every error names the config key
it came from, before any file is written.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import data, flowmaps, losses, models, registry
from .conditioning import check_dropout
from .config import ConfigError, CouplingArgsConfig, TrainConfig, to_dict
from .training import make_optimizer

__all__ = ["Experiment", "build", "run_keys", "solver_kind"]


class Experiment(NamedTuple):
    """Everything a run is made of, built (and validated) from a `TrainConfig`."""

    config: TrainConfig
    source: data.AbstractSampler
    target: data.AbstractSampler
    loss: losses.AbstractLoss
    model_fn: Any
    params: Any
    optimizer: Any
    lr_fn: Any
    coupling: Any
    manifold: Any = None
    """The manifold of the data (`None` for Euclidean data), from `data.target`."""
    condition: Any = None
    """The condition of a labelled `data.target` (`flowlab.conditioning`), or `None`."""
    flow_map: Any = None
    """The run's `flowlab.flowmaps.AverageVelocityMap` for a flow-map `loss`, else
    `None` (a velocity model, sampled by an ODE solver)."""


def _named(key: str, fn, /, *args, **kwargs):
    """Call `fn`, reporting its ValueError/TypeError as a ConfigError on `key`."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {err}") from err


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
    for key, kind in (
        ("precision", "precision"),
        ("on_nonfinite", "nonfinite"),
        ("sample.divergence", "divergence"),
    ):
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        _named(key, registry.lookup, kind, value)
    if config.micro_batches < 1 or config.keep_checkpoints < 1:
        raise ConfigError("micro_batches and keep_checkpoints must be >= 1.")
    if config.devices is not None and config.devices < 1:
        raise ConfigError(f"devices must be >= 1, got {config.devices}.")
    o = config.optim
    if o.schedule_steps is not None and o.schedule_steps < 1:
        raise ConfigError(
            f"optim.schedule_steps must be >= 1 or unset, got {o.schedule_steps}."
        )
    if o.lr_resume not in ("keep", "stretch"):
        raise ConfigError(
            f"optim.lr_resume must be 'keep' or 'stretch', got {o.lr_resume!r}."
        )


def _condition(config: TrainConfig, target: data.AbstractSampler):
    """The target's condition; `cond_dropout` checked against it."""
    p = _named("cond_dropout", check_dropout, config.cond_dropout)
    condition = target.condition
    if p > 0 and condition is None:
        raise ConfigError(
            f"cond_dropout: data.target {config.data.target!r} has no labels, so "
            "there is no condition to drop; use a labelled data set (e.g. "
            "data.target = 'blobs') or cond_dropout = 0."
        )
    return condition


def solver_kind(manifold) -> str:
    """The registry kind of `sample.solver`: manifold solvers on a manifold."""
    return "ode_solver" if manifold is None else "manifold_solver"


def _coupling(config: TrainConfig, manifold):
    """The coupling `config.coupling` with `coupling_args`; errors name the key.

    On a manifold the coupling's cost is the squared geodesic distance (the
    coupling's `manifold=` argument), for the couplings that take a cost.
    """
    name = config.coupling
    args = {k: v for k, v in to_dict(config.coupling_args).items() if v is not None}
    _named("coupling", registry.lookup, "coupling", name)  # an unknown name
    known = registry.accepted(
        "coupling", name, {f.name: None for f in dataclasses.fields(CouplingArgsConfig)}
    )
    for key, value in args.items():
        if key not in known:
            hint = f"; it takes {', '.join(known)}" if known else ""
            raise ConfigError(
                f"coupling_args.{key}: coupling {name!r} has no argument {key!r}"
                f"{hint or '; it takes no coupling_args'}."
            )
        _named(f"coupling_args.{key}", registry.build, "coupling", name, **{key: value})
    if manifold is not None:
        args.update(registry.accepted("coupling", name, {"manifold": manifold}))
    return _named("coupling_args", registry.build, "coupling", name, **args)


def _manifold_of(target: data.AbstractSampler):
    """The manifold the target's points lie on, or `None` for Euclidean data."""
    if isinstance(target, data.AbstractManifoldSampler):
        return target.manifold
    return None


def _check_source(source, manifold) -> None:
    """A few source points must lie on the target's manifold (before training)."""
    if manifold is None:
        return
    x = source.sample(jax.random.key(0), 4)
    gap = float(jnp.max(jax.vmap(lambda p: jnp.linalg.norm(manifold.projx(p) - p))(x)))
    if not gap <= 1e-5:
        raise ConfigError(
            f"data.source: its points lie off {manifold!r}, where data.target lies "
            f"(the farthest of 4 drawn is {gap:.3g} from it): use a source on it, "
            "such as data.source = 'uniform'."
        )


def _fit_data(config: TrainConfig, target, schedule: str) -> dict:
    """`x1` and `key` for a schedule fitted to data (`kinetic_optimal`), else `{}`.

    `path.fit_points` draws of the target with the run's seed (fold 2; fold 1
    initialises the model), so the same seed fits the same schedule.
    """
    wanted = registry.accepted("schedule", schedule, {"x1": None, "key": None})
    if "x1" not in wanted:
        return {}
    n = config.path.fit_points
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(
            f"path.fit_points must be an int >= 2 (the draws of data.target that "
            f"path.schedule = {schedule!r} is fitted on), got {n!r}."
        )
    key = jax.random.fold_in(jax.random.key(config.seed), 2)
    k_data, k_fit = jax.random.split(key)
    fit = {"x1": target.sample(k_data, n)}
    if "key" in wanted:
        fit["key"] = k_fit
    return fit


def build(config: TrainConfig) -> Experiment:
    """Build and validate every part of a run (no files are touched)."""
    _check_values(config)
    target = _named("data.target", registry.build, "data", config.data.target)
    condition = _condition(config, target)
    manifold = _manifold_of(target)
    _named(
        "sample.solver", registry.lookup, solver_kind(manifold), config.sample.solver
    )
    source_kwargs = registry.accepted(
        "data",
        config.data.source,
        {"dim": target.event_shape[0], "manifold": manifold},
    )
    source = _named(
        "data.source", registry.build, "data", config.data.source, **source_kwargs
    )
    if source.event_shape != target.event_shape:
        raise ConfigError(
            f"data.source draws shape {source.event_shape} but data.target "
            f"{target.event_shape}."
        )
    _check_source(source, manifold)
    p = config.path
    _named("path.schedule", registry.lookup, "schedule", p.schedule)
    settings = registry.accepted("schedule", p.schedule, to_dict(p))
    settings.pop("schedule", None)
    settings.pop("name", None)
    settings.update(_fit_data(config, target, p.schedule))
    schedule = _named(
        "path.schedule", registry.build, "schedule", p.schedule, **settings
    )
    sampler = _named(
        "time_sampler", registry.build, "time_sampler", config.time_sampler
    )
    _named("path.name", registry.lookup, "path", p.name)
    path = _named(
        "path.name",
        registry.build,
        "path",
        p.name,
        **registry.accepted(
            "path",
            p.name,
            {"schedule": schedule, "manifold": manifold, "sigma": p.sigma},
        ),
    )
    if manifold is not None and getattr(path, "manifold", None) != manifold:
        raise ConfigError(
            f"path.name: data.target lies on {manifold!r}, so the path must run on "
            f"it: path.name = 'geodesic' (got {p.name!r})."
        )
    loss = _loss(config, path, sampler, manifold, condition)
    flow_map = isinstance(loss, flowmaps.AbstractFlowMapLoss)
    m = config.model
    _named("model.name", registry.lookup, "model", m.name)
    settings = registry.accepted("model", m.name, to_dict(m))
    settings.pop("name", None)
    if condition is not None:  # e.g. MLP(num_classes=K + 1) for Labels(K)
        settings.update(registry.accepted("model", m.name, condition.model_settings))
    module = _named("model.name", registry.build, "model", m.name, **settings)
    init_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    if flow_map:  # a network of (t, s - t)
        flow_map, model_fn, params_ = _named(
            "model",
            flowmaps.init_flow_map,
            module,
            init_key,
            jnp.zeros(target.event_shape),
        )
    elif manifold is None:
        example = jnp.zeros(target.event_shape)
        model_fn, params_ = _named(
            "model",
            models.init_model,
            module,
            init_key,
            example,
            None if condition is None else condition.null(1)[0],
        )
    else:  # the network's output projected on the tangent space
        model_fn, params_ = _named(
            "model",
            models.init_tangent_model,
            module,
            manifold,
            init_key,
            manifold.origin(),
        )
    o = config.optim
    optimizer, lr_fn = _named(
        "optim",
        make_optimizer,
        o.name,
        o.lr,
        weight_decay=o.weight_decay,
        schedule=o.schedule,
        total_steps=config.steps if o.schedule_steps is None else o.schedule_steps,
        warmup_steps=o.warmup_steps,
        grad_clip=o.grad_clip,
    )
    coupling = _coupling(config, manifold)
    return Experiment(
        config,
        source,
        target,
        loss,
        model_fn,
        params_,
        optimizer,
        lr_fn,
        coupling,
        manifold,
        condition,
        flow_map or None,
    )


def _loss(config: TrainConfig, path, sampler, manifold, condition):
    """The loss `config.loss` on `path`; a flow-map loss only where it applies."""
    name = config.loss
    _named("loss", registry.lookup, "loss", name)
    if name == "flow_matching":
        return _named(
            "prediction",
            losses.FlowMatchingLoss,
            path,
            prediction=config.prediction,
            time_sampler=sampler,
        )
    loss = _named(
        "loss",
        registry.build,
        "loss",
        name,
        **registry.accepted("loss", name, {"path": path}),
    )
    if not isinstance(loss, losses.AbstractLoss):
        raise ConfigError(
            f"loss: {name!r} built a {type(loss).__name__}, not a "
            "flowlab.losses.AbstractLoss."
        )
    if not isinstance(loss, flowmaps.AbstractFlowMapLoss):
        return loss
    why = None
    if manifold is not None:
        why = "data on a manifold"
    elif condition is not None:
        why = "a labelled data.target"
    elif config.prediction != "velocity":
        why = f"prediction = {config.prediction!r} (a flow map predicts the jump)"
    if why is not None:
        raise ConfigError(
            f"loss: {name!r} trains a Euclidean, unconditional flow map; it "
            f"does not take {why}. Use loss = 'flow_matching' for that run."
        )
    return loss


def run_keys(config: TrainConfig) -> dict[str, jax.Array]:
    """The run's keys: `train` (the root of the steps), `data`, `test`, `sample`."""
    root = jax.random.key(config.seed)
    names = ("train", "data", "test", "sample")
    return dict(zip(names, jax.random.split(root, len(names)), strict=True))
