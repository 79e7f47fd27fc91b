"""Test configuration of the reproductions: the JAX settings of tests/conftest.py.

float64 enabled (x64) and `jax_numpy_rank_promotion="raise"`, as for the library's
tests, so a reproduction's tests see the same JAX whether they run alone
(`python -m pytest reproductions`) or with the whole suite.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
