"""Every coupling: the contract (rows, shapes, pytrees), `get`, immutability, jit."""

import coupling_cases as cases
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import flowlab as fl
from flowlab import couplings, data, models, paths, schedules
from flowlab.training import init_state, make_train_step

NAMES = sorted(cases.ALL_COUPLINGS)
run = jax.jit(lambda coupling, key, x0, x1: coupling(key, x0, x1))


def _rows(x):
    return {tuple(row) for row in np.asarray(x).round(12)}


@pytest.mark.parametrize("name", NAMES)
def test_contract(name, key):
    """Pairs are rows of the inputs, `cond` travels with `x1`, `None` passes."""
    coupling, square = cases.ALL_COUPLINGS[name]
    assert isinstance(coupling, couplings.AbstractCoupling)
    x0, x1 = (jnp.asarray(a) for a in cases.batch("moons_normal", 16, 51))
    cond = x1[:, :1] * 2.0  # a function of the row, to check it moved with it
    y0, (y1, moved, none) = run(coupling, key, x0, (x1, cond, None))
    assert none is None
    assert y0.shape == x0.shape
    assert y1.shape == x1.shape
    np.testing.assert_array_equal(moved, y1[:, :1] * 2.0)
    assert _rows(y0) <= _rows(x0)
    assert _rows(y1) <= _rows(x1)
    if square:  # both marginals exactly preserved: each row once
        assert _rows(y0) == _rows(x0)
        assert _rows(y1) == _rows(x1)


@pytest.mark.parametrize("name", NAMES)
def test_couplings_are_immutable_pytrees(name):
    coupling, _ = cases.ALL_COUPLINGS[name]
    assert isinstance(coupling, eqx.Module)
    with pytest.raises(AttributeError):
        coupling.anything = 1
    leaves, tree = jax.tree_util.tree_flatten(coupling)
    assert jax.tree_util.tree_unflatten(tree, leaves) == coupling


@pytest.mark.parametrize(
    "name",
    ["independent", "exact_ot", "sinkhorn", "unbalanced", "partial", "stable_matching"],
)
def test_get_by_name(name):
    assert isinstance(couplings.get(name), couplings.AbstractCoupling)


def test_get_passes_keyword_arguments():
    coupling = couplings.get("sinkhorn", epsilon=0.3, hard=True)
    assert coupling.epsilon == 0.3
    assert coupling.hard


def test_get_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="unknown coupling 'psychic'"):
        couplings.get("psychic")
    with pytest.raises(TypeError, match="coupling 'exact_ot'"):
        couplings.get("exact_ot", epsilon=0.1)


@pytest.mark.slow  # ~5 s; the 8-device suite runs a train step with a coupling
def test_train_step_with_a_coupling_runs():
    """`make_train_step` calls `coupling(key, x0, (x1, cond))` with `cond = None`.

    The step's loss is the loss of the exactly coupled pairs drawn from its own keys
    (`fold_in(state.key, step)` split into data, source, coupling and loss keys),
    coupled here by SciPy's linear assignment (exact OT keeps `x0` and permutes
    `x1`). Tolerance 1e-10: float64 (the parameters follow `jnp.zeros(2)`), the
    same regression jitted inside the step and on its own.
    """
    module = models.MLP(width=16, depth=2, activation="silu")
    model_fn, params = models.init_model(module, jax.random.key(0), jnp.zeros(2))
    loss = fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    opt = optax.adam(1e-3)
    source, target = data.Gaussian(2), data.Moons()
    step = make_train_step(
        model_fn,
        loss,
        opt,
        source=source,
        batch_size=32,
        coupling=couplings.get("exact_ot"),
    )
    state = init_state(jax.random.key(1), params, opt)
    new_state, metrics = jax.jit(step)(state, target)
    assert np.isfinite(metrics["loss"])
    assert int(new_state.step) == 1

    key = jax.random.fold_in(state.key, state.step)
    k_data, k_source, _, k_loss = jax.random.split(key, 4)
    x1 = np.asarray(target.sample(k_data, 32))
    x0 = np.asarray(source.sample(k_source, 32)).astype(x1.dtype)
    _, perm = linear_sum_assignment(cdist(x0, x1, "sqeuclidean"))
    regress = jax.jit(lambda y0, y1: loss(model_fn, params, k_loss, y0, y1)[0])
    coupled, drawn = regress(x0, x1[perm]), regress(x0, x1)
    np.testing.assert_allclose(metrics["loss"], coupled, rtol=1e-10)
    # Exact OT pairs each noise point with a nearby moon point: at these keys the
    # loss is 2.16 against 6.28 for the drawn pairs, so skipping the coupling fails.
    assert float(coupled) < 0.7 * float(drawn)


class _ByFirstCoordinate(couplings.AbstractPermutationCoupling):
    """A user's permutation coupling: x1 rows sorted by their cost to row 0."""

    cost_fn: object = eqx.field(default_factory=lambda: couplings.ExactOT().cost_fn)

    def permutation(self, cost):
        return jnp.argsort(cost[0]).astype(jnp.int32)


def test_user_permutation_coupling_keeps_x0_and_permutes_x1(key):
    """`permutation(cost)` is all a subclass writes: x0 stays, leaves move with x1."""
    x0, x1 = (jnp.asarray(a) for a in cases.batch("moons_normal", 16, 52))
    labels = jnp.arange(16)
    coupling = _ByFirstCoordinate()
    y0, (y1, moved), stats = jax.jit(coupling.couple)(key, x0, (x1, labels))
    cost = jnp.sum((x0[:1] - x1) ** 2, axis=1)
    sigma = jnp.argsort(cost)
    np.testing.assert_array_equal(y0, x0)
    np.testing.assert_array_equal(moved, sigma)
    np.testing.assert_array_equal(y1, x1[sigma])
    assert stats == {}
    assert coupling.square
    assert coupling.repairs_rows
    with pytest.raises(ValueError, match="same number of rows"):
        coupling(key, x0, x1[:8])


def test_permutation_coupling_without_permutation_cannot_be_built():
    class Incomplete(couplings.AbstractPermutationCoupling):
        cost_fn: object = None

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
