"""Kinetic-optimal schedules: the data separation, the energy formula, the schedule.

Ground truths: Gaussian data has rho(s) = s^2/(1 + s^2) in closed form; rho = 1
makes Cond-OT optimal exactly; with n << d the fitted schedule is Cond-OT; the
energy by the formula in rho agrees with an independent Monte-Carlo estimate of
E|u_t|^2 from the empirical marginal velocity.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlab import config as cfg
from flowlab import data, experiment, paths, schedules
from flowlab.paths import kinetic

KEY = jax.random.key(0)

# Tolerances.
# float64 identities (derivatives by jvp, inverses): a few roundings of O(1-10)
# values through arctan/sqrt, far below this.
F64 = 1e-9
# Statistical checks: Monte-Carlo estimates agree within 4 standard errors (fixed
# keys, so a pass is reproducible; 4 SE leaves room for the few checks per test).
N_SE = 4.0


@pytest.fixture(scope="module")
def moons():
    """500 moons points, their separation and the fitted schedule (float64)."""
    x1 = data.get("moons").sample(jax.random.key(1), 500).astype(jnp.float64)
    sep = kinetic.data_separation(x1, key=jax.random.key(2), grid=48, n_queries=512)
    return x1, sep, kinetic.KineticOptimal.from_separation(sep, 0.1)


def test_posterior_mean_equals_the_softmax_over_all_points():
    x1 = jax.random.normal(KEY, (37, 3), jnp.float64)
    y = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
    snr = jnp.array([0.0, 0.3, 1.0, 3.0, 10.0])
    logits = -0.5 * jnp.sum((y[:, None] - snr[:, None, None] * x1[None]) ** 2, -1)
    want = jax.nn.softmax(logits, axis=1) @ x1
    for chunk in (1, 8, 37, 100):  # chunks that do and do not divide n
        got = kinetic.posterior_mean(x1, y, snr, chunk_size=chunk)
        np.testing.assert_allclose(got, want, rtol=F64, atol=F64)


def test_separation_of_gaussian_data_is_the_closed_form():
    # x1 ~ N(0, I): E[x1 | s x1 + z] = s y / (1 + s^2), so rho = s^2 / (1 + s^2)
    # (the empirical measure of 4,000 points differs only past the grid's SNRs
    # where single points are resolved).
    x1 = jax.random.normal(KEY, (4000, 2), jnp.float64)
    sep = kinetic.data_separation(x1, key=jax.random.key(1), grid=16, n_queries=2048)
    want = sep.snr**2 / (1 + sep.snr**2)
    inside = (sep.snr > 0) & (sep.snr < 5.0)  # at s = 0 it is |mean|^2 / M exactly
    z = (sep.rho - want)[inside] / jnp.maximum(sep.rho_se[inside], 1e-12)
    assert float(jnp.max(jnp.abs(z))) < N_SE
    assert float(sep.rho[0]) < 0.01  # rho(0) = |E x1|^2 / E|x1|^2 ~ 1/n


def test_rho_one_gives_cond_ot_exactly():
    theta = jnp.arange(16, dtype=jnp.float64) * jnp.pi / 32
    sep = kinetic.DataSeparation(
        theta, 3 * jnp.tan(theta), jnp.ones(16), jnp.zeros(16), 2, jnp.asarray(18.0)
    )
    s = kinetic.KineticOptimal.from_separation(sep, 0.3)
    t = jnp.linspace(0.0, 1.0, 11)
    out = jax.vmap(s)(t)
    np.testing.assert_allclose(out.alpha, t, atol=F64)
    np.testing.assert_allclose(out.sigma, 1 - t, atol=F64)
    np.testing.assert_allclose(out.d_alpha, 1.0, atol=F64)
    np.testing.assert_allclose(out.d_sigma, -1.0, atol=F64)


def test_few_points_in_high_dimension_fit_cond_ot():
    # n = 8 << d = 16384: each query's posterior sits on its own point from SNR
    # ~ d^(-1/2) on, so rho = 1 nearly everywhere and Cond-OT is optimal (the
    # largest gap, 0.008, is from the SNRs below that; at d = 2048 it is 0.02).
    x1 = jax.random.normal(KEY, (8, 16384), jnp.float64)
    s = schedules.kinetic_optimal(x1, key=jax.random.key(1), n_queries=256)
    t = jnp.linspace(0.0, 1.0, 101)
    out = jax.vmap(s)(t)
    assert float(jnp.max(jnp.abs(out.alpha - t))) < 1e-2
    assert float(jnp.max(jnp.abs(out.sigma - (1 - t)))) < 1e-2


@settings(max_examples=25, deadline=None)
@given(t=st.floats(0.0, 1.0))
def test_schedule_derivatives_are_the_jvp_of_its_values(moons, t):
    _, _, s = moons
    t = jnp.asarray(t, jnp.float64)
    out = s(t)
    _, d_alpha = jax.jvp(lambda u: s(u).alpha, (t,), (jnp.ones_like(t),))
    _, d_sigma = jax.jvp(lambda u: s(u).sigma, (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(out.d_alpha, d_alpha, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(out.d_sigma, d_sigma, rtol=1e-7, atol=1e-7)


def test_schedule_endpoints_and_inverses(moons):
    _, _, s = moons
    start, end = s(0.0), s(1.0)
    np.testing.assert_allclose([start.alpha, start.sigma], [0.0, 1.0], atol=F64)
    np.testing.assert_allclose([end.alpha, end.sigma], [1.0, 0.0], atol=F64)
    t = jnp.linspace(0.02, 0.98, 25)
    out = jax.vmap(s)(t)
    assert bool(jnp.all(jnp.diff(out.alpha / out.sigma) > 0))  # the SNR increases
    np.testing.assert_allclose(
        jax.vmap(s.snr_inverse)(out.alpha / out.sigma), t, atol=F64
    )
    np.testing.assert_allclose(
        jax.vmap(s.kappa_inverse)(out.alpha), t, atol=1e-12 + 1e-9
    )


def test_schedule_passes_through_jit_without_retracing(moons):
    _, _, s = moons
    traces = []

    @jax.jit
    def alpha(schedule, t):
        traces.append(None)
        return schedule(t).alpha

    a = alpha(s, 0.5)
    other = kinetic.KineticOptimal.from_separation(moons[1], 0.5)
    b = alpha(other, 0.5)
    assert len(traces) == 1
    assert float(a) != float(b)


def test_energy_formula_agrees_with_monte_carlo(moons):
    x1, sep, ko = moons
    for s in (schedules.cond_ot(), schedules.cosine(), ko):
        formula = kinetic.kinetic_energy(s, sep)
        mc = kinetic.kinetic_energy_mc(jax.random.key(3), s, x1, n=2048)
        gap = float(formula.energy - mc.energy)
        assert abs(gap) < N_SE * float(jnp.hypot(formula.se, mc.se)), (s, formula, mc)
        assert float(formula.se) < 0.1 * float(formula.energy)  # the check has teeth


def test_fitted_schedule_has_less_energy_than_the_standard_ones(moons):
    # On the same estimate of rho (its error is common to all schedules), and by
    # the independent Monte-Carlo estimate beyond its standard errors.
    x1, sep, ko = moons
    mine = kinetic.kinetic_energy(ko, sep, t_max=0.999).energy
    mine_mc = kinetic.kinetic_energy_mc(jax.random.key(4), ko, x1, n=2048, t_max=0.999)
    for s in (schedules.cond_ot(), schedules.cosine(), schedules.vp()):
        assert float(mine) < float(kinetic.kinetic_energy(s, sep, t_max=0.999).energy)
        other = kinetic.kinetic_energy_mc(jax.random.key(4), s, x1, n=2048, t_max=0.999)
        gap = float(other.energy - mine_mc.energy)
        assert gap > N_SE * float(jnp.hypot(other.se, mine_mc.se)), (s, other, mine_mc)


def test_smaller_regularization_costs_less_energy(moons):
    _, sep, _ = moons
    energies = [
        float(kinetic.kinetic_energy(
            kinetic.KineticOptimal.from_separation(sep, lam), sep
        ).energy)
        for lam in (0.01, 0.1, 1.0, 100.0)
    ]  # fmt: skip
    assert energies == sorted(energies)
    cond_ot = float(kinetic.kinetic_energy(schedules.cond_ot(), sep).energy)
    assert abs(energies[-1] - cond_ot) < 0.02 * cond_ot  # lambda -> inf: Cond-OT


def test_affine_path_trains_on_it(moons):
    _, _, s = moons
    path = paths.AffinePath(s)
    x0, x1 = jnp.zeros(2), jnp.ones(2)
    for t in (0.0, 0.3, 1.0):
        ps = path.sample(None, x0, x1, t)
        _, ut = jax.jvp(lambda u: path.sample(None, x0, x1, u).xt, (t,), (1.0,))
        np.testing.assert_allclose(ps.ut, ut, rtol=1e-7, atol=1e-7)


def test_config_fits_it_on_the_target_reproducibly():
    config = cfg.load_config(
        "moons", ["path.schedule=kinetic_optimal", "path.fit_points=256"]
    )
    a = experiment.build(config).loss.path.schedule
    b = experiment.build(config).loss.path.schedule
    assert isinstance(a, schedules.KineticOptimal)
    np.testing.assert_array_equal(a.g, b.g)


@pytest.mark.parametrize("n", [1, -5])
def test_config_refuses_too_few_fit_points_before_work(n):
    config = cfg.load_config(
        "moons", ["path.schedule=kinetic_optimal", f"path.fit_points={n}"]
    )
    with pytest.raises(cfg.ConfigError, match="path.fit_points must be an int >= 2"):
        experiment.build(config)


@pytest.mark.parametrize(
    ("x1", "match"),
    [
        (jnp.ones((1, 2)), "at least two points"),
        (jnp.array([[0.0, 1.0], [jnp.nan, 1.0]]), "finite"),
        (jnp.zeros((4, 2)), "all zeros"),
        (jnp.ones(3), "batch-first"),
    ],
)
def test_bad_data_is_refused_before_work(x1, match):
    with pytest.raises(ValueError, match=match):
        schedules.kinetic_optimal(x1, key=KEY)


def test_bad_arguments_are_refused(moons):
    x1, sep, _ = moons
    with pytest.raises(ValueError, match="regularization"):
        kinetic.KineticOptimal.from_separation(sep, 0.0)
    with pytest.raises(TypeError, match="schedule"):
        kinetic.kinetic_energy("cond_ot", sep)
    with pytest.raises(ValueError, match="t_max"):
        kinetic.kinetic_energy(schedules.cond_ot(), sep, t_max=1.5)
    with pytest.raises(ValueError, match="event size"):
        kinetic.posterior_mean(x1, jnp.ones((2, 3)), jnp.ones(2))
