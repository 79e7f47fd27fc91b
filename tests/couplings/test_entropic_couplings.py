"""Sinkhorn, unbalanced and partial couplings: plans, sampling, hard permutations."""

import coupling_cases as cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from flowlab import couplings

THRESHOLD = 1e-8  # Sinkhorn's stopping tolerance on the marginal error (L1)


def _points(n0=20, n1=30, seed=21):
    x0, _ = cases.batch("gaussian_shift", n0, seed)
    _, x1 = cases.batch("gaussian_shift", n1, seed + 1)
    return jnp.asarray(x0), jnp.asarray(x1)


# the coupling is an argument: epsilon and the threshold are traced, one compilation
# serves couplings that differ only in them
_solve = jax.jit(lambda coupling, x0, x1: coupling.solve(x0, x1))


def _plan(coupling, x0, x1):
    out, logits = _solve(coupling, x0, x1)
    return out, np.exp(np.asarray(logits))


def test_sinkhorn_marginals_are_uniform_to_the_threshold():
    x0, x1 = _points()
    out, plan = _plan(couplings.sinkhorn(0.1, threshold=THRESHOLD), x0, x1)
    assert bool(out.converged)
    # ott's error is the L1 distance of one marginal after the other was matched;
    # both are within the threshold (float64 sums add ~1e-15).
    assert np.abs(plan.sum(1) - 1 / 20).sum() <= THRESHOLD
    assert np.abs(plan.sum(0) - 1 / 30).sum() <= THRESHOLD
    np.testing.assert_allclose(plan, out.matrix, atol=1e-15)


def test_samples_follow_the_plan():
    x0, x1 = _points(4, 5)
    coupling = couplings.sinkhorn(1.0, threshold=THRESHOLD)
    _, plan = _plan(coupling, x0, x1)
    cost = coupling.cost_matrix(x0, x1)
    keys = jax.random.split(jax.random.key(3), 4000)
    rows0, rows1 = jax.jit(jax.vmap(lambda k: coupling.pair(k, cost)))(keys)
    counts = np.zeros((4, 5))
    np.add.at(counts, (np.asarray(rows0).ravel(), np.asarray(rows1).ravel()), 1)
    freq = counts / counts.sum()
    # 16,000 draws: each cell's standard error is below sqrt(0.25 / 16000) = 0.004;
    # 0.02 is five of them.
    np.testing.assert_allclose(freq, plan, atol=0.02)


def test_pairs_are_rows_of_the_inputs(key):
    x0, x1 = _points(16, 24)
    y0, y1 = jax.jit(couplings.sinkhorn(0.5))(key, x0, x1)
    assert y0.shape == (16, 2)
    assert y1.shape == (16, 2)
    assert np.isin(np.asarray(y0)[:, 0], np.asarray(x0)[:, 0]).all()
    assert np.isin(np.asarray(y1)[:, 0], np.asarray(x1)[:, 0]).all()


def test_hard_draws_a_permutation_that_tends_to_exact_ot(key):
    x0, x1 = (jnp.asarray(a) for a in cases.batch("gaussian_shift", 8, 23))
    run = jax.jit(lambda coupling, key, x0, x1: coupling(key, x0, x1))
    for epsilon in (1.0, 1e-3):
        coupling = couplings.sinkhorn(epsilon, hard=True, max_iterations=20_000)
        y0, y1 = run(coupling, key, x0, x1)
        np.testing.assert_array_equal(y0, x0)
        np.testing.assert_array_equal(
            np.sort(np.asarray(y1), axis=0), np.sort(np.asarray(x1), axis=0)
        )
    cost = cases.sq_cost(np.asarray(x0), np.asarray(x1))
    exact = np.asarray(x1)[linear_sum_assignment(cost)[1]]
    # epsilon = 1e-3: each row of the plan holds > 99% of its mass on one column
    np.testing.assert_array_equal(y1, exact)


def test_hard_needs_equal_batches(key):
    x0, x1 = _points(4, 5)
    with pytest.raises(ValueError, match="same number of rows"):
        couplings.sinkhorn(hard=True)(key, x0, x1)


def test_unbalanced_with_tau_one_is_balanced():
    x0, x1 = _points()
    _, balanced = _plan(couplings.sinkhorn(0.1, threshold=THRESHOLD), x0, x1)
    one = couplings.unbalanced(0.1, 1.0, 1.0, threshold=THRESHOLD)
    _, plan = _plan(one, x0, x1)
    np.testing.assert_allclose(plan, balanced, atol=1e-12)


def test_unbalanced_relaxes_the_marginals():
    x0, x1 = _points()
    _, plan = _plan(couplings.unbalanced(0.1, 0.8, 0.8, threshold=THRESHOLD), x0, x1)
    assert np.abs(plan.sum(1) - 1 / 20).max() > 1e-3  # outliers lose mass
    assert 0.5 < plan.sum() < 1.0


def test_partial_moves_the_mass_within_the_weights():
    x0, x1 = _points()
    mass = 0.7
    coupling = couplings.partial(mass, 0.2, threshold=THRESHOLD)
    out, plan = _plan(coupling, x0, x1)
    assert bool(out.converged)
    # the dummy-to-dummy entry carries exp(-100)-order mass: the real block moves s
    np.testing.assert_allclose(plan.sum(), mass, rtol=1e-6)
    assert (plan.sum(1) <= 1 / 20 + 1e-8).all()
    assert (plan.sum(0) <= 1 / 30 + 1e-8).all()


def test_partial_cost_is_close_to_exact_partial_ot():
    ot = pytest.importorskip("ot")
    x0, x1 = _points()
    mass, epsilon = 0.7, 0.02
    coupling = couplings.partial(mass, epsilon, threshold=THRESHOLD)
    out, plan = _plan(coupling, x0, x1)
    assert bool(out.converged)
    cost = cases.sq_cost(np.asarray(x0), np.asarray(x1))
    exact = ot.partial.partial_wasserstein(
        np.full(20, 1 / 20), np.full(30, 1 / 30), cost, m=mass
    )
    # <C, pi_eps> - <C, pi*> <= epsilon (H(pi_eps) - H(pi*)) <= epsilon mass log(n m)
    gap = (plan * cost).sum() - (exact * cost).sum()
    assert -1e-9 < gap < epsilon * mass * np.log(20 * 30)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (couplings.sinkhorn, {"epsilon": 0.0}, "epsilon"),
        (couplings.sinkhorn, {"epsilon": -1.0}, "epsilon"),
        (couplings.sinkhorn, {"threshold": 0.0}, "threshold"),
        (couplings.sinkhorn, {"max_iterations": 0}, "max_iterations"),
        (couplings.unbalanced, {"tau_a": 0.0}, "tau_a"),
        (couplings.unbalanced, {"tau_b": 1.5}, "tau_b"),
        (couplings.partial, {"mass": 0.0}, "mass"),
        (couplings.partial, {"mass": 1.2}, "mass"),
    ],
)
def test_bad_parameters_raise(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_hard_needs_a_balanced_plan():
    with pytest.raises(ValueError, match="balanced"):
        couplings.EntropicOT(0.1, tau_a=0.9, hard=True)
