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

Each also turns a trained model's prediction back into the velocity that sampling
integrates, `target.to_velocity(path, t, xt, prediction)`, on the paths in
`velocity_paths` (`flowlab.sampling.velocity_field` builds the field from it):

| class | velocity from the prediction | on |
| :--- | :--- | :--- |
| `Velocity()` | the prediction itself | any path |
| `Data()` | `path.x1_to_velocity` (divides by $\sigma_t$) | `AffinePath` |
| `Noise()` | `path.x0_to_velocity` (divides by $\alpha_t$) | `AffinePath` |
| `Score()` | `path.score_to_velocity` (divides by $\alpha_t$) | `AffinePath` |
| `TwoField()` | `path.two_field_to_velocity`, $v + \dot\gamma\eta$ | interpolants |

All conversions but the velocity's are singular where the coefficient they
divide by vanishes (for most schedules $\sigma_1 = 0$, $\alpha_0 = 0$; for
$\gamma = \sqrt{t(1-t)}$, $\dot\gamma$ at both ends), so those targets have
`t_eps = 1e-3`: sampling evaluates them at times clipped into
$[\epsilon, 1 - \epsilon]$ (see `flowlab.sampling.velocity_field`).
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from .. import registry
from ..paths import AbstractInterpolant, AbstractPath, AffinePath, PathSample

__all__ = [
    "SAMPLING_T_EPS",
    "AbstractFieldTarget",
    "AbstractNoiseTarget",
    "AbstractTarget",
    "Data",
    "Noise",
    "Score",
    "TwoField",
    "Velocity",
]


SAMPLING_T_EPS = 1e-3
r"""The $\epsilon$ of the targets whose velocity conversion is singular at $t = 0$ or
$t = 1$: sampling evaluates them at times clipped into $[\epsilon, 1 - \epsilon]$."""

_X = Float[Array, "*event"]


class AbstractTarget(eqx.Module):
    """The target of a prediction, for the paths in `paths`.

    `stacked` when it holds several fields (summed after each one's mean squared
    error). `to_velocity` turns a prediction into the velocity on the paths in
    `velocity_paths`; `t_eps` is how far from $t = 0$ and $t = 1$ sampling keeps
    its evaluations (`0.0` where the conversion is regular on all of $[0, 1]$).
    """

    name: eqx.AbstractClassVar[str]
    stacked: eqx.AbstractClassVar[bool]
    paths: eqx.AbstractClassVar[tuple[type, ...]]
    velocity_paths: eqx.AbstractClassVar[tuple[type, ...]]
    t_eps: eqx.AbstractClassVar[float]

    def supports(self, path: AbstractPath) -> bool:
        """Whether `path` gives this target."""
        return isinstance(path, self.paths)

    def gives_velocity(self, path: AbstractPath) -> bool:
        """Whether `to_velocity` converts this prediction on `path`."""
        return isinstance(path, self.velocity_paths)

    @abc.abstractmethod
    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*target"]:
        """The target of one path sample."""

    @abc.abstractmethod
    def to_velocity(
        self,
        path: AbstractPath,
        t: Float[ArrayLike, ""],
        xt: _X,
        prediction: PyTree[Float[Array, "*target"]],
    ) -> _X:
        """The velocity at `(t, xt)` from a model's `prediction` there (one sample)."""


class AbstractFieldTarget(AbstractTarget):
    """A target with the event shape of the data."""

    stacked: ClassVar[bool] = False


class Velocity(AbstractFieldTarget):
    """The path's velocity target $u_t$ (any path)."""

    name: ClassVar[str] = "velocity"
    paths: ClassVar[tuple[type, ...]] = (AbstractPath,)
    velocity_paths: ClassVar[tuple[type, ...]] = (AbstractPath,)
    t_eps: ClassVar[float] = 0.0

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return ps.ut

    def to_velocity(self, path: AbstractPath, t, xt: _X, prediction: _X) -> _X:
        """The prediction itself."""
        return prediction


class Data(AbstractFieldTarget):
    """The data point $x_1$; an `AffinePath` converts it to a velocity."""

    name: ClassVar[str] = "x1"
    paths: ClassVar[tuple[type, ...]] = (AffinePath,)
    velocity_paths: ClassVar[tuple[type, ...]] = (AffinePath,)
    t_eps: ClassVar[float] = SAMPLING_T_EPS

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return ps.x1

    def to_velocity(self, path: AffinePath, t, xt: _X, prediction: _X) -> _X:
        r"""`path.x1_to_velocity`; it divides by $\sigma_t$ (0 at $t = 1$ mostly)."""
        return path.x1_to_velocity(t, xt, prediction)


class AbstractNoiseTarget(AbstractFieldTarget):
    """A target read from the noise of a sample, which the path defines."""

    paths: ClassVar[tuple[type, ...]] = (AffinePath, AbstractInterpolant)
    # An interpolant's velocity b needs more than its noise (two_field has both).
    velocity_paths: ClassVar[tuple[type, ...]] = (AffinePath,)
    t_eps: ClassVar[float] = SAMPLING_T_EPS


class Noise(AbstractNoiseTarget):
    r"""The noise: $x_0$ of an affine path, the denoiser's $z$ of an interpolant.

    Its names are `"x0"`, `"epsilon"` and `"denoiser"`.
    """

    name: ClassVar[str] = "x0"

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return path.noise_target(ps)

    def to_velocity(self, path: AffinePath, t, xt: _X, prediction: _X) -> _X:
        r"""`path.x0_to_velocity`; it divides by $\alpha_t$ (0 at $t = 0$ mostly)."""
        return path.x0_to_velocity(t, xt, prediction)


class Score(AbstractNoiseTarget):
    r"""The conditional score: $-x_0/\sigma_t$ (affine), $-z/\gamma$ (interpolant)."""

    name: ClassVar[str] = "score"

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "*event"]:
        return path.score_target(ps)

    def to_velocity(self, path: AffinePath, t, xt: _X, prediction: _X) -> _X:
        r"""`path.score_to_velocity` (standard normal source); divides by $\alpha_t$."""
        return path.score_to_velocity(t, xt, prediction)


class TwoField(AbstractTarget):
    r"""An interpolant's $(v, \eta)$, stacked on a leading axis of 2."""

    name: ClassVar[str] = "two_field"
    stacked: ClassVar[bool] = True
    paths: ClassVar[tuple[type, ...]] = (AbstractInterpolant,)
    velocity_paths: ClassVar[tuple[type, ...]] = (AbstractInterpolant,)
    t_eps: ClassVar[float] = SAMPLING_T_EPS

    def __call__(self, path: AbstractPath, ps: PathSample) -> Float[Array, "2 *event"]:
        v = path.interpolant_velocity_target(ps)
        return jnp.stack([v, path.denoiser_target(ps)])

    def to_velocity(
        self,
        path: AbstractInterpolant,
        t,
        xt: _X,
        prediction: tuple[_X, _X] | Float[Array, "2 *event"],
    ) -> _X:
        r"""$b = v + \dot\gamma\eta$ from a pair `(v, eta)` or its stack.

        `path.two_field_to_velocity`; $\dot\gamma$ of $\gamma = \sqrt{t(1-t)}$ is
        infinite at both ends.
        """
        v, eta = prediction
        return path.two_field_to_velocity(t, xt, v, eta)


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


def check_velocity(prediction: AbstractTarget, path: AbstractPath) -> None:
    """Raise unless `prediction` converts to a velocity on `path`."""
    if not prediction.gives_velocity(path):
        needs = " or ".join(_article(p.__name__) for p in prediction.velocity_paths)
        givers = [
            name
            for name in registry.names("prediction")
            if registry.build("prediction", name).gives_velocity(path)
        ]
        raise ValueError(
            f"prediction={prediction.name!r} converts to a velocity only on {needs}, "
            f"got path={type(path).__name__}; a model on this path can be sampled "
            f"with prediction={' or '.join(map(repr, givers))}."
        )


def check_target(prediction: AbstractTarget, path: AbstractPath) -> None:
    """Raise unless `path` gives the target of `prediction`."""
    if not prediction.supports(path):
        needs = " or ".join(_article(p.__name__) for p in prediction.paths)
        raise ValueError(
            f"prediction={prediction.name!r} needs {needs}; "
            f"{type(path).__name__} supports prediction='velocity'."
        )
