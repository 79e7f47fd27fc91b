r"""Affine (Gaussian) paths $x_t = \alpha_t x_1 + \sigma_t x_0$.

With a schedule $(\alpha, \sigma, \dot\alpha, \dot\sigma)$ the conditional velocity is
$u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0$, and a model's prediction of one of
$v$, $x_1$, $x_0$ (the noise $\epsilon$ for a Gaussian source) or the score determines
the others at a given $(t, x_t)$:

$$\hat x_1 = \frac{\sigma v - \dot\sigma x_t}{\sigma\dot\alpha - \dot\sigma\alpha},
\qquad
\hat x_0 = \frac{\dot\alpha x_t - \alpha v}{\dot\alpha\sigma - \alpha\dot\sigma},
\qquad
\nabla \log p_t(x_t) = -\hat x_0 / \sigma_t.$$

All conversions act on one sample and take `(t, xt, prediction)`, in the order of a
vector field `v(t, x, args)`.
"""

from jaxtyping import Array, ArrayLike, Float

from .. import registry
from ..schedules import AbstractSchedule
from ._base import AbstractScheduledPath, Key, PathSample, Point, Time, check_pair

__all__ = ["AffinePath"]

_X = Float[Array, "*event"]
_T = Float[ArrayLike, ""]


class AffinePath(AbstractScheduledPath):
    r"""The Gaussian path $x_t = \alpha_t x_1 + \sigma_t x_0$ of a schedule.

    Attributes:
        schedule: any `flowlab.schedules.AbstractSchedule`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import paths, schedules
        >>> path = paths.AffinePath(schedules.cond_ot())
        >>> ps = path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 0.25)
        >>> ps.xt.tolist(), ps.ut.tolist()
        ([0.25, 0.25], [1.0, 1.0])
    """

    schedule: AbstractSchedule

    def sample(self, key: Key, x0: Point, x1: Point, t: Time) -> PathSample:
        """Point and target velocity at time `t` (deterministic; `key` is unused)."""
        del key
        x0, x1, t = check_pair(x0, x1, t)
        s = self.schedule(t)
        xt = s.alpha * x1 + s.sigma * x0
        ut = s.d_alpha * x1 + s.d_sigma * x0
        return PathSample(t=t, x0=x0, x1=x1, xt=xt, ut=ut)

    def noise_target(self, ps: PathSample) -> _X:
        r"""The noise of a sample, $x_0$ (the source draw): a noise model's target."""
        return ps.x0

    def score_target(self, ps: PathSample) -> _X:
        r"""The conditional score $-x_0/\sigma_t$, for a standard normal source."""
        return -ps.x0 / self.schedule(ps.t).sigma

    def velocity_to_x1(self, t: _T, xt: _X, v: _X) -> _X:
        r"""Data prediction $\hat x_1$ from a velocity."""
        s = self.schedule(t)
        return (s.sigma * v - s.d_sigma * xt) / (
            s.sigma * s.d_alpha - s.d_sigma * s.alpha
        )

    def velocity_to_x0(self, t: _T, xt: _X, v: _X) -> _X:
        r"""$\hat x_0$ from a velocity."""
        s = self.schedule(t)
        return (s.d_alpha * xt - s.alpha * v) / (
            s.d_alpha * s.sigma - s.alpha * s.d_sigma
        )

    def x1_to_velocity(self, t: _T, xt: _X, x1: _X) -> _X:
        r"""Velocity from a data prediction $\hat x_1$; needs $\sigma_t > 0$."""
        s = self.schedule(t)
        return (
            s.d_sigma / s.sigma * xt + (s.d_alpha - s.d_sigma * s.alpha / s.sigma) * x1
        )

    def x0_to_velocity(self, t: _T, xt: _X, x0: _X) -> _X:
        r"""Velocity from a source prediction $\hat x_0$; needs $\alpha_t > 0$."""
        s = self.schedule(t)
        return (
            s.d_alpha / s.alpha * xt + (s.d_sigma - s.d_alpha * s.sigma / s.alpha) * x0
        )

    def epsilon_to_velocity(self, t: _T, xt: _X, epsilon: _X) -> _X:
        r"""Velocity from a noise prediction (the source is $\epsilon \sim N(0, I)$)."""
        return self.x0_to_velocity(t, xt, epsilon)

    def velocity_to_epsilon(self, t: _T, xt: _X, v: _X) -> _X:
        """Noise prediction from a velocity (same as `velocity_to_x0`)."""
        return self.velocity_to_x0(t, xt, v)

    def velocity_to_score(self, t: _T, xt: _X, v: _X) -> _X:
        r"""Score $-\hat x_0 / \sigma_t$, for a standard normal source."""
        return -self.velocity_to_x0(t, xt, v) / self.schedule(t).sigma

    def score_to_velocity(self, t: _T, xt: _X, score: _X) -> _X:
        """Velocity from a score, for a standard normal source."""
        return self.x0_to_velocity(t, xt, -self.schedule(t).sigma * score)

    def x1_to_x0(self, t: _T, xt: _X, x1: _X) -> _X:
        r"""$x_0 = (x_t - \alpha_t x_1)/\sigma_t$."""
        s = self.schedule(t)
        return (xt - s.alpha * x1) / s.sigma

    def x0_to_x1(self, t: _T, xt: _X, x0: _X) -> _X:
        r"""$x_1 = (x_t - \sigma_t x_0)/\alpha_t$."""
        s = self.schedule(t)
        return (xt - s.sigma * x0) / s.alpha


registry.register("path", "affine", AffinePath)
