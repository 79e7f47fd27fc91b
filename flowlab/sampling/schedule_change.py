r"""Sample a model trained on one Gaussian schedule through another.

Two affine paths $x_t = \alpha_t x_1 + \sigma_t x_0$ with the same data and the same
standard normal source differ only by a change of time and a scale: at target time
$r$ the target path has the signal-to-noise ratio $\alpha^B_r/\sigma^B_r$ that the
trained one has at $t_r = \mathrm{snr}_A^{-1}(\alpha^B_r/\sigma^B_r)$, so
$x^B_r = s_r\, x^A_{t_r}$ with $s_r = \sigma^B_r/\sigma^A_{t_r} =
\alpha^B_r/\alpha^A_{t_r}$ (equal in law, and sample by sample for a shared draw
$(x_0, x_1)$). A velocity field $v_A$ trained on schedule $A$ is therefore the
velocity field of schedule $B$ after the scale-time transform

$$v_B(r, x) = \frac{\dot s_r}{s_r}\,x + s_r \dot t_r\,
v_A\Big(t_r, \frac{x}{s_r}\Big).$$

`change_schedule(v, trained, target)` builds $v_B$; `schedule_change_times` gives
$t_r$, $s_r$ and their derivatives. The derivatives are closed forms of the two
schedules' $(\alpha, \sigma, \dot\alpha, \dot\sigma)$, so they need no
differentiable `snr_inverse` (the generic `Schedule`'s is a bisection).
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .. import _checks
from .._types import VelocityFn
from ..schedules import AbstractSchedule

__all__ = ["ScheduleChangeTimes", "change_schedule", "schedule_change_times"]

DEFAULT_T_EPS = 1e-3
"""`change_schedule`'s clip where the transform is singular at an end of $[0, 1]$."""


class ScheduleChangeTimes(NamedTuple):
    r"""The trained time and scale at one target time $r$, with their derivatives.

    Attributes:
        t: $t_r$, the trained schedule's time with the target's SNR at $r$.
        scale: $s_r$, with $x^B_r = s_r x^A_{t_r}$.
        d_t: $\dot t_r = dt_r/dr$.
        d_scale: $\dot s_r = ds_r/dr$.
    """

    t: Float[Array, ""]
    scale: Float[Array, ""]
    d_t: Float[Array, ""]
    d_scale: Float[Array, ""]


def _check_schedules(trained, target):
    for name, value in (("trained", trained), ("target", target)):
        if isinstance(value, AbstractSchedule):
            continue
        hint = (
            f" (this has a schedule: pass {name}.schedule)"
            if isinstance(getattr(value, "schedule", None), AbstractSchedule)
            else ""
        )
        raise TypeError(
            f"{name} must be a flowlab.schedules.AbstractSchedule (e.g. "
            f"schedules.cond_ot()), got {type(value).__name__}{hint}."
        )


def _times(
    trained: AbstractSchedule, target: AbstractSchedule, r: Float[Array, ""]
) -> ScheduleChangeTimes:
    b = target(r)
    # t_r from the target's SNR, without dividing by zero at the ends: SNR 0 (where
    # alpha^B = 0) is t = 0 and SNR infinity (sigma^B = 0) is t = 1; an SNR outside
    # the trained schedule's range maps to its nearer end (the clip).
    interior = (b.alpha > 0) & (b.sigma > 0)
    snr = jnp.where(interior, b.alpha, 1) / jnp.where(interior, b.sigma, 1)
    t = jnp.where(interior, trained.snr_inverse(snr), jnp.where(b.sigma > 0, 0, 1))
    t = jnp.clip(t, 0, 1).astype(b.alpha.dtype)
    a = trained(t)
    # s_r from the larger of alpha^A, sigma^A: finite at both ends (sigma^A_1 = 0,
    # alpha^A_0 = 0), and the two quotients agree in between.
    use_alpha = a.alpha >= a.sigma
    scale = jnp.where(use_alpha, b.alpha, b.sigma) / jnp.where(
        use_alpha, a.alpha, a.sigma
    )
    # D_A = sigma_A^2 d snr_A/dt. From snr_A(t_r) = snr_B(r):
    # s dt/dr = (d_alpha^B sigma^A - alpha^A d_sigma^B) / D_A and
    # ds/dr = (d_alpha^A d_sigma^B - d_sigma^A d_alpha^B) / D_A.
    d_a = a.d_alpha * a.sigma - a.alpha * a.d_sigma
    d_t = (b.d_alpha * a.sigma - a.alpha * b.d_sigma) / (d_a * scale)
    d_scale = (a.d_alpha * b.d_sigma - a.d_sigma * b.d_alpha) / d_a
    return ScheduleChangeTimes(t, scale, d_t, d_scale)


def schedule_change_times(
    trained: AbstractSchedule, target: AbstractSchedule, r: Float[ArrayLike, ""]
) -> ScheduleChangeTimes:
    r"""The trained time $t_r$ and scale $s_r$ at target time $r$, and $d/dr$ of them.

    $t_r = \mathrm{snr}_A^{-1}(\alpha^B_r/\sigma^B_r)$ (by `trained.snr_inverse`)
    and $s_r = \sigma^B_r/\sigma^A_{t_r} = \alpha^B_r/\alpha^A_{t_r}$ (the quotient
    with the larger denominator), so that $x^B_r = s_r x^A_{t_r}$. With
    $D_A = \dot\alpha^A\sigma^A - \alpha^A\dot\sigma^A$ at $t_r$ (that is,
    $(\sigma^A)^2$ times the trained SNR's derivative) and the target's
    coefficients at $r$:

    $$\dot t_r = \frac{\dot\alpha^B\sigma^A - \alpha^A\dot\sigma^B}{s_r D_A},
    \qquad \dot s_r = \frac{\dot\alpha^A\dot\sigma^B -
    \dot\sigma^A\dot\alpha^B}{D_A}.$$

    ($\dot t_r$ is the ratio of the SNRs' derivatives, $\dot t_r =
    \mathrm{snr}_B'(r)/\mathrm{snr}_A'(t_r)$, written without dividing by
    $\sigma^B_r$, which vanishes at $r = 1$.) A target SNR outside the trained
    schedule's range gives the trained schedule's nearer end, $t_r \in \{0, 1\}$.

    Args:
        trained: the schedule $A$ the model was trained on.
        target: the schedule $B$ to sample through.
        r: a scalar target time.

    Returns:
        A `ScheduleChangeTimes` `(t, scale, d_t, d_scale)`.

    Raises:
        TypeError: `trained` or `target` is not a `flowlab.schedules.AbstractSchedule`.
        ValueError: `r` is not a scalar.

    Example:
        >>> from flowlab import schedules
        >>> out = schedule_change_times(schedules.cond_ot(), schedules.cosine(), 0.5)
        >>> round(float(out.t), 6), round(float(out.scale), 6)  # snr 1: t = 1/2
        (0.5, 1.414214)
    """
    _check_schedules(trained, target)
    return _times(trained, target, _checks.scalar_time(r, "r"))


def _singular_at_an_end(trained: AbstractSchedule, target: AbstractSchedule) -> bool:
    """Whether `_times` is not finite at r = 0 or r = 1 (False if traced)."""
    try:
        for r in (0.0, 1.0):
            times = _times(trained, target, jnp.asarray(r, jnp.result_type(float)))
            if not all(bool(jnp.isfinite(value)) for value in times):
                return True
    except jax.errors.ConcretizationTypeError:  # schedules built inside jit
        return False
    return False


class _ScheduleChangeField(eqx.Module):
    """`v_B(r, x, args)` from `v_A`; equal for equal parts.

    Equality lets a second `sample_ode` call with a new but equal field reuse the
    compiled solve (the schedules' arrays, if any, are traced).
    """

    velocity_fn: VelocityFn
    trained: AbstractSchedule
    target: AbstractSchedule
    t_eps: float = eqx.field(static=True)

    def __call__(self, t, x, args):
        r = _checks.scalar_time(t)
        if self.t_eps > 0:
            r = jnp.clip(r, self.t_eps, 1 - self.t_eps)
        c = _times(self.trained, self.target, r)
        y = x / c.scale
        v = self.velocity_fn(c.t, y, args)
        # (ds/dr / s) x = ds/dr * y.
        return c.d_scale * y + (c.scale * c.d_t) * v


def change_schedule(
    v: VelocityFn,
    trained: AbstractSchedule,
    target: AbstractSchedule,
    *,
    t_eps: float | None = None,
) -> VelocityFn:
    r"""The velocity field of a model trained on `trained`, in the time of `target`.

    A field $v_A$ trained on the affine path $x_t = \alpha^A_t x_1 + \sigma^A_t x_0$
    gives the field of the path with schedule $B$ by the scale-time transform

    $$v_B(r, x) = \frac{\dot s_r}{s_r}\,x + s_r \dot t_r\,
    v_A\Big(t_r, \frac{x}{s_r}\Big),\qquad
    t_r = \mathrm{snr}_A^{-1}\Big(\frac{\alpha^B_r}{\sigma^B_r}\Big),\quad
    s_r = \frac{\sigma^B_r}{\sigma^A_{t_r}} = \frac{\alpha^B_r}{\alpha^A_{t_r}},$$

    with $t_r, s_r$ and their derivatives from `schedule_change_times` (closed
    forms of both schedules' coefficients). Equivalently, the model's predictions
    $\hat x_1, \hat x_0$ at equal SNR are recombined with the target's
    coefficients: $v_B = \dot\alpha^B_r \hat x_1 + \dot\sigma^B_r \hat x_0$.

    For any field $v_A$ (not only an exact one) the solutions correspond:
    $X^B_r = s_r X^A_{t_r}$, the same flow in another time and scale. With $t_0 = 0$,
    $t_1 = 1$ and $s_0 = s_1 = 1$ (schedules that start exactly at the source and
    end exactly at the data) the ODE of $v_B$ from $r = 0$ to 1 carries each start
    point to the sample that $v_A$'s carries it to; numerically to solver
    tolerance, with other steps (so a fixed-step solver's error changes).

    Both schedules must be affine-path schedules with a standard normal source
    (Gaussian paths $\mathcal N(\alpha_t x_1, \sigma_t^2 I)$). For a schedule whose
    source end is not exactly $\mathcal N(0, I)$ the start points differ
    slightly: VP's $\alpha_0 = e^{-5}$ (for the default betas), so a target SNR
    below the trained schedule's smallest (sampling a VP-trained model through
    Cond-OT near $r = 0$) uses $t_r = 0$ and the transform is approximate there;
    likewise Lipman's $\sigma_1 = \sigma_{min}$ near $r = 1$.

    At $r = 0$ and $r = 1$ the field is finite where the transform is regular
    there, e.g. between `cond_ot`, `cosine` and a `Schedule` as the target, and
    from `polynomial(n)` at $r = 1$. It is not at an end where the trained SNR's
    derivative vanishes ($D_A = 0$: `polynomial(n > 1)` or a smoothstep
    `Schedule` trained, at $r = 0$, where $v_A(0, \cdot)$ holds no $\hat x_1$)
    or where the target's $\dot\sigma$ is infinite (`linear_vp`, `vp` as the
    target, at $r = 1$, where $\dot\sigma^B \hat x_0$ is $\infty \cdot 0$). There
    the field is evaluated at $r$ clipped into $[\epsilon, 1 - \epsilon]$ by
    default ($\epsilon = 10^{-3}$, `DEFAULT_T_EPS`), and the samples differ from
    the trained sampler's by $O(\epsilon)$.

    Args:
        v: the trained per-sample field `v(t, x, args)` in the trained schedule's
            time (e.g. `lambda t, x, p: model_fn(p, t, x, None)`, or
            `velocity_field(...)` of a model that predicts $x_1$ or $\epsilon$).
        trained: the schedule `v` was trained on (e.g. `path.schedule`).
        target: the schedule to sample through.
        t_eps: evaluate at $r$ clipped into $[\epsilon, 1 - \epsilon]$. By
            default 0 (every $r$) where $t_r$, $s_r$ and their derivatives are
            finite at $r = 0$ and $r = 1$, else `DEFAULT_T_EPS` ($10^{-3}$);
            `0.0` evaluates at every $r$ (then integrate over `t0`, `t1` inside
            the singular ends). Schedules built inside `jax.jit` are not checked:
            the default is 0.

    Returns:
        The per-sample field `v_B(r, x, args)` (`args` is passed to `v`), an
        `equinox.Module` equal to any other built from equal parts, so a second
        `sample_ode` call with a new one reuses the compiled solve.

    Raises:
        TypeError: `v` is not callable, or `trained` or `target` is not a
            `flowlab.schedules.AbstractSchedule`.
        ValueError: `t_eps` is not a float in $[0, 1/2)$.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import sample_ode, schedules
        >>> # The exact Cond-OT field for data at the point 2: v = (2 - x) / (1 - t).
        >>> v = lambda t, x, args: (2.0 - x) / jnp.maximum(1 - t, 1e-12)
        >>> v_cos = change_schedule(v, schedules.cond_ot(), schedules.cosine())
        >>> out = sample_ode(v_cos, jnp.zeros((3, 1)), solver="dopri5", t1=0.5)
        >>> # At r = 1/2 the cosine path is at alpha_r x_1 = sin(pi / 4) * 2.
        >>> jnp.allclose(out.x, 2.0 * jnp.sin(jnp.pi / 4), atol=1e-4).item()
        True
    """
    _checks.callables(v=v)
    _check_schedules(trained, target)
    if t_eps is not None and not (_checks.is_number(t_eps) and 0.0 <= t_eps < 0.5):
        raise ValueError(f"t_eps must be a float in [0, 0.5), got {t_eps!r}.")
    if t_eps is None:
        t_eps = DEFAULT_T_EPS if _singular_at_an_end(trained, target) else 0.0
    return _ScheduleChangeField(v, trained, target, float(t_eps))
