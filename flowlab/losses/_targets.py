r"""What a model predicts: the regression target of one path sample.

A loss's `prediction` is one of these small classes (or its name): each knows its
target and which paths give it.

| class | names | target (affine path; interpolant) |
| :--- | :--- | :--- |
| `Velocity()` | `"velocity"` | $u_t$ (any path) |
| `Data()` | `"x1"` | $x_1$ (affine only) |
| `Noise()` | `"x0"`, `"epsilon"`, `"denoiser"` | $x_0$; $z$ |
| `Score()` | `"score"` | $-x_0/\sigma_t$; $-z/\gamma$ |
| `TwoField()` | `"two_field"` | $(u_t - \dot\gamma z, z)$, stacked (interpolant only) |
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import registry
from ..paths import AbstractInterpolant, AbstractPath, AffinePath, PathSample

__all__ = [
    "AbstractFieldTarget",
    "AbstractNoiseTarget",
    "AbstractTarget",
    "Data",
    "Noise",
    "Score",
    "TwoField",
    "Velocity",
]


class AbstractTarget(eqx.Module):
    """The target of a prediction, for the paths in `paths`.

    `stacked` when it holds several fields (summed after each one's mean squared
    error).
    """

    name: eqx.AbstractClassVar[str]
    stacked: eqx.AbstractClassVar[bool]
    paths: eqx.AbstractClassVar[tuple[type, ...]]

    def supports(self, path: AbstractPath) -> bool:
        """Whether `path` gives this target."""
        return isinstance(path, self.paths)

    @abc.abstractmethod
    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*target"]:
        """The target of one path sample."""


class AbstractFieldTarget(AbstractTarget):
    """A target with the event shape of the data."""

    stacked: ClassVar[bool] = False


class Velocity(AbstractFieldTarget):
    """The path's velocity target $u_t$ (any path)."""

    name: ClassVar[str] = "velocity"
    paths: ClassVar[tuple[type, ...]] = (AbstractPath,)

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return ps.ut


class Data(AbstractFieldTarget):
    """The data point $x_1$; an `AffinePath` converts it to a velocity."""

    name: ClassVar[str] = "x1"
    paths: ClassVar[tuple[type, ...]] = (AffinePath,)

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return ps.x1


class AbstractNoiseTarget(AbstractFieldTarget):
    """A target read from the noise of a sample, which the path defines."""

    paths: ClassVar[tuple[type, ...]] = (AffinePath, AbstractInterpolant)


class Noise(AbstractNoiseTarget):
    r"""The noise: $x_0$ of an affine path, the denoiser's $z$ of an interpolant.

    Its names are `"x0"`, `"epsilon"` and `"denoiser"`.
    """

    name: ClassVar[str] = "x0"

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return path.noise_target(ps)


class Score(AbstractNoiseTarget):
    r"""The conditional score: $-x_0/\sigma_t$ (affine), $-z/\gamma$ (interpolant)."""

    name: ClassVar[str] = "score"

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return path.score_target(ps)


class TwoField(AbstractTarget):
    r"""An interpolant's $(v, \eta)$, stacked on a leading axis of 2."""

    name: ClassVar[str] = "two_field"
    stacked: ClassVar[bool] = True
    paths: ClassVar[tuple[type, ...]] = (AbstractInterpolant,)

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "2 *event"]:
        v = path.interpolant_velocity_target(ps)
        return jnp.stack([v, path.denoiser_target(ps)])


for _name, _target in {
    "velocity": Velocity,
    "x1": Data,
    "x0": Noise,
    "epsilon": Noise,
    "denoiser": Noise,
    "score": Score,
    "two_field": TwoField,
}.items():
    registry.register("prediction", _name, _target)


def as_target(prediction, allowed: tuple[str, ...]) -> AbstractTarget:
    """The target object of `prediction`: a name in `allowed`, or an object."""
    if isinstance(prediction, str):
        if prediction not in allowed:
            raise ValueError(
                f"prediction must be one of {allowed}, got {prediction!r}."
            )
        return registry.build("prediction", prediction)
    if not isinstance(prediction, AbstractTarget):
        raise TypeError(
            f"prediction must be one of {allowed} or a flowlab.losses.AbstractTarget, "
            f"got {type(prediction).__name__}."
        )
    return prediction


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "AEIOU" else f"a {name}"


def check_target(prediction: AbstractTarget, path: AbstractPath) -> None:
    """Raise unless `path` gives the target of `prediction`."""
    if not prediction.supports(path):
        needs = " or ".join(_article(p.__name__) for p in prediction.paths)
        raise ValueError(
            f"prediction={prediction.name!r} needs {needs}; "
            f"{type(path).__name__} supports prediction='velocity'."
        )
