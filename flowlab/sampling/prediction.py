r"""The velocity field of a model that predicts $x_1$, $\epsilon$, the score, ….

A model trained with `FlowMatchingLoss(path, prediction="x1")` (or `"x0"`,
`"epsilon"`, `"score"`; `InterpolantLoss(..., "two_field")`) outputs that quantity,
not the velocity that `sample_ode` integrates. `velocity_field(fn, path,
prediction)` converts it with the path, as the target class knows how
(`flowlab.losses.AbstractTarget.to_velocity`: `AffinePath.x1_to_velocity`,
`x0_to_velocity`, `score_to_velocity`, an interpolant's `two_field_to_velocity`),
and is itself a velocity field `v(t, x, args)` for `sample_ode`, `sample_sde`'s
drifts, `log_likelihood` or `reverse_diffusion_sde`.

Those conversions divide by a coefficient that vanishes at an end of $[0, 1]$
($\sigma_1 = 0$ for `"x1"`, $\alpha_0 = 0$ for `"x0"` and `"score"`), where every
solver but Euler evaluates the field (and sampling starts at $t = 0$), so the field
is evaluated at $t$ clipped into $[\epsilon, 1 - \epsilon]$ with the target's
`t_eps` ($10^{-3}$; the velocity's is 0 and its field is the model itself). The
samples then differ from the exact flow's by $O(\epsilon)$.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import _checks, registry
from .._types import VelocityFn
from ..losses._targets import AbstractTarget, as_target, check_velocity
from ..paths import AbstractPath

__all__ = ["velocity_field"]

PredictionFn = Callable[[Float[Array, ""], Float[Array, "*event"], Any], Any]
"""A per-sample model in a vector field's signature, `fn(t, x, args) -> prediction`."""


class _PredictionField(eqx.Module):
    """`v(t, x, args)` from a model's prediction; equal for equal parts.

    Equality lets a second `sample_ode` call with a new but equal field reuse the
    compiled solve (the path's arrays, if any, are traced).
    """

    prediction_fn: PredictionFn
    path: AbstractPath
    target: AbstractTarget = eqx.field(static=True)
    t_eps: float = eqx.field(static=True)

    def __call__(self, t, x, args):
        if self.t_eps > 0:
            t = jnp.clip(t, self.t_eps, 1 - self.t_eps)
        prediction = self.prediction_fn(t, x, args)
        return self.target.to_velocity(self.path, t, x, prediction)


def velocity_field(
    prediction_fn: PredictionFn,
    path: AbstractPath,
    prediction: str | AbstractTarget = "velocity",
    *,
    t_eps: float | None = None,
) -> VelocityFn:
    r"""The velocity field `v(t, x, args)` of a model that predicts `prediction`.

    Args:
        prediction_fn: the model as a per-sample field, `fn(t, x, args)` returning
            its prediction at `(t, x)` (e.g. `lambda t, x, p: model_fn(p, t, x,
            None)`).
        path: the path the model was trained on (e.g. the loss's `path`).
        prediction: a name in `flowlab.registry`'s `"prediction"` table
            (`"velocity"`, `"x1"`, `"x0"`, `"epsilon"`, `"denoiser"`, `"score"`,
            `"two_field"`) or an `flowlab.losses.AbstractTarget` (e.g. the loss's
            `prediction`). All but `"velocity"` need an `AffinePath`, and
            `"two_field"` a stochastic interpolant.
        t_eps: evaluate at $t$ clipped into $[\epsilon, 1 - \epsilon]$; default the
            target's `t_eps` ($10^{-3}$, 0 for `"velocity"`). `0.0` evaluates at
            every $t$ (finite on a path whose conversion is regular there, or with
            `t0`, `t1` inside $(0, 1)$).

    Returns:
        A per-sample velocity field for `sample_ode`, `log_likelihood`, ….

    Raises:
        ValueError: `prediction` is unknown or does not convert to a velocity on
            `path` (the error lists the predictions that do), or `t_eps` is
            outside $[0, 1/2)$.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import paths, sample_ode, schedules
        >>> path = paths.AffinePath(schedules.cond_ot())
        >>> # The exact x1-predictor when every x1 is 2 (data = a point mass):
        >>> v = velocity_field(lambda t, x, args: jnp.full_like(x, 2.0), path, "x1")
        >>> out = sample_ode(v, jnp.zeros((3, 1)), solver="dopri5")
        >>> jnp.allclose(out.x, 2.0, atol=1e-2).item()
        True
    """
    _checks.callables(prediction_fn=prediction_fn)
    _checks.instance_of(
        "path", path, AbstractPath, "flowlab.paths.AbstractPath", "paths.AffinePath"
    )
    target = as_target(prediction, registry.names("prediction"))
    check_velocity(target, path)
    t_eps = target.t_eps if t_eps is None else t_eps
    if not (_checks.is_number(t_eps) and 0.0 <= t_eps < 0.5):
        raise ValueError(f"t_eps must be a float in [0, 0.5), got {t_eps!r}.")
    return _PredictionField(prediction_fn, path, target, float(t_eps))
