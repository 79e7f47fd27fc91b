"""Sampling with a per-row condition: the state carries it, with zero velocity.

The sampling side of the data-dependent couplings (`flowlab.couplings.inpainting`,
`flowlab.couplings.degradation`): `coupling.start(zeta, x1, c)` builds the base
samples and the condition of each row, and `conditioned_field(model_fn)` integrates
them with `flowlab.sample_ode`.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["conditioned_field"]


def conditioned_field(
    model_fn: Callable[[Any, Array, Array, Any], Array],
) -> Callable[[Array, tuple[Array, Any], Any], tuple[Array, Any]]:
    """A velocity field on the state `(x, cond)` that keeps `cond` fixed.

    `flowlab.sample_ode` passes `args` to every row unchanged, so a per-row
    condition rides in the state instead, with zero velocity:
    `v(t, (x, cond), params) = (model_fn(params, t, x, cond), 0)`. The condition's
    leaves must be floating point (a mask or an image; embed labels as floats).

    Example:
        >>> import jax.numpy as jnp, flowlab as fl
        >>> v = fl.sampling.conditioned_field(lambda p, t, x, m: (1 - m) * p)
        >>> state = (jnp.zeros((2, 2)), jnp.eye(2))  # x0 and a mask per row
        >>> out = fl.sample_ode(v, state, 3.0, solver="euler", steps=1)
        >>> out.x[0].tolist(), out.x[1].tolist()
        ([[0.0, 3.0], [3.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]])
    """
    return _ConditionedField(model_fn)


class _ConditionedField(eqx.Module):
    """`v(t, (x, cond), params)`, equal for the same `model_fn`.

    Equality lets a second `sample_ode` call reuse the compiled solve.
    """

    model_fn: Callable[[Any, Array, Array, Any], Array] = eqx.field(static=True)

    def __call__(
        self, t: Array, state: tuple[Array, Any], params: Any
    ) -> tuple[Array, Any]:
        x, cond = state
        velocity = self.model_fn(params, t, x, cond)
        return velocity, jax.tree_util.tree_map(jnp.zeros_like, cond)
