"""Typed run configuration, filled from TOML files and `key=value` overrides.

A config is a tree of frozen dataclasses. `load_config(name_or_path, overrides)`
starts from the defaults (the embedded default run: standard normal to two moons,
Cond-OT path, a small MLP), applies a TOML file, then dotted overrides such as
`model.width=128 optim.lr=3e-4 coupling=independent`. Unknown keys and values of the
wrong type are errors that name the key.
"""

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "CouplingArgsConfig",
    "DataConfig",
    "DistributedConfig",
    "ModelConfig",
    "OptimConfig",
    "PathConfig",
    "SampleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_dirs",
    "dump_toml",
    "find_config",
    "from_dict",
    "load_config",
    "named_configs",
    "to_dict",
]


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


@dataclass(frozen=True)
class DataConfig:
    """Where `x0` and `x1` come from.

    Attributes:
        source: source sampler name (`gaussian` is the standard normal).
        target: target sampler name (`moons`, `8gaussians`, `scurve`, ...).
        n_train: training points drawn once and sampled by index on device; 0
            draws fresh target samples every step.
        n_test: held-out points for W2/MMD in the summary.
    """

    source: str = "gaussian"
    target: str = "moons"
    n_train: int = 10_000
    n_test: int = 2_000


@dataclass(frozen=True)
class PathConfig:
    """The probability path: a schedule and its parameters (used by that schedule).

    `name` is a path of `flowlab.registry` (kind `path`; `affine` is
    `paths.AffinePath(schedule)`) or `"package.module:attribute"`, a factory
    called with the built schedule as `schedule=` when it takes that argument.
    `schedule = "kinetic_optimal"` is fitted to `fit_points` draws of the target
    before training, with `regularization` (`schedules.kinetic_optimal`).
    `sigma` is the noise scale of the paths that take one (`constant_noise`,
    `vp_cfm`: `paths.ConstantNoisePath`).
    """

    name: str = "affine"
    schedule: str = "cond_ot"
    sigma: float = 0.1
    sigma_min: float = 1e-4
    sigma_max: float = 50.0
    beta_min: float = 0.1
    beta_max: float = 20.0
    n: float = 2.0
    regularization: float = 0.1
    fit_points: int = 4096


@dataclass(frozen=True)
class ModelConfig:
    """The network: by default the MLP velocity field (`flowlab.models.MLP`).

    torchcfm's 2-D model is `width=64 depth=3 activation="selu"
    time_embedding="identity"`; the default is a little larger. `name` is a model
    of `flowlab.registry` (kind `model`: `mlp`) or `"package.module:attribute"`, a
    factory of a flax module `(t, x, cond) -> output` on one sample, called with
    the settings below that it takes as keywords.
    """

    name: str = "mlp"
    width: int = 128
    depth: int = 4
    activation: str = "silu"
    time_embedding: str = "sinusoidal"
    time_dim: int = 16


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (see `flowlab.training.make_optimizer`).

    `schedule_steps` is the length of the schedule (unset: the run's `steps`);
    past its end the learning rate stays at the schedule's final value.
    `lr_resume` is only read by `flowlab train --resume` with a new `steps`:
    `"keep"` pins `schedule_steps` to the length the run was trained with, so the
    schedule is not re-stretched mid-run; `"stretch"` unsets it, so the schedule
    spans the new `steps` (the learning rate jumps to its value there). Setting
    `optim.schedule_steps` on the resume wins over both.
    """

    name: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-5
    schedule: str = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = None
    schedule_steps: int | None = None
    lr_resume: str = "keep"


@dataclass(frozen=True)
class SampleConfig:
    """How the summary samples: solver, fixed steps (None = adaptive) and count.

    On a manifold `solver` names a manifold solver (`flowlab.registry`, kind
    `manifold_solver`), and the summary's test NLL scores the first
    `n_likelihood` held-out points. On images (`data.AbstractImageSampler`) the
    summary's test bits per dimension score the first `n_likelihood` test images,
    and `divergence` is how that likelihood estimates the field's divergence:
    `"exact"` (one JVP per dimension) or `"hutchinson"` (one, with one Rademacher
    probe per image: unbiased, its noise in the standard error); a manifold run's
    NLL is exact.
    """

    solver: str = "dopri5"
    steps: int | None = None
    n: int = 2_000
    rtol: float = 1e-5
    atol: float = 1e-5
    n_likelihood: int = 500
    divergence: str = "exact"


@dataclass(frozen=True)
class CouplingArgsConfig:
    """Arguments of the coupling named by `coupling`; unset ones keep its defaults.

    Each is passed to the coupling's factory (`flowlab.registry`) only when set, and
    setting one the coupling does not take is an error naming the key. See the
    factories for their meaning: `epsilon` (entropic regularisation of `sinkhorn`,
    `unbalanced`, `partial`), `hard` (`sinkhorn`: a permutation drawn from the
    plan), `tau_a`, `tau_b` (`unbalanced`), `mass` (`partial`), `threshold`,
    `max_iterations` (Sinkhorn's stopping rule), `on_unconverged` (what an
    entropic coupling does when Sinkhorn stops before its tolerance, a name of
    `flowlab.registry.names("unconverged")`), `base` (the name of `conditional`'s
    base coupling, built with its defaults) and `weight` (`conditional`: lambda on
    a continuous condition).
    """

    epsilon: float | None = None
    hard: bool | None = None
    tau_a: float | None = None
    tau_b: float | None = None
    mass: float | None = None
    threshold: float | None = None
    max_iterations: int | None = None
    on_unconverged: str | None = None
    base: str | None = None
    weight: float | None = None


@dataclass(frozen=True)
class DistributedConfig:
    """Multi-host start-up; unset fields are read from the environment.

    See `flowlab.training.initialize_distributed`: SLURM and TPU pods are detected
    from their own variables; otherwise `JAX_COORDINATOR_ADDRESS`,
    `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, or these fields.
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """A whole run. The defaults are the embedded default run of `flowlab train`.

    Runtime fields: `devices` (mesh size, default all visible), `shard_params`
    (FSDP-style parameter and optimiser sharding), `micro_batches` (gradient
    accumulation), `precision` (`fp32`, or `bf16` compute with fp32 parameters),
    `on_nonfinite` (`stop` or `skip`), `keep_checkpoints` (newest kept),
    `best_metric` (also keep the best checkpoint by it, e.g. `loss`),
    `tensorboard` (event files, needs tensorboardX) and `distributed` (multi-host).

    A labelled `data.target` (e.g. `blobs`) makes the run class-conditional; then
    `cond_dropout` is the share of rows trained with the null condition, so that
    `flowlab sample --cond/--guidance` can guide (`flowlab.conditioning`).

    `loss` names the regression (`flowlab.registry`, kind `loss`):
    `flow_matching` (with `prediction` and `time_sampler`), or a flow-map loss
    that needs no teacher, `mean_flow`, `shortcut` or `consistency_training`
    (`flowlab.flowmaps`; on the run's path, with the loss's own times); a
    flow-map run's network reads two times and `flowlab sample RUN --steps 1`
    jumps in one evaluation.

    `coupling` names a coupling of `flowlab.registry` (kind `coupling`),
    `coupling_args` sets its arguments, and on more than one device each device
    couples its own shard of the batch unless `global_coupling` is set.
    """

    name: str = "default"
    seed: int = 0
    steps: int = 20_000
    batch_size: int = 512
    steps_per_call: int = 50
    log_every: int = 500
    checkpoint_every: int = 5_000
    ema_decay: float = 0.999
    cond_dropout: float = 0.0
    loss: str = "flow_matching"
    prediction: str = "velocity"
    time_sampler: str = "uniform"
    coupling: str = "independent"
    coupling_args: CouplingArgsConfig = field(default_factory=CouplingArgsConfig)
    global_coupling: bool = False
    devices: int | None = None
    shard_params: bool = False
    micro_batches: int = 1
    precision: str = "fp32"
    on_nonfinite: str = "stop"
    keep_checkpoints: int = 3
    best_metric: str | None = None
    tensorboard: bool = False
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    data: DataConfig = field(default_factory=DataConfig)
    path: PathConfig = field(default_factory=PathConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _describe(tp) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp) -> Any:
    """Check (and for strings from the command line, parse) `value` as type `tp`."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None or (
            isinstance(value, str) and value.lower() in ("none", "null")
        ):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key!r} expects {_describe(tp)}, got {value!r}.")


def from_dict(cls, values: dict[str, Any], prefix: str = ""):
    """Build dataclass `cls` from a nested dict, checking every key and type."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix.rstrip('.')!r} must be a table.")
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; known keys"
            f"{' under ' + prefix.rstrip('.') if prefix else ''}: {sorted(types_)}."
        )
    kwargs = {}
    for name, value in values.items():
        tp = types_[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, prefix + name + ".")
        else:
            kwargs[name] = _coerce(prefix + name, value, tp)
    return cls(**kwargs)


def to_dict(config) -> dict[str, Any]:
    """The config as a nested dict (None values kept)."""
    return dataclasses.asdict(config)


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply `key=value` strings with dotted keys, e.g. `model.width=128`."""
    values = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value.")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        cls, section = TrainConfig, values
        for depth, part in enumerate(parts):
            types_ = _field_types(cls)
            where = ".".join(parts[:depth])
            if part not in types_:
                raise ConfigError(
                    f"unknown config key {key!r}; known keys"
                    f"{' under ' + where if where else ''}: {sorted(types_)}."
                )
            tp = types_[part]
            if depth == len(parts) - 1:
                if dataclasses.is_dataclass(tp):
                    raise ConfigError(f"{key!r} is a section; set one of its keys.")
                section[part] = _coerce(key, raw.strip(), tp)
            elif dataclasses.is_dataclass(tp):
                cls, section = tp, section[part]
            else:
                raise ConfigError(
                    f"unknown config key {key!r}: "
                    f"{'.'.join(parts[: depth + 1])!r} has no sub-keys."
                )
    return from_dict(TrainConfig, values)


def config_dirs() -> list[Path]:
    """Where named configs are looked up: packaged copies, then a source checkout."""
    here = Path(__file__).resolve().parent
    return [here / "_configs", here.parent / "configs"]


def find_config(name_or_path: str | os.PathLike) -> Path:
    """A config file from a path, or a name in `configs/` (e.g. `moons`)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist.")
        return path
    for directory in config_dirs():
        candidate = directory / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"unknown config {str(name_or_path)!r}; named configs: {named_configs()}."
    )


def named_configs() -> list[str]:
    """The names `find_config` knows (the `.toml` files of `config_dirs()`), sorted."""
    return sorted(
        {p.stem for d in config_dirs() if d.is_dir() for p in d.glob("*.toml")}
    )


def load_config(
    name_or_path: str | os.PathLike | None = None, overrides: list[str] = ()
) -> TrainConfig:
    """Defaults, then a named or file config (if given), then the overrides."""
    config = TrainConfig()
    if name_or_path is not None:
        path = find_config(name_or_path)
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(
                f"config file {str(path)!r} is not valid TOML: {err}"
            ) from err
        values.setdefault("name", path.stem)
        config = from_dict(TrainConfig, values)
    return apply_overrides(config, list(overrides))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_toml(config: TrainConfig) -> str:
    """The config as TOML text (keys whose value is None are left out)."""
    values = to_dict(config)
    top = [
        f"{k} = {_toml_value(v)}"
        for k, v in values.items()
        if not isinstance(v, dict) and v is not None
    ]
    lines = top
    for section, table in values.items():
        if isinstance(table, dict):
            lines.append(f"\n[{section}]")
            lines.extend(
                f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None
            )
    return "\n".join(lines) + "\n"
