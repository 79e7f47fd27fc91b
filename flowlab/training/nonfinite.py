r"""What training does when a step's loss, gradient or update is not finite.

A policy acts at two fixed points: inside the jitted step (`finite` decides whether
the step is sound, `guard` keeps or drops its new parameters, optimiser state and
EMA), and on the host after each compiled call (`check`, which may stop the run).

- `StopOnNonFinite()` (`"stop"`): the step applies every update; on the host it
  raises `NonFiniteLossError` naming the step and the last good checkpoint, and
  the state of that call is not kept.
- `SkipNonFinite()` (`"skip"`): a step that is not finite keeps the old
  parameters, optimiser state and EMA (the step still counts); the dropped steps
  are counted in `skipped_steps`.

Why not `optax.apply_if_finite`: it decides on the gradients alone and has no hook
for the parameter EMA. A finite gradient can still give a non-finite update (an
infinite learning rate, an overflowing preconditioner), which `apply_if_finite`
applies; `SkipNonFinite` checks the loss, the gradient norm and the update norm and
keeps all three parts of the state. Where the gradient itself is non-finite the two
agree bitwise on the parameters and the inner optimiser state (tested).
"""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, PyTree

from .. import registry

__all__ = [
    "AbstractNonFinitePolicy",
    "NonFiniteLossError",
    "SkipNonFinite",
    "StopOnNonFinite",
]


class NonFiniteLossError(FloatingPointError):
    """Training produced a non-finite loss or gradient norm."""

    def __init__(self, step: int, quantity: str, last_checkpoint: int | None):
        self.step = step
        self.quantity = quantity
        self.last_checkpoint = last_checkpoint
        kept = (
            f"the last good checkpoint is step {last_checkpoint}"
            if last_checkpoint is not None
            else "no checkpoint was written"
        )
        super().__init__(f"non-finite {quantity} at step {step}; {kept}.")


def _finite(value: Float[Array, ""], grad_norm: Float[Array, ""]) -> Bool[Array, ""]:
    return jnp.isfinite(value) & jnp.isfinite(grad_norm)


class AbstractNonFinitePolicy(eqx.Module):
    """What a step with a non-finite loss, gradient or update does (module doc)."""

    @abc.abstractmethod
    def finite(
        self, value: Float[Array, ""], grad_norm: Float[Array, ""], updates: PyTree
    ) -> Bool[Array, ""]:
        """Whether the step is sound (inside the jitted step)."""

    @abc.abstractmethod
    def guard(self, finite: Bool[Array, ""], new: PyTree, old: PyTree) -> PyTree:
        """The state parts the step keeps: `new`, or `old` where it is not sound."""

    @abc.abstractmethod
    def check(
        self, step: int, metrics: dict[str, np.ndarray], last_checkpoint: int | None
    ) -> None:
        """On the host, after a call that ran the steps after `step`: stop or not."""


class StopOnNonFinite(AbstractNonFinitePolicy):
    """Stop the run at the first non-finite loss or gradient norm."""

    def finite(
        self, value: Float[Array, ""], grad_norm: Float[Array, ""], updates: PyTree
    ) -> Bool[Array, ""]:
        del updates
        return _finite(value, grad_norm)

    def guard(self, finite: Bool[Array, ""], new: PyTree, old: PyTree) -> PyTree:
        del finite, old
        return new

    def check(
        self, step: int, metrics: dict[str, np.ndarray], last_checkpoint: int | None
    ) -> None:
        for quantity, name in (("loss", "loss"), ("gradient norm", "grad_norm")):
            bad = np.flatnonzero(~np.isfinite(np.atleast_1d(metrics[name])))
            if bad.size:
                raise NonFiniteLossError(
                    step + int(bad[0]) + 1, quantity, last_checkpoint
                )


class SkipNonFinite(AbstractNonFinitePolicy):
    """Drop the update of a step whose loss, gradient or update is not finite."""

    def finite(
        self, value: Float[Array, ""], grad_norm: Float[Array, ""], updates: PyTree
    ) -> Bool[Array, ""]:
        # A finite gradient can still make a non-finite update.
        return _finite(value, grad_norm) & jnp.isfinite(optax.tree.norm(updates))

    def guard(self, finite: Bool[Array, ""], new: PyTree, old: PyTree) -> PyTree:
        return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)

    def check(
        self, step: int, metrics: dict[str, np.ndarray], last_checkpoint: int | None
    ) -> None:
        del step, metrics, last_checkpoint


registry.register("nonfinite", "stop", StopOnNonFinite)
registry.register("nonfinite", "skip", SkipNonFinite)


def resolve_policy(policy: Any) -> AbstractNonFinitePolicy:
    """A policy object from an object or a registered name (`"stop"`, `"skip"`)."""
    user_code = isinstance(policy, str) and ":" in policy  # "package.module:name"
    if (
        isinstance(policy, str)
        and not user_code
        and policy not in registry.table("nonfinite")
    ):
        raise ValueError(
            f"on_nonfinite must be one of {list(registry.names('nonfinite'))} or an "
            f"AbstractNonFinitePolicy, got {policy!r}."
        )
    policy = registry.resolve("nonfinite", policy)
    if not isinstance(policy, AbstractNonFinitePolicy):
        raise TypeError(
            "on_nonfinite must be 'stop', 'skip' or a flowlab.training."
            f"AbstractNonFinitePolicy, got {type(policy).__name__}."
        )
    return policy
