r"""How `log_likelihood` estimates the divergence $\nabla\cdot v$ along its solve.

`ExactDivergence` takes the trace of the Jacobian (one `jax.jacfwd` per evaluation);
`HutchinsonDivergence(key)` the unbiased estimate $\epsilon^\top (\partial v /
\partial x)\,\epsilon$ with one Rademacher probe $\epsilon$ per sample, drawn from its
key and held fixed along the trajectory (one JVP per evaluation). The names
`"exact"` and `"hutchinson"` build them through `flowlab.registry` (kind
`"divergence"`), so `log_likelihood(..., method="hutchinson", key=key)` and
`log_likelihood(..., method=HutchinsonDivergence(key))` are the same computation.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _checks, registry

__all__ = ["AbstractDivergence", "ExactDivergence", "HutchinsonDivergence"]

_Field = Callable[[Float[Array, "*event"]], Float[Array, "*event"]]


class AbstractDivergence(eqx.Module):
    r"""An estimator of $\nabla\cdot v$ for `log_likelihood`.

    Each sample carries a probe through the solve (`probes`, drawn once); every
    evaluation of the field returns $v$ and the estimate at the sample
    (`velocity_and_divergence`).
    """

    @abc.abstractmethod
    def probes(self, x1: Float[Array, "batch *event"]) -> Float[Array, "batch ..."]:
        """The probe of each sample, constant along the trajectory."""

    @abc.abstractmethod
    def velocity_and_divergence(
        self, v_fn: _Field, x: Float[Array, "*event"], probe: Float[Array, "..."]
    ) -> tuple[Float[Array, "*event"], Float[Array, ""]]:
        r"""$v(x)$ and the estimate of $\nabla\cdot v(x)$ for one sample.

        Args:
            v_fn: the field at the current time and arguments, `x -> v(t, x, args)`.
            x: one sample.
            probe: its probe.
        """


class ExactDivergence(AbstractDivergence):
    r"""The trace of $\partial v / \partial x$, with no probes and no randomness.

    One `jax.jacfwd` per evaluation: $D$ JVPs for an event of size $D$.
    """

    def probes(self, x1):
        return jnp.zeros((x1.shape[0],), x1.dtype)

    def velocity_and_divergence(self, v_fn, x, probe):
        flat = lambda y: v_fn(y.reshape(x.shape)).reshape(-1)  # noqa: E731
        return v_fn(x), jnp.trace(jax.jacfwd(flat)(x.reshape(-1)))


def _probe_key(key: PRNGKeyArray | None) -> PRNGKeyArray:
    if key is None:
        raise ValueError(
            "HutchinsonDivergence needs a PRNG key for its probes: pass key=... "
            "(log_likelihood(..., method='hutchinson', key=jax.random.key(0)))."
        )
    return _checks.key(key)


class HutchinsonDivergence(AbstractDivergence):
    r"""Hutchinson's $\epsilon^\top (\partial v / \partial x)\,\epsilon$ (one JVP).

    Unbiased, $\mathbb E_\epsilon[\epsilon^\top A \epsilon] = \operatorname{tr} A$,
    with one Rademacher probe per sample drawn from `key`.

    Attributes:
        key: the PRNG key of the probes; a new key reuses the compiled solve.
    """

    key: PRNGKeyArray = eqx.field(converter=_probe_key)

    def probes(self, x1):
        return jax.random.rademacher(self.key, x1.shape, dtype=x1.dtype)

    def velocity_and_divergence(self, v_fn, x, probe):
        flat = lambda y: v_fn(y.reshape(x.shape)).reshape(-1)  # noqa: E731
        dx, jvp = jax.jvp(flat, (x.reshape(-1),), (probe.reshape(-1),))
        return dx.reshape(x.shape), jnp.vdot(probe.reshape(-1), jvp)


registry.register("divergence", "exact", ExactDivergence)
registry.register("divergence", "hutchinson", HutchinsonDivergence)
