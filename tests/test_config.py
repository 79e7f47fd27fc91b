"""Typed configs: named files, overrides, type errors, TOML round trip."""

import dataclasses

import pytest

from flowlab.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_dirs,
    dump_toml,
    load_config,
)
from flowlab.run import build

NAMED = sorted(p.stem for d in config_dirs() if d.is_dir() for p in d.glob("*.toml"))


def test_named_configs_exist():
    assert {"moons", "8gaussians_to_moons", "checkerboard", "torchcfm_moons"} <= set(
        NAMED
    )


@pytest.mark.parametrize("name", NAMED)
def test_every_named_config_loads_and_builds(name):
    config = load_config(name)
    assert config.name == name
    exp = build(config)
    assert exp.source.event_shape == exp.target.event_shape


def test_torchcfm_protocol_config():
    c = load_config("torchcfm_moons")
    assert (c.model.width, c.model.depth, c.model.activation) == (64, 3, "selu")
    assert c.model.time_embedding == "identity"
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adamw", 1e-3, 1e-5)
    assert (c.batch_size, c.data.n_train, c.data.n_test) == (512, 10_000, 10_000)
    assert (c.sample.solver, c.sample.steps) == ("euler", 100)
    assert c.steps == -(-1000 * 10_000 // 512)  # 1000 epochs of ceil(10000/512)


def test_overrides_are_typed():
    c = apply_overrides(
        TrainConfig(),
        [
            "model.width=32",
            "optim.lr=3e-4",
            "data.target=8gaussians",
            "optim.grad_clip=1.0",
            "sample.steps=none",
            "steps=1_000",
        ],
    )
    assert c.model.width == 32
    assert c.optim.lr == pytest.approx(3e-4)
    assert c.data.target == "8gaussians"
    assert c.optim.grad_clip == 1.0
    assert c.sample.steps is None
    assert c.steps == 1000


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("model.widht=3", "model.widht"),
        ("nonsense=1", "nonsense"),
        ("model.width=abc", "model.width.*int"),
        ("optim.lr=fast", "optim.lr.*float"),
        ("model=3", "section"),
        ("steps.x=1", "steps.x"),
        ("width", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TrainConfig(), [override])


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="moons"):
        load_config("no_such_config")


def test_bad_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nwidth = 'wide'\n")
    with pytest.raises(ConfigError, match="model.width"):
        load_config(path)
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_toml_round_trip(tmp_path):
    config = apply_overrides(
        load_config("checkerboard"), ["optim.grad_clip=0.5", 'name=x"y']
    )
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("data.target=mars", "data.target"),
        ("path.schedule=wiggly", "path.schedule"),
        ("prediction=banana", "prediction"),
        ("model.activation=swish9", "activation"),
        ("optim.name=adagradx", "optim"),
        ("coupling=psychic", "coupling"),
        ("batch_size=0", "batch_size"),
        ("sample.solver=leapfrog", "sample.solver"),
    ],
)
def test_build_rejects_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        build(apply_overrides(TrainConfig(), [override]))


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().steps = 3
