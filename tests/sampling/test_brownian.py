"""Brownian motions of `sample_sde`: objects, names, registry, errors.

The statistics of the noise are checked in test_sde.py; here a name and its object
must give the same samples, bit for bit (the same Brownian path from the same key),
and bad names must say which argument is wrong.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import registry
from flowlab.sampling import (
    AbstractBrownian,
    BrownianIncrements,
    BrownianTree,
    sample_sde,
)

X0 = jnp.ones((5, 2))
KEY = jax.random.key(21)


def _drift(t, x, a):
    return -a * x


def _diffusion(t, x, a):
    return 0.5 + t


def _sample(**kwargs):
    return sample_sde(KEY, _drift, _diffusion, X0, jnp.asarray(1.0), steps=10, **kwargs)


def test_names_are_registered():
    assert {"increments", "tree"} <= set(registry.names("brownian"))
    assert isinstance(registry.build("brownian", "increments"), BrownianIncrements)
    tree = registry.build("brownian", "tree", tol=1e-3)
    assert isinstance(tree, BrownianTree)
    assert float(tree.tol) == 1e-3
    assert registry.build("brownian", "tree").tol is None


def test_adjoints():
    assert isinstance(BrownianIncrements.adjoint, diffrax.ForwardMode)
    assert isinstance(BrownianTree.adjoint, diffrax.RecursiveCheckpointAdjoint)


@pytest.mark.parametrize(
    ("name", "obj"),
    [
        ({"brownian": "increments"}, BrownianIncrements()),
        ({}, BrownianIncrements()),  # the default
        ({"brownian": "tree"}, BrownianTree()),
        ({"brownian": "tree", "brownian_tol": 1e-3}, BrownianTree(tol=1e-3)),
    ],
    ids=["increments", "default", "tree", "tree-tol"],
)
def test_name_and_object_are_bitwise_equal(name, obj):
    by_name = _sample(**name, save_trajectory=True)
    by_object = _sample(brownian=obj, save_trajectory=True)
    np.testing.assert_array_equal(by_name.x, by_object.x)
    np.testing.assert_array_equal(by_name.trajectory, by_object.trajectory)
    assert int(by_name.nfe) == int(by_object.nfe) == 10


def test_the_tree_path_does_not_depend_on_the_step_count():
    # With a fixed tol the tree is one Brownian path per key: dX = dW from 0 reaches
    # the same W(1) with any step count (Euler-Maruyama is exact here), up to the
    # float64 rounding of summing the increments (~1e-15).
    def unit(t, x, a):
        return 1.0

    def zero(t, x, a):
        return jnp.zeros_like(x)

    tree = BrownianTree(tol=2.0**-8)
    w1 = [
        sample_sde(KEY, zero, unit, jnp.zeros((5, 2)), steps=k, brownian=tree).x
        for k in (4, 16)
    ]
    np.testing.assert_allclose(w1[0], w1[1], rtol=0, atol=1e-12)


def test_a_new_tolerance_reuses_the_compiled_solve():
    traces = [0]

    def drift(t, x, a):
        traces[0] += 1  # runs only while JAX traces the drift
        return -a * x

    def run(tol):
        return sample_sde(
            KEY, drift, _diffusion, X0, jnp.asarray(1.0), steps=10,
            brownian=BrownianTree(tol),
        )  # fmt: skip

    first = run(1e-2)
    n_traces = traces[0]
    second = run(1e-3)
    assert traces[0] == n_traces
    assert not np.array_equal(first.x, second.x)  # the tolerance reached the tree


def test_the_interface_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        AbstractBrownian()


@pytest.mark.parametrize("brownian", ["bridge", "Tree", 3, None])
def test_bad_brownian_names_the_argument(brownian):
    with pytest.raises(ValueError, match="brownian must be 'increments' or 'tree'"):
        _sample(brownian=brownian)


def test_unknown_brownian_names_the_kind():
    with pytest.raises(ValueError, match="unknown Brownian motion 'bridge'"):
        _sample(brownian="bridge")


@pytest.mark.parametrize("tol", [0.0, -1e-3, float("nan")])
def test_tolerance_must_be_positive(tol):
    with pytest.raises(ValueError, match="brownian_tol.*positive"):
        BrownianTree(tol)
    with pytest.raises(ValueError, match="brownian_tol.*positive"):
        _sample(brownian="tree", brownian_tol=tol)


def test_brownian_tol_needs_the_tree_by_name():
    for brownian in ("increments", BrownianIncrements(), BrownianTree()):
        with pytest.raises(ValueError, match="brownian_tol applies only"):
            _sample(brownian=brownian, brownian_tol=1e-3)
