r"""Flow maps: a model that jumps from time `t` to time `s` in one evaluation.

The flow map of a velocity field $v$ is $X(t, s, x) = x_s$ where $x_\tau$ solves
$\dot x_\tau = v(\tau, x_\tau)$ with $x_t = x$. It satisfies $X(t, t, x) = x$,
$\partial_s X(t, s, x)|_{s = t} = v(t, x)$ and the composition
$X(m, s, X(t, m, x)) = X(t, s, x)$. Every flow map here is called per sample as
`flow_map(params, t, s, x, cond)`.

| class | $X(t, s, x)$ | trained by |
| :--- | :--- | :--- |
| `AverageVelocityMap` | $x + (s - t)\,u_\theta(t, s, x)$ | the flow-map losses |
| `EulerMap` | $x + (s - t)\,v_\theta(t, x)$ | flow matching, reflow |

$u_\theta$ is the average velocity over $[t, s]$ (MeanFlow's $u$, a shortcut
model's $s_\theta$); the network reads the start time and the gap, `model_fn(params,
(t, s - t), x, cond)`, so `X(t, t, x) = x` holds exactly whatever the parameters, and
$\partial_s X|_{s = t} = u_\theta(t, t, x)$ is the instantaneous velocity.
"""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._types import VelocityFn
from ..losses import ModelFn

__all__ = [
    "AbstractFlowMap",
    "AverageVelocityMap",
    "EulerMap",
    "InstantaneousField",
    "Teacher",
    "check_time",
]


def check_time(name: str, value: Any) -> None:
    """A concrete time outside `[0, 1]` is a `ValueError` naming it.

    Traced times (inside `jit`) cannot be checked and pass.
    """
    if isinstance(value, jax.core.Tracer):
        return
    arr = jnp.asarray(value)
    if arr.size and not bool(jnp.all((arr >= 0) & (arr <= 1))):
        raise ValueError(
            f"{name} must lie in [0, 1] (t = 0 is the source, t = 1 the data), got "
            f"{value!r}."
        )


class AbstractFlowMap(eqx.Module):
    r"""A per-sample map `X(params, t, s, x, cond)` from time `t` to time `s`.

    Subclasses implement `__call__` and `velocity`, the map's $s \to t$ limit
    $\partial_s X(t, s, x)|_{s = t}$.
    """

    @abc.abstractmethod
    def __call__(
        self,
        params: PyTree,
        t: Float[Array, ""],
        s: Float[Array, ""],
        x: Float[Array, "*event"],
        cond: Any = None,
    ) -> Float[Array, "*event"]:
        """The point at time `s` of the trajectory through `x` at time `t`."""

    @abc.abstractmethod
    def velocity(
        self, params: PyTree, t: Float[Array, ""], x: Float[Array, "*event"], cond=None
    ) -> Float[Array, "*event"]:
        r"""$\partial_s X(t, s, x)$ at $s = t$: the velocity the map integrates."""

    def velocity_field(self) -> "InstantaneousField":
        """The map's velocity as a field `v(t, x, params)` for `sample_ode`."""
        return InstantaneousField(self)


class InstantaneousField(eqx.Module):
    r"""`v(t, x, params) = flow_map.velocity(params, t, x)`, in `sample_ode`'s form.

    With it a flow map's $s \to t$ limit is integrated or scored like any
    velocity model (`sample_ode`, `log_likelihood`).
    """

    flow_map: AbstractFlowMap

    def __call__(self, t, x, params):
        return self.flow_map.velocity(params, t, x)


class AverageVelocityMap(AbstractFlowMap):
    r"""$X(t, s, x) = x + (s - t)\,u_\theta(t, s, x)$: a network of the mean velocity.

    `model_fn(params, times, x, cond)` is a per-sample network whose time input is
    the pair `times = (t, s - t)` (an `flowlab.models.MLP` or `UNet` takes a vector
    of times; `flowlab.flowmaps.init_flow_map` initialises one). The flow-map
    losses (`MeanFlowLoss`, `ShortcutLoss`, the consistency and distillation
    losses) train the `model_fn` that `fit` is given through this map.
    """

    model_fn: ModelFn

    def average_velocity(self, params, t, s, x, cond=None) -> Float[Array, "*event"]:
        r"""$u_\theta(t, s, x)$, the mean velocity of the jump from `t` to `s`."""
        t, s = jnp.asarray(t, x.dtype), jnp.asarray(s, x.dtype)
        return self.model_fn(params, jnp.stack([t, s - t]), x, cond).astype(x.dtype)

    def __call__(self, params, t, s, x, cond=None):
        check_time("t", t)
        check_time("s", s)
        u = self.average_velocity(params, t, s, x, cond)
        return x + (jnp.asarray(s, x.dtype) - jnp.asarray(t, x.dtype)) * u

    def velocity(self, params, t, x, cond=None):
        return self.average_velocity(params, t, t, x, cond)


class EulerMap(AbstractFlowMap):
    r"""$X(t, s, x) = x + (s - t)\,v_\theta(t, x)$: one Euler step of a velocity model.

    The flow map of a model trained by flow matching or reflow
    (`model_fn(params, t, x, cond)`); exact only where trajectories are straight,
    which is what reflow makes them.
    """

    model_fn: ModelFn

    def __call__(self, params, t, s, x, cond=None):
        check_time("t", t)
        check_time("s", s)
        v = self.velocity(params, t, x, cond)
        return x + (jnp.asarray(s, x.dtype) - jnp.asarray(t, x.dtype)) * v

    def velocity(self, params, t, x, cond=None):
        return self.model_fn(params, jnp.asarray(t, x.dtype), x, cond).astype(x.dtype)


class Teacher(eqx.Module):
    """A trained velocity field to distil: `v(t, x, args)` and its `args`.

    `v` has `sample_ode`'s signature (a model that predicts `x1` or the noise
    goes through `flowlab.sampling.velocity_field` first); `args` are its
    parameters. Unconditional: the distillation losses call it without `cond`.
    """

    v: VelocityFn
    args: PyTree = None

    def __call__(self, t: Float[Array, ""], x: Float[Array, "*event"]) -> Array:
        """The teacher's velocity at one sample."""
        return self.v(t, x, self.args)

    def check(self, name: str, event_shape: tuple[int, ...]) -> None:
        """A `ValueError` naming `name` unless the teacher maps `event_shape` to it."""
        x = jax.ShapeDtypeStruct(tuple(event_shape), jnp.float32)
        t = jax.ShapeDtypeStruct((), jnp.float32)
        try:
            out = jax.eval_shape(self.__call__, t, x)
        except Exception as err:  # noqa: BLE001  the network's own shape error
            raise ValueError(
                f"{name}: the teacher does not take samples of the data's event "
                f"shape {tuple(event_shape)} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); distil a teacher "
                "trained on this data."
            ) from None
        if getattr(out, "shape", None) != tuple(event_shape):
            raise ValueError(
                f"{name}: the teacher maps samples of shape {tuple(event_shape)} to "
                f"{getattr(out, 'shape', type(out).__name__)}; a velocity has the "
                "data's event shape."
            )
