"""Divergence estimators of `log_likelihood`: objects, names, registry, errors.

The estimates themselves are checked against Gaussians in test_likelihood.py; here a
name and its object must give the same computation, bit for bit (the same probes,
the same solve), and bad names must say which argument is wrong.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowlab
from flowlab import registry
from flowlab.sampling import (
    AbstractDivergence,
    ExactDivergence,
    HutchinsonDivergence,
)

X1 = jax.random.normal(jax.random.key(7), (6, 3))


def _field(t, x, a):
    # A full (not diagonal) Jacobian, so Hutchinson's estimate is really random.
    return -a * x + jnp.sin(t * jnp.roll(x, 1))


def _log_likelihood(**kwargs):
    return flowlab.log_likelihood(
        _field, X1, jnp.asarray(0.7), solver="rk4", steps=8, **kwargs
    ).log_prob


def test_names_are_registered():
    assert {"exact", "hutchinson"} <= set(registry.names("divergence"))
    assert isinstance(registry.build("divergence", "exact"), ExactDivergence)
    key = jax.random.key(0)
    built = registry.build("divergence", "hutchinson", key=key)
    assert isinstance(built, HutchinsonDivergence)
    assert built.key == key


def test_exact_name_and_object_are_bitwise_equal():
    by_name = _log_likelihood(method="exact")
    by_object = _log_likelihood(method=ExactDivergence())
    np.testing.assert_array_equal(by_name, by_object)
    # A key is ignored by the exact estimator given by name.
    np.testing.assert_array_equal(
        _log_likelihood(method="exact", key=jax.random.key(3)), by_name
    )


def test_hutchinson_name_and_object_are_bitwise_equal():
    key = jax.random.key(4)
    by_name = _log_likelihood(method="hutchinson", key=key)
    by_object = _log_likelihood(method=HutchinsonDivergence(key))
    np.testing.assert_array_equal(by_name, by_object)
    # A legacy uint32 key draws the same probes as the typed key it wraps.
    legacy = _log_likelihood(method=HutchinsonDivergence(jax.random.PRNGKey(4)))
    np.testing.assert_array_equal(legacy, by_name)
    # The probes matter (this check is not vacuous): another key, another estimate.
    other = _log_likelihood(method=HutchinsonDivergence(jax.random.key(5)))
    assert not np.array_equal(other, by_name)


def test_a_new_probe_key_reuses_the_compiled_solve():
    traces = [0]

    def v(t, x, a):
        traces[0] += 1  # runs only while JAX traces v
        return -a * x + jnp.sin(t * jnp.roll(x, 1))

    def run(key):
        return flowlab.log_likelihood(
            v, X1, jnp.asarray(0.7), method=HutchinsonDivergence(key)
        ).log_prob

    run(jax.random.key(0))
    n_traces = traces[0]
    assert n_traces > 0
    run(jax.random.key(1))
    assert traces[0] == n_traces


def test_probes():
    assert ExactDivergence().probes(X1).shape == (X1.shape[0],)
    probes = HutchinsonDivergence(jax.random.key(0)).probes(X1)
    assert probes.shape == X1.shape
    assert probes.dtype == X1.dtype
    assert set(np.unique(np.asarray(probes))) == {-1.0, 1.0}  # Rademacher


def test_estimators_on_one_sample():
    # On a linear field v = A x: the exact trace, and Hutchinson's p^T A p.
    a = jnp.array([[1.0, 2.0, 0.0], [0.5, -3.0, 1.0], [0.0, 4.0, 0.25]])
    x = jnp.array([0.3, -1.0, 2.0])
    probe = jnp.array([1.0, -1.0, 1.0])
    dx, div = ExactDivergence().velocity_and_divergence(lambda y: a @ y, x, None)
    np.testing.assert_allclose(dx, a @ x, rtol=1e-12)
    np.testing.assert_allclose(div, jnp.trace(a), rtol=1e-12)
    hutchinson = HutchinsonDivergence(jax.random.key(0))
    dx, div = hutchinson.velocity_and_divergence(lambda y: a @ y, x, probe)
    np.testing.assert_allclose(dx, a @ x, rtol=1e-12)
    np.testing.assert_allclose(div, probe @ a @ probe, rtol=1e-12)


def test_the_interface_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        AbstractDivergence()


def test_a_user_estimator_joins_through_the_interface():
    # The exact trace by reverse mode: the same numbers as jacfwd's (to float64
    # rounding of the 3 x 3 Jacobian's trace, ~1e-15 of O(1) values).
    class ReverseExact(AbstractDivergence):
        def probes(self, x1):
            return jnp.zeros((x1.shape[0],), x1.dtype)

        def velocity_and_divergence(self, v_fn, x, probe):
            return v_fn(x), jnp.trace(jax.jacrev(v_fn)(x))

    np.testing.assert_allclose(
        _log_likelihood(method=ReverseExact()),
        _log_likelihood(method="exact"),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("method", ["trace", "Exact", 3, None])
def test_bad_method_names_the_argument(method):
    with pytest.raises(ValueError, match="method must be 'exact' or 'hutchinson'"):
        _log_likelihood(method=method)


def test_unknown_method_names_the_kind():
    with pytest.raises(ValueError, match="unknown divergence estimator 'trace'"):
        _log_likelihood(method="trace")


def test_hutchinson_needs_a_key():
    with pytest.raises(ValueError, match="needs a PRNG key"):
        HutchinsonDivergence(None)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        _log_likelihood(method="hutchinson")
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        HutchinsonDivergence(0)
    with pytest.raises(ValueError, match="single key"):
        HutchinsonDivergence(jax.random.split(jax.random.key(0), 2))


def test_key_with_an_estimator_object_is_an_error():
    with pytest.raises(ValueError, match="holds its own"):
        _log_likelihood(
            method=HutchinsonDivergence(jax.random.key(0)), key=jax.random.key(1)
        )


def test_estimators_are_pytrees():
    # The key is a leaf (traced under jit), the exact estimator has none.
    assert jax.tree_util.tree_leaves(ExactDivergence()) == []
    key = jax.random.key(0)
    leaves = jax.tree_util.tree_leaves(HutchinsonDivergence(key))
    assert len(leaves) == 1
    assert leaves[0] == key
    assert eqx.tree_equal(HutchinsonDivergence(key), HutchinsonDivergence(key))
