r"""What a model predicts: the regression target of one path sample.

A loss's `prediction` is one of these small classes (or its name): each knows its
target and which paths give it.

| class | names | target | paths |
| :--- | :--- | :--- | :--- |
| `Velocity()` | `"velocity"` | $u_t$ (`PathSample.ut`) | any |
| `Data()` | `"x1"` | $x_1$ | affine |
| `Noise()` | `"x0"`, `"epsilon"`, `"denoiser"` | the noise: $x_0$ (affine), $z$ (interpolant) | affine, interpolant |
| `Score()` | `"score"` | $-x_0/\sigma_t$ (affine), $-z/\gamma$ (interpolant) | affine, interpolant |
| `TwoField()` | `"two_field"` | $(v, \eta) = (u_t - \dot\gamma z, z)$, stacked | interpolant |
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import registry
from ..paths import AbstractInterpolant, AbstractPath, AffinePath, PathSample

__all__ = ["AbstractTarget", "Data", "Noise", "Score", "TwoField", "Velocity"]


class AbstractTarget(eqx.Module):
    """The target of a prediction; `stacked` when it holds several fields."""

    name: eqx.AbstractVar[str]
    stacked: eqx.AbstractClassVar[bool]
    requirement: eqx.AbstractClassVar[str]  # the paths that give it, in words

    @abc.abstractmethod
    def supports(self, path: AbstractPath) -> bool:
        """Whether `path` gives this target."""

    @abc.abstractmethod
    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*target"]:
        """The target of one path sample."""


class Velocity(AbstractTarget):
    """The path's velocity target $u_t$ (any path)."""

    name: str = eqx.field(static=True, default="velocity")
    stacked: ClassVar[bool] = False
    requirement: ClassVar[str] = "any path"

    def supports(self, path: AbstractPath) -> bool:
        return True

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return ps.ut


class Data(AbstractTarget):
    """The data point $x_1$ (affine paths, whose conversions recover $v$)."""

    name: str = eqx.field(static=True, default="x1")
    stacked: ClassVar[bool] = False
    requirement: ClassVar[str] = "an AffinePath"

    def supports(self, path: AbstractPath) -> bool:
        return isinstance(path, AffinePath)

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return ps.x1


class Noise(AbstractTarget):
    r"""The noise: $x_0$ of an affine path, the denoiser's $z$ of an interpolant."""

    name: str = eqx.field(static=True, default="x0")
    stacked: ClassVar[bool] = False
    requirement: ClassVar[str] = "an AffinePath or a stochastic interpolant"

    def supports(self, path: AbstractPath) -> bool:
        return isinstance(path, AffinePath | AbstractInterpolant)

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return path.noise_target(ps)


class Score(AbstractTarget):
    r"""The conditional score: $-x_0/\sigma_t$ (affine), $-z/\gamma$ (interpolant)."""

    name: str = eqx.field(static=True, default="score")
    stacked: ClassVar[bool] = False
    requirement: ClassVar[str] = "an AffinePath or a stochastic interpolant"

    def supports(self, path: AbstractPath) -> bool:
        return isinstance(path, AffinePath | AbstractInterpolant)

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return path.score_target(ps)


class TwoField(AbstractTarget):
    r"""An interpolant's $(v, \eta)$, stacked on a leading axis of 2."""

    name: str = eqx.field(static=True, default="two_field")
    stacked: ClassVar[bool] = True
    requirement: ClassVar[str] = "a stochastic interpolant"

    def supports(self, path: AbstractPath) -> bool:
        return isinstance(path, AbstractInterpolant)

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "2 *event"]:
        v = path.interpolant_velocity_target(ps)
        return jnp.stack([v, path.denoiser_target(ps)])


for _name, _target in {
    "velocity": Velocity,
    "x1": Data,
    "x0": Noise,
    "epsilon": lambda: Noise("epsilon"),
    "denoiser": lambda: Noise("denoiser"),
    "score": Score,
    "two_field": TwoField,
}.items():
    registry.register("prediction", _name, _target)


def as_target(prediction, allowed: tuple[str, ...]) -> AbstractTarget:
    """The target object of `prediction`: a name in `allowed`, or an object."""
    if isinstance(prediction, str):
        if prediction not in allowed:
            raise ValueError(f"prediction must be one of {allowed}, got {prediction!r}.")
        return registry.build("prediction", prediction)
    if not isinstance(prediction, AbstractTarget):
        raise TypeError(
            f"prediction must be one of {allowed} or a flowlab.losses.AbstractTarget, "
            f"got {type(prediction).__name__}."
        )
    return prediction


def check_target(prediction: AbstractTarget, path: AbstractPath) -> None:
    """Raise unless `path` gives the target of `prediction`."""
    if not prediction.supports(path):
        raise ValueError(
            f"prediction={prediction.name!r} needs {prediction.requirement}; "
            f"{type(path).__name__} supports prediction='velocity'."
        )
