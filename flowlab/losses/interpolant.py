r"""Square-loss regressions of a stochastic interpolant's fields.

Albergo, Boffi & Vanden-Eijnden (2023): the velocity $b$, the denoiser $\eta$, the
score $s$, or the two-field pair $(v, \eta)$ of an interpolant
$x_t = \alpha x_0 + \beta x_1 + \gamma z$, each the conditional expectation of its
per-sample target given $x_t$ (see `flowlab.paths.interpolants`).
"""

from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array

from ..paths.interpolants import AbstractInterpolant
from ..time_samplers import TimeSampler, UniformTime
from ._base import AbstractPairLoss, WeightFn
from ._targets import AbstractTarget, as_target, check_target

__all__ = [
    "INTERPOLANT_PREDICTIONS",
    "INTERPOLANT_T_EPS",
    "InterpolantLoss",
    "noise_weight",
]

INTERPOLANT_PREDICTIONS = ("velocity", "denoiser", "score", "two_field")
r"""What an interpolant model may predict: $b$, $\eta$, $s$, or the pair $(v, \eta)$."""

INTERPOLANT_T_EPS = 1e-3
r"""The interpolant losses draw $t \in [\epsilon, 1 - \epsilon]$ by default, where
$\dot\gamma$ of $\gamma = \sqrt{a t(1-t)}$ and the score target $-z/\gamma$ stay
finite."""


def noise_weight(path: AbstractInterpolant) -> Callable[[Array], Array]:
    r"""$\lambda(t) = \gamma(t)^2$ (or $\alpha(t)^2$ one-sided), for the score loss.

    $\lambda \,\|s_\theta - (-z/\gamma)\|^2 = \|\gamma s_\theta + z\|^2$ stays
    bounded as $\gamma \to 0$: [SF]$^2$M's weighting by the noise scale.
    """
    if not isinstance(path, AbstractInterpolant):
        raise TypeError(
            "noise_weight needs a stochastic interpolant (a "
            f"flowlab.paths.AbstractInterpolant), got {type(path).__name__}."
        )

    def weight(t: Array) -> Array:
        return path.noise_scale(t)[0] ** 2

    return weight


def _prediction(value) -> AbstractTarget:
    return as_target(value, INTERPOLANT_PREDICTIONS)


class InterpolantLoss(AbstractPairLoss):
    r"""Square-loss regressions of a stochastic interpolant's fields.

    | `prediction` | model output | per-sample target |
    |---|---|---|
    | `"velocity"` | $b$ | $u_t = \dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z$ |
    | `"denoiser"` | $\eta$ | $z$ |
    | `"score"` | $s$ | $-z / \gamma$ |
    | `"two_field"` | $(v, \eta)$ | $(\dot\alpha x_0 + \dot\beta x_1,\ z)$ |

    (one-sided: the noise is $x_0$ and $\gamma$ reads $\alpha$.) Albergo et al.'s
    objectives $E\int |b|^2 - 2\dot x_t \cdot b$ and $E\int |\eta|^2 - 2 z \cdot
    \eta$ are these square losses times the event size, minus a constant
    ($E|u_t|^2$, $E|z|^2$): the same minimisers, the conditional expectations.

    For `"two_field"` the model returns a pair `(v, eta)` or one array of shape
    `(2, *event)`; the per-sample loss is the sum of the two mean squared errors, and
    `path.two_field_to_velocity(t, x, v, eta)` gives $b = v + \dot\gamma\eta$.

    Attributes:
        path: a stochastic interpolant (`flowlab.paths.AbstractInterpolant`).
        prediction: one of `INTERPOLANT_PREDICTIONS`.
        time_sampler: default uniform on $[10^{-3}, 1 - 10^{-3}]$.
        weight_fn: optional $\lambda(t)$ on each sample's error, e.g.
            `noise_weight(path)` for the score.

    Same interface as `FlowMatchingLoss` (`marginals`, `prepare`, `regress`,
    `__call__`), so `training.make_train_step` and `fit` take it unchanged.
    """

    path: AbstractInterpolant
    prediction: AbstractTarget = eqx.field(
        static=True, default="velocity", converter=_prediction
    )
    time_sampler: TimeSampler = eqx.field(
        static=True,
        default=UniformTime(INTERPOLANT_T_EPS, 1.0 - INTERPOLANT_T_EPS),
    )
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.path, AbstractInterpolant):
            raise TypeError(
                "path must be a stochastic interpolant (flowlab.paths."
                "AbstractInterpolant, e.g. paths.linear_interpolant()), got "
                f"{type(self.path).__name__}; use FlowMatchingLoss for other paths."
            )
        check_target(self.prediction, self.path)
