"""Conditional couplings: never across labels, a continuous condition's trade-off."""

import coupling_cases as cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import couplings

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: the base couplings on one batch shape; they are never in the
# persistent XLA cache (equinox's `error_if` is a host callback), so a second worker
# compiled them again.
pytestmark = pytest.mark.xdist_group("conditional_couplings")

N = 24
BASES = {
    name: coupling
    for name, (coupling, _) in cases.ALL_COUPLINGS.items()
    if name != "independent"
}


def _labelled(seed=41):
    x0, x1 = cases.batch("gaussian_shift", N, seed)
    rng = np.random.default_rng(seed)
    l0 = rng.permutation(np.arange(N) % 3)
    l1 = rng.permutation(np.arange(N) % 3)
    return jnp.asarray(x0), jnp.asarray(l0), jnp.asarray(x1), jnp.asarray(l1)


@pytest.mark.parametrize("name", sorted(BASES))
def test_never_pairs_across_labels(name, key):
    x0, l0, x1, l1 = _labelled()
    coupling = couplings.conditional(BASES[name])
    (y0, m0), (y1, m1) = jax.jit(coupling)(key, (x0, l0), (x1, l1))
    np.testing.assert_array_equal(m0, m1)
    assert y0.shape == y1.shape


def test_x0_without_labels_inherits_them_and_exact_ot_is_optimal_per_label(key):
    x0, _, x1, l1 = _labelled(42)
    y0, (y1, m1) = jax.jit(couplings.conditional(couplings.exact_ot()))(
        key, x0, (x1, l1)
    )
    np.testing.assert_array_equal(y0, x0)
    np.testing.assert_array_equal(m1, l1)  # row k of x0 took x1's label k
    for label in range(3):  # within each label: the optimal assignment
        rows = np.asarray(l1) == label
        a, b = np.asarray(x0)[rows], np.asarray(x1)[rows]
        got = ((a - np.asarray(y1)[rows]) ** 2).sum()
        np.testing.assert_allclose(got, cases.optimum(cases.sq_cost(a, b)), rtol=1e-9)


def test_unequal_label_counts_raise_inside_jit(key):
    x0, l0, x1, l1 = _labelled(43)
    l0 = l0.at[0].set((l0[0] + 1) % 3)  # one label now occurs once more in x0
    with pytest.raises(Exception, match="every label must occur as often"):
        jax.jit(couplings.conditional(couplings.exact_ot()))(key, (x0, l0), (x1, l1))


def test_unbalanced_base_accepts_unequal_counts(key):
    x0, l0, x1, l1 = _labelled(44)
    l0 = l0.at[0].set((l0[0] + 1) % 3)
    coupling = couplings.conditional(couplings.unbalanced(0.1))
    (_, m0), (_, m1) = jax.jit(coupling)(key, (x0, l0), (x1, l1))
    np.testing.assert_array_equal(m0, m1)


def test_continuous_condition_trades_off_distance(key):
    x0, _, x1, _ = _labelled(45)
    c0 = jnp.linspace(0, 1, N)[:, None]
    c1 = jnp.linspace(0, 1, N)[::-1, None]
    run = jax.jit(lambda c, k, a, b: c(k, a, b))  # the weight is traced: one compile
    free = couplings.conditional(couplings.exact_ot(), weight=0.0)
    _, (y1, _) = run(free, key, (x0, c0), (x1, c1))
    best = cases.optimum(cases.sq_cost(np.asarray(x0), np.asarray(x1)))
    np.testing.assert_allclose(((x0 - y1) ** 2).sum(), best, rtol=1e-9)
    strict = couplings.conditional(couplings.exact_ot(), weight=1e6)
    _, (_, matched) = run(strict, key, (x0, c0), (x1, c1))
    np.testing.assert_allclose(matched, c0)  # a huge weight pairs equal conditions


def test_label_fn_and_cond_fn_pick_leaves(key):
    x0, l0, x1, l1 = _labelled(46)
    tree0 = {"x": x0, "y": l0}
    tree1 = {"x": x1, "y": l1}
    coupling = couplings.conditional(
        couplings.stable_matching(), label_fn=lambda t: t["y"], cond_fn=lambda t: None
    )
    out0, out1 = jax.jit(coupling)(key, tree0, tree1)
    np.testing.assert_array_equal(out0["y"], out1["y"])


def test_get_builds_a_conditional_coupling(key):
    coupling = couplings.get("conditional", base="sinkhorn")
    assert isinstance(coupling, couplings.Conditional)
    assert isinstance(coupling.base, couplings.EntropicOT)


@pytest.mark.parametrize(
    ("x0", "x1", "match"),
    [
        (jnp.zeros((4, 2)), jnp.zeros((4, 2)), "no condition in x1"),
        (
            (jnp.zeros((4, 2)), jnp.zeros(4, int)),
            (jnp.zeros((4, 2)), jnp.zeros((4, 1))),
            "x0 has labels but x1 has none",
        ),
        (jnp.zeros((3, 2)), (jnp.zeros((4, 2)), jnp.zeros(4, int)), "as many rows"),
        (
            (jnp.zeros((4, 2)), jnp.zeros((4, 2), int)),
            (jnp.zeros((4, 2)), jnp.zeros((4, 2), int)),
            "shape \\(n,\\)",
        ),
    ],
)
def test_bad_conditions_raise(x0, x1, match, key):
    with pytest.raises(ValueError, match=match):  # sinkhorn allows unequal batches
        couplings.conditional(couplings.sinkhorn())(key, x0, x1)


def test_base_must_be_cost_based():
    with pytest.raises(TypeError, match="cost based"):
        couplings.conditional(couplings.independent())
