r"""Classifier-free guidance: a conditional and an unconditional field, mixed.

A model trained with condition dropout (`flowlab.training.make_train_step(...,
condition=..., cond_dropout=p)`) is both $v(t, x \mid c)$ and, with the null
condition, $v(t, x \mid \varnothing)$. Guidance with scale $w$ integrates

$$v_w(t, x \mid c) = v(t, x \mid \varnothing)
  + w\,\bigl(v(t, x \mid c) - v(t, x \mid \varnothing)\bigr),$$

which is the conditional field at $w = 1$, the unconditional one at $w = 0$, and
for $w > 1$ pushes samples towards where the condition is likely. With an
`interval` $[t_\text{lo}, t_\text{hi}]$, $w$ applies only for $t$ inside it, and
outside it the field is the plain conditional one ($w = 1$), as in guidance on a
limited interval (Kynkäänniemi et al., 2024).

A per-row condition rides in the ODE state `(x, c)` with zero velocity, as in
`flowlab.sampling.conditioned_field`; `field.state(x0, cond)` builds it (labels
are carried as floats and rounded back before the model sees them).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .. import _checks
from ..conditioning import AbstractCondition
from ..losses._targets import AbstractTarget
from ..paths import AbstractPath
from .prediction import velocity_field

__all__ = ["guided_field"]

ModelFn = Callable[[Any, Array, Array, Any], Array]


class _CondModel(eqx.Module):
    """`fn(t, x, (params, cond)) = model_fn(params, t, x, cond)`, equal per model."""

    model_fn: ModelFn = eqx.field(static=True)

    def __call__(self, t, x, args):
        params, cond = args
        return self.model_fn(params, t, x, cond)


class GuidedField(eqx.Module):
    r"""The guided field `v(t, (x, c), params)` of `guided_field`.

    Equal for equal parts, and the scale and interval are arrays, so a second
    `sample_ode` call with a new scale reuses the compiled solve.

    Attributes:
        field: the velocity field `field(t, x, (params, cond))` of the model.
        condition: the model's condition.
        scale: the guidance scale $w$.
        interval: $(t_\text{lo}, t_\text{hi})$, where the scale applies.
    """

    field: Callable[[Array, Array, Any], Array]
    condition: AbstractCondition
    scale: Float[Array, ""]
    interval: Float[Array, " 2"]

    def state(
        self, x0: Float[Array, "n *event"], cond: ArrayLike
    ) -> tuple[Float[Array, "n *event"], Float[Array, "n ..."]]:
        """The ODE state `(x0, c)` of a batch and one condition per row.

        Args:
            x0: the base samples, batch-first.
            cond: one (not encoded) condition per row, e.g. integer labels `(n,)`
                for `Labels(K)`; checked by `condition.check`.

        Returns:
            `(x0, c)` with `c` the encoded conditions as floats of `x0`'s dtype.
        """
        x0 = jnp.asarray(x0)
        if x0.ndim < 1:
            raise ValueError("x0 must be batch-first, (n, *event_shape).")
        cond = self.condition.check("cond", cond, x0.shape[0])
        c = self.condition.to_state(self.condition.encode(cond), x0.dtype)
        return x0, c

    def __call__(self, t, state, params):
        x, c = state
        cond = self.condition.from_state(c)
        null = self.condition.null(1)[0].astype(cond.dtype)
        # One batched model call for the conditional and the null row.
        both = jax.vmap(lambda cc: self.field(t, x, (params, cc)))(
            jnp.stack([cond, null])
        )
        v_cond, v_null = both[0], both[1]
        lo, hi = self.interval[0], self.interval[1]
        w = jnp.where((t >= lo) & (t <= hi), self.scale, 1.0).astype(v_cond.dtype)
        return v_null + w * (v_cond - v_null), jnp.zeros_like(c)


def _check_interval(interval) -> tuple[float, float]:
    if interval is None:
        return 0.0, 1.0
    try:
        lo, hi = interval
    except (TypeError, ValueError):
        raise ValueError(
            f"interval must be a pair (t_lo, t_hi) in [0, 1], got {interval!r}."
        ) from None
    if not (_checks.is_number(lo) and _checks.is_number(hi) and 0.0 <= lo <= hi <= 1.0):
        raise ValueError(
            "interval must be a pair (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1 "
            f"(the times where the guidance scale applies), got {interval!r}; "
            "e.g. interval=(0.2, 1.0)."
        )
    return float(lo), float(hi)


def guided_field(
    model_fn: ModelFn,
    condition: AbstractCondition | None,
    scale: float = 1.0,
    *,
    interval: tuple[float, float] | None = None,
    path: AbstractPath | None = None,
    prediction: str | AbstractTarget = "velocity",
    t_eps: float | None = None,
) -> GuidedField:
    r"""The classifier-free guided velocity field of a conditional model.

    $v_w = v_\varnothing + w\,(v_c - v_\varnothing)$ for $t$ in `interval`, and
    $v_c$ outside it; both fields come from one batched call of `model_fn` on the
    row's encoded condition and the null one (`condition.null`).

    A model that predicts $x_1$, $\epsilon$, the score, … is first turned into a
    velocity with `flowlab.sampling.velocity_field(..., path, prediction)`, and the
    velocities are combined. On an affine path it makes no difference whether the
    predictions or the velocities are combined: the conversion is affine in the
    prediction $f$, $v = a_t x + b_t f$, and the weights $1 - w$ and $w$ sum to one,
    so $a_t x + b_t(f_\varnothing + w(f_c - f_\varnothing)) = v_\varnothing + w(v_c -
    v_\varnothing)$.

    Args:
        model_fn: the per-sample model `model_fn(params, t, x, cond)`, trained on
            `condition.encode(cond)` with dropout to `condition.null`.
        condition: the model's `flowlab.conditioning.AbstractCondition` (e.g.
            `Labels(K)`); guidance needs one.
        scale: the guidance scale $w$ (1: the conditional model, 0: the
            unconditional one).
        interval: `(t_lo, t_hi)` with $0 \le t_\text{lo} \le t_\text{hi} \le 1$:
            the scale applies for $t_\text{lo} \le t \le t_\text{hi}$ and $w = 1$
            elsewhere; default all of $[0, 1]$.
        path: the path the model was trained on; needed unless `prediction` is
            `"velocity"`.
        prediction: what the model predicts, as for `velocity_field`.
        t_eps: as for `velocity_field`.

    Returns:
        A `GuidedField`: a velocity field `v(t, (x, c), params)` on the state
        `v.state(x0, cond)`, for `flowlab.sample_ode(v, v.state(x0, cond),
        params)`, whose `.x[0]` are the samples.

    Raises:
        ValueError: `condition` is `None` (a model without a condition cannot be
            guided), `scale` is not a finite number, `interval` is outside
            $[0, 1]$ or reversed, or `prediction` does not convert on `path`.
        TypeError: `model_fn` is not callable or `condition` is not a condition.

    Example:
        >>> import jax.numpy as jnp, flowlab as fl
        >>> from flowlab.conditioning import Labels
        >>> # A toy model: velocity = the label's value, 0 for the null label 2.
        >>> model = lambda p, t, x, c: jnp.where(c < 2, c, 0.0) * jnp.ones_like(x)
        >>> v = fl.sampling.guided_field(model, Labels(2), scale=3.0)
        >>> out = fl.sample_ode(v, v.state(jnp.zeros((2, 1)), jnp.array([0, 1])))
        >>> out.x[0].ravel().round(6).tolist()
        [0.0, 3.0]
    """
    if not callable(model_fn):
        raise TypeError("model_fn must be a callable model_fn(params, t, x, cond).")
    if condition is None:
        raise ValueError(
            "guidance needs the model's condition, got condition=None: a model "
            "trained without a condition has no conditional and unconditional "
            "fields to mix; pass e.g. flowlab.conditioning.Labels(num_classes)."
        )
    _checks.instance_of(
        "condition",
        condition,
        AbstractCondition,
        "flowlab.conditioning.AbstractCondition",
        "Labels(10)",
    )
    if not (_checks.is_number(scale) and jnp.isfinite(scale)):
        raise ValueError(f"scale must be a finite float (e.g. 2.0), got {scale!r}.")
    lo, hi = _check_interval(interval)
    field = _CondModel(model_fn)
    if path is not None or prediction != "velocity":
        if path is None:
            raise ValueError(
                f"prediction={prediction!r} converts to a velocity with the path the "
                "model was trained on; pass path=."
            )
        field = velocity_field(field, path, prediction, t_eps=t_eps)
    return GuidedField(
        field,
        condition,
        jnp.asarray(float(scale)),
        jnp.asarray([lo, hi]),
    )
