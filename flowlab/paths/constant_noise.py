r"""Constant Gaussian noise around an affine mean: torchcfm's I-CFM and VP-CFM paths.

This is the path of torchcfm's conditional flow matchers (Tong et al. 2023). Around
the mean of an affine schedule sits a Gaussian of fixed width $\sigma$, the same at
every $t$, and the regression target is the velocity of the mean:

$$x_t = \alpha_t x_1 + \sigma_t x_0 + \sigma z, \quad z \sim N(0, I), \qquad
u_t = \dot\alpha_t x_1 + \dot\sigma_t x_0 .$$

Since $z$ does not move with $t$, $u_t$ is also $d x_t / dt$ at fixed $z$.

| schedule | torchcfm | registry name |
| :--- | :--- | :--- |
| `cond_ot()` (default) | `ConditionalFlowMatcher` (I-CFM, OT-CFM) | `constant_noise` |
| `cosine()` | `VariancePreservingConditionalFlowMatcher` | `vp_cfm` |

With $\sigma = 0$ it is `AffinePath(schedule)`.

Caveat: neither end is exactly the source or the data. The path's marginal at
$t = 0$ is the source convolved with $N(0, \sigma^2 I)$ and at $t = 1$ the data
convolved with it, so sampling from the source at $t = 0$ starts from a slightly
different distribution than the one the model was trained on, and the model learns
$E[u_t \mid x_t]$ of the smoothed path. For small $\sigma$ the bias is
$O(\sigma^2)$ where source and data have smooth densities (smoothing
$N(m, v I)$ moves it by $W_2 = \sqrt d(\sqrt{v + \sigma^2} - \sqrt v) \approx
\sqrt d\,\sigma^2 / (2\sqrt v)$), but $O(\sigma)$ for data on points or a
low-dimensional set ($W_2 = \sigma\sqrt d$ from a point mass). The path is
supported as torchcfm defines it, for comparison with it.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .. import registry
from .._checks import is_number as _number
from ..schedules import AbstractSchedule, cond_ot, cosine
from ._base import AbstractScheduledPath, Key, PathSample, Point, Time, check_pair

__all__ = ["ConstantNoisePath"]

_X = Float[Array, "*event"]
_T = Float[ArrayLike, ""]


class ConstantNoisePath(AbstractScheduledPath):
    r"""$x_t = \alpha_t x_1 + \sigma_t x_0 + \sigma z$ with $u_t$ the mean's velocity.

    The default schedule, Cond-OT, gives torchcfm's I-CFM path
    $x_t = (1-t)x_0 + t x_1 + \sigma z$, $u_t = x_1 - x_0$; `schedules.cosine()`
    gives its VP-CFM path $x_t = \cos(\tfrac{\pi t}{2}) x_0 +
    \sin(\tfrac{\pi t}{2}) x_1 + \sigma z$,
    $u_t = \tfrac{\pi}{2}(\cos(\tfrac{\pi t}{2}) x_1 - \sin(\tfrac{\pi t}{2}) x_0)$.

    Neither end is exactly the source or the data: the marginal at $t = 0$ is the
    source convolved with $N(0, \sigma^2 I)$ (at $t = 1$, the data convolved with
    it), so a sampler started from the source at $t = 0$ starts from a slightly
    different distribution, and the model learns $E[u_t \mid x_t]$ of the smoothed
    path (for small $\sigma$ an $O(\sigma^2)$ bias for smooth densities, $O(\sigma)$
    for data on a low-dimensional set; see the module). Use it to compare with
    torchcfm; `AffinePath` and `StochasticInterpolant` have exact ends.

    Attributes:
        sigma: the constant noise scale $\sigma \ge 0$ (torchcfm's `sigma`; its
            two-dimensional experiments use 0.1).
        schedule: the schedule of the mean (default `schedules.cond_ot()`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import paths, schedules
        >>> path = paths.ConstantNoisePath(0.1)
        >>> ps = path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 0.25)
        >>> ps.ut.tolist()
        [1.0, 1.0]
        >>> vp_cfm = paths.ConstantNoisePath(0.1, schedules.cosine())
        >>> ps = vp_cfm.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 0.0)
        >>> [round(u, 6) for u in ps.ut.tolist()]  # pi/2 (cos(0) x1 - sin(0) x0)
        [1.570796, 1.570796]
    """

    sigma: float | Float[Array, ""]
    schedule: AbstractSchedule = eqx.field(default_factory=cond_ot)

    def __check_init__(self):
        if _number(self.sigma) and not self.sigma >= 0:  # also rejects nan
            raise ValueError(
                f"sigma must be a number >= 0 (the constant noise scale), got "
                f"{self.sigma!r}; use sigma=0 for the noiseless path."
            )
        if not _number(self.sigma) and jnp.ndim(self.sigma) != 0:
            raise ValueError(
                f"sigma must be a scalar, got shape {jnp.shape(self.sigma)}."
            )

    def interpolate(self, x0: _X, x1: _X, z: _X, t: _T) -> PathSample:
        """$x_t$ and $u_t$ for given `x0`, `x1`, noise `z` and time `t`."""
        x0, x1, t = check_pair(x0, x1, t)
        z = jnp.asarray(z)
        if z.shape != x1.shape:
            raise ValueError(
                f"z must have the event shape of x1 {x1.shape}, got {z.shape}."
            )
        s = self.schedule(t)
        xt = s.alpha * x1 + s.sigma * x0 + self.sigma * z
        ut = s.d_alpha * x1 + s.d_sigma * x0
        return PathSample(t=t, x0=x0, x1=x1, xt=xt, ut=ut, z=z)

    def sample(self, key: Key, x0: Point, x1: Point, t: Time) -> PathSample:
        r"""Draw $z \sim N(0, I)$ with `key`; return `interpolate(x0, x1, z, t)`.

        `key` may be `None` only when `sigma` is the number 0 (nothing is drawn).
        """
        x0, x1, t = check_pair(x0, x1, t)
        dtype = jnp.result_type(x0.dtype, x1.dtype, float)
        if key is None:
            if not (_number(self.sigma) and self.sigma == 0):
                raise ValueError(
                    "ConstantNoisePath draws z ~ N(0, I): pass a PRNG key (or use "
                    "sigma=0, which draws nothing)."
                )
            z = jnp.zeros(x1.shape, dtype)
        else:
            z = jax.random.normal(key, x1.shape, dtype)
        return self.interpolate(x0, x1, z, t)


@registry.register("path", "constant_noise")
def _constant_noise(
    schedule: AbstractSchedule | None = None, sigma: float = 0.1
) -> ConstantNoisePath:
    """`ConstantNoisePath(sigma, schedule)`: I-CFM's path with the config's schedule."""
    return ConstantNoisePath(sigma, cond_ot() if schedule is None else schedule)


@registry.register("path", "vp_cfm")
def _vp_cfm(sigma: float = 0.1) -> ConstantNoisePath:
    """The VP-CFM path of torchcfm, `ConstantNoisePath(sigma, schedules.cosine())`."""
    return ConstantNoisePath(sigma, cosine())
