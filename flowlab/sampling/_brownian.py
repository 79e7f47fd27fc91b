r"""How `sample_sde` draws its Brownian motion: per-step increments or a tree.

An `AbstractBrownian` makes the diffrax Brownian path of one solve (inside the
compiled solve, from the traced key, times and step) and names the adjoint that can
differentiate through it. The names `"increments"` and `"tree"` build them through
`flowlab.registry` (kind `"brownian"`), so `sample_sde(..., brownian="tree")` and
`sample_sde(..., brownian=BrownianTree())` are the same solve.
"""

import abc
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .. import registry

__all__ = ["AbstractBrownian", "BrownianIncrements", "BrownianTree"]


class AbstractBrownian(eqx.Module):
    """A way to draw the Brownian motion of `sample_sde`.

    Attributes:
        adjoint: the diffrax adjoint that differentiates a solve driven by it.
    """

    adjoint: eqx.AbstractClassVar[diffrax.AbstractAdjoint]

    @abc.abstractmethod
    def path(
        self,
        t0: Float[Array, ""],
        t1: Float[Array, ""],
        dt0: Float[Array, ""],
        shape: PyTree[jax.ShapeDtypeStruct],
        key: PRNGKeyArray,
        levy_area: type,
    ) -> diffrax.AbstractBrownianPath:
        """The Brownian path on `[t0, t1]` for steps `dt0` and a state of `shape`.

        Args:
            t0: the start time.
            t1: the end time.
            dt0: the step size.
            shape: the state's shapes and dtypes.
            key: the only source of randomness.
            levy_area: the Lévy area type the solver needs.
        """


class BrownianIncrements(AbstractBrownian):
    """An independent Gaussian increment per step (`diffrax.UnsafeBrownianPath`).

    The fastest; differentiable only in forward mode (`jax.jvp`), not by `jax.grad`.
    """

    adjoint: ClassVar[diffrax.AbstractAdjoint] = diffrax.ForwardMode()

    def path(self, t0, t1, dt0, shape, key, levy_area):
        return diffrax.UnsafeBrownianPath(shape, key, levy_area=levy_area)


def _tolerance(tol: float | Float[Array, ""] | None) -> Float[Array, ""] | None:
    if tol is None:
        return None
    tol = jnp.asarray(tol)  # an array: a new tol reuses the compiled solve
    try:
        positive = tol.ndim == 0 and bool(tol > 0)
    except jax.errors.ConcretizationTypeError:  # traced: checkable only when run
        positive = True
    if not positive:
        raise ValueError(
            "the Brownian tree's tol (sample_sde's brownian_tol) must be a positive "
            f"number, got {tol!r}."
        )
    return tol


class BrownianTree(AbstractBrownian):
    """One Brownian path per key at any resolution (`diffrax.VirtualBrownianTree`).

    Slower than increments; differentiable in reverse mode, and, for a fixed `tol`,
    the same path for every step count.

    Attributes:
        tol: the tree's time resolution; `None` for half a step.
    """

    tol: Float[Array, ""] | None = eqx.field(default=None, converter=_tolerance)

    adjoint: ClassVar[diffrax.AbstractAdjoint] = diffrax.RecursiveCheckpointAdjoint()

    def path(self, t0, t1, dt0, shape, key, levy_area):
        tol = 0.5 * dt0 if self.tol is None else self.tol.astype(dt0.dtype)
        return diffrax.VirtualBrownianTree(t0, t1, tol, shape, key, levy_area=levy_area)


registry.register("brownian", "increments", BrownianIncrements)
registry.register("brownian", "tree", BrownianTree)
