"""reproductions/sf2m_table2/table2.py: one tiny result per method, and the table."""

import json

import pytest

from flowlab import metrics
from reproductions.sf2m_table2 import table2
from reproductions.sf2m_table2.tests.records import fake_result

FIELDS = {
    "task",
    "method",
    "seed",
    "sigma",
    "w2",
    "npe",
    "path_energy",
    "w2_source_target",
    "w2_source_samples",
    "npe_own_endpoints",
    "w2_backend",
    "final_loss",
    "skipped_steps",
    "train_seconds",
    "coupling_seconds",
    "coupling_share",
    "eval_seconds",
    "steps",
    "n_eval",
    "machine",
    "git",
    "protocol",
}


def test_cells_and_published_values_cover_each_other():
    cells = table2.cells()
    assert len(cells) == 15
    assert ("8gaussians_moons", "fm") not in cells  # FM needs a Gaussian source
    assert set(cells) == set((t, m) for m, t in table2.PUBLISHED)
    # Run order: every cheap method's cells before the next method's.
    methods = [m for _, m in cells]
    assert methods == sorted(methods, key=list(table2.METHODS).index)
    assert table2.PUBLISHED["otcfm", "normal_moons"] == (0.130, 0.016, 0.083)
    assert table2.PUBLISHED["icfm", "8gaussians_moons"] == (1.557, 0.407, 2.680)


@pytest.mark.heavy
# OT-CFM's run (30 s, the exact coupling's compile) is slow; the others cover the
# pipeline by default.
@pytest.mark.parametrize(
    "method",
    ["icfm", "fm", "sbcfm", pytest.param("otcfm", marks=pytest.mark.slow)],
)
def test_run_one_writes_a_complete_result(method, tmp_path):
    # Tiny: 4 steps (2 fused calls of 2), 64 evaluation points, 2 timed couplings.
    r = table2.run_one(
        "normal_moons",
        method,
        3,
        steps=4,
        n_eval=64,
        n_train=256,
        out=tmp_path,
        steps_per_call=2,
        coupling_reps=2,
    )
    file = table2.result_path(tmp_path, "normal_moons", method, 3)
    on_disk = json.loads(file.read_text())
    assert FIELDS <= set(on_disk)
    assert on_disk["w2"] == r["w2"] > 0
    assert on_disk["steps"] == 4
    assert on_disk["n_eval"] == 64
    assert on_disk["w2_backend"] == "flowlab.metrics"
    assert on_disk["sigma"] == (1.0 if method == "sbcfm" else 0.1)
    assert 0 <= on_disk["npe"] < float("inf")
    # NPE = |E - W2(q0, q1)^2| / W2(q0, q1)^2, W2 between this seed's evaluation
    # source points and held-out targets (float64 throughout: 1e-12).
    setup = table2.training_setup("normal_moons", method, 3, n_train=256)
    x0 = setup.source.sample(setup.keys["eval_source"], 64)
    test = setup.target.sample(setup.keys["test"], 64)
    w2_st = metrics.wasserstein2(x0, test)
    assert on_disk["w2_source_target"] == pytest.approx(w2_st, rel=1e-12)
    assert on_disk["npe"] == pytest.approx(
        abs(on_disk["path_energy"] - w2_st**2) / w2_st**2, rel=1e-12
    )
    assert on_disk["w2_source_samples"] > 0
    # Euler's energy sum_k |v_k|^2 dt bounds |x1 - x0|^2 per point (Cauchy-Schwarz),
    # whose mean bounds W2^2 between the flow's own endpoints.
    assert on_disk["path_energy"] >= on_disk["w2_source_samples"] ** 2 * (1 - 1e-5)
    assert on_disk["npe_own_endpoints"] == pytest.approx(
        on_disk["path_energy"] / on_disk["w2_source_samples"] ** 2 - 1
    )
    assert on_disk["coupling_share"] >= 0
    assert (on_disk["coupling_seconds"] == 0) == (method in ("icfm", "fm"))
    # The share is the timed coupling's seconds over the training's; the training
    # (4 steps, compile included) takes seconds, 4 coupling calls milliseconds.
    assert on_disk["coupling_share"] == pytest.approx(
        on_disk["coupling_seconds"] / on_disk["train_seconds"], rel=1e-12
    )
    assert on_disk["coupling_seconds"] == pytest.approx(
        on_disk["coupling_seconds_per_step"] * 4, rel=1e-12
    )
    assert on_disk["coupling_share"] < 1
    assert on_disk["train_seconds"] > 0
    # The loss of the last logged step, finite, and no step skipped.
    assert on_disk["final_loss"] == on_disk["loss_curve"][-1][1]
    assert 0 < on_disk["final_loss"] < float("inf")
    assert on_disk["skipped_steps"] == 0
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left over


def test_fm_has_no_data_source_cell():
    with pytest.raises(ValueError, match="no cell"):
        table2.run_one("8gaussians_moons", "fm", 0, steps=1, n_eval=4)


def test_pot_and_flowlab_agree():
    # Records written before the move to flowlab.metrics computed W2 with POT's
    # exact network simplex (`w2_backend: "pot"`); an exact W2 is the same number
    # whichever exact solver computes it, so they stay valid.
    ot = pytest.importorskip("ot")
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 1
    weights = np.full(300, 1 / 300)
    pot = np.sqrt(ot.emd2(weights, weights, ot.dist(x, y), numItermax=10**7))
    scipy = metrics.wasserstein2(x, y)
    assert abs(pot - scipy) < 1e-10  # both exact, float64


def test_verdict_logic():
    assert table2.verdict(0.10, 0.130, 0.016) == ("pass", "bound 0.162")
    assert table2.verdict(0.16, 0.130, 0.016)[0] == "pass"  # within 2 std
    assert table2.verdict(0.17, 0.130, 0.016)[0] == "miss"
    # No published std: the bound is the mean itself.
    assert table2.verdict(0.20, 0.209, None) == (
        "pass",
        "no published std: bound is the mean",
    )
    assert table2.verdict(0.21, 0.209, None)[0] == "miss"
    assert table2.verdict(0.5, None, None) == ("n/a", "no published value")
    assert table2.verdict(None, 0.3, 0.1) == ("n/a", "no result")


def test_table_partial_and_complete(tmp_path):
    # Two hand-made results: partial table, one pass and one miss, provisional.
    results = [
        fake_result("normal_moons", "otcfm", 0, 0.12, npe=0.05),
        fake_result("normal_moons", "icfm", 0, 0.30, npe=2.0),
        fake_result("normal_moons", "otcfm", 0, 9.9)
        | {"steps": 10},  # not full protocol
    ]
    for r in results:
        file = (
            tmp_path / f"{r['task']}__{r['method']}__seed{r['seed']}_{r['steps']}.json"
        )
        file.write_text(json.dumps(r))
    (tmp_path / "normal_moons__sbcfm__seed0.json").write_text("{broken")
    text = table2.build_table(table2.load_results(tmp_path))
    assert text.splitlines()[0] == "**PARTIAL: 2 of 75 results.**"
    rows = {
        tuple(line.split(" | ")[:2]): line
        for line in text.splitlines()
        if line.startswith("| ")
    }
    ot_row = rows["| OT-CFM", "N→moons"]
    assert "0.120" in ot_row
    assert "0.130 ± 0.016" in ot_row
    assert "pass*" in ot_row
    i_row = rows["| I-CFM", "N→moons"]
    assert "0.300" in i_row
    assert "miss*" in i_row  # 0.300 > 0.178 + 2 * 0.014
    assert "no published value" in rows["| SB-CFM", "8gaussians→moons"]

    # Every cell with five seeds: complete, verdicts final (no *), std reported.
    full = [
        fake_result(
            t, m, s, *(0.9 * v for v in (table2.PUBLISHED[m, t] or (1, 0, 1))[::2])
        )
        for t, m in table2.cells()
        for s in range(5)
    ]
    text = table2.build_table(full)
    assert text.splitlines()[0] == "**Complete: 75 of 75 results.**"
    assert "pass*" not in text
    assert "miss" not in text
    assert "0.117 ± 0.000" in text  # 0.9 * 0.130, five equal seeds


def test_results_on_other_data_definitions_are_left_out():
    # Results from before the runner's S-curve (no `protocol["data"]`) still count
    # on tasks whose data did not change, not on N→scurve, and W2(q0, q1) is not
    # reused from them.
    legacy = {k: v for k, v in table2.PROTOCOL.items() if k != "data"}
    moons = fake_result("normal_moons", "icfm", 0, 0.2) | {"protocol": legacy}
    scurve = fake_result("normal_scurve", "icfm", 0, 0.2) | {"protocol": legacy}
    assert table2.same_data(moons, "normal_moons")
    assert not table2.same_data(scurve, "normal_scurve")
    assert table2.same_data(
        fake_result("normal_scurve", "icfm", 0, 0.2), "normal_scurve"
    )
    summary = table2.summarise([moons, scurve])
    assert summary["normal_moons", "icfm"]["seeds"] == [0]
    assert summary["normal_scurve", "icfm"]["seeds"] == []


def test_scurve_is_the_runners():
    # torchcfm's runner: make_s_curve(noise=0.05) on (x, z), times 1.5.
    import jax
    import numpy as np

    x = np.asarray(table2._sampler("scurve").sample(jax.random.key(0), 50_000))
    assert 1.5 < np.abs(x[:, 0]).max() < 1.5 * (1 + 5 * 0.05)
    assert 3.0 < np.abs(x[:, 1]).max() < 1.5 * (2 + 5 * 0.05)
    # The noise: distance to the scaled noiseless curve, per coordinate 0.075.
    t = np.linspace(-1.5 * np.pi, 1.5 * np.pi, 20_001)
    curve = 1.5 * np.stack([np.sin(t), np.sign(t) * (np.cos(t) - 1)], axis=-1)
    d2 = ((x[:2000, None, :] - curve[None, ::4, :]) ** 2).sum(-1).min(axis=1)
    # Squared distance to a curve: about one coordinate's noise variance.
    assert 0.5 * 0.075**2 < d2.mean() < 1.5 * 0.075**2


def test_training_setup_draws_the_tasks_data():
    # A Gaussian source is a sampler drawn fresh each step; a data source and the
    # target are fixed training sets; the same (task, seed) gives the same data.
    gauss = table2.training_setup("normal_moons", "otcfm", 1, n_train=300)
    assert gauss.train_source is gauss.source
    assert gauss.train_target.points.shape == (300, 2)
    data_src = table2.training_setup("8gaussians_moons", "icfm", 1, n_train=300)
    assert data_src.train_source.points.shape == (300, 2)
    assert data_src.train_source is not data_src.source
    again = table2.training_setup("normal_moons", "icfm", 1, n_train=300)
    assert (again.train_target.points == gauss.train_target.points).all()
    other = table2.training_setup("normal_moons", "icfm", 2, n_train=300)
    assert not (other.train_target.points == gauss.train_target.points).all()
