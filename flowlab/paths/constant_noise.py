r"""The straight path with constant Gaussian noise, $x_t = (1-t)x_0 + t x_1 + \sigma z$.

This is the path of torchcfm's `ConditionalFlowMatcher` and
`ExactOptimalTransportConditionalFlowMatcher` (I-CFM and OT-CFM in Tong et al.
2023): around the straight line between the pair sits a Gaussian of fixed width
$\sigma$, the same at every $t$ (so neither end is exactly a point), and the
regression target is the velocity of its mean,

$$x_t = (1-t)\,x_0 + t\,x_1 + \sigma z, \quad z \sim N(0, I), \qquad
u_t = x_1 - x_0 .$$

Since $z$ does not move with $t$, $u_t$ is also $d x_t / dt$ at fixed $z$. With
$\sigma = 0$ it is the Cond-OT path (`AffinePath(schedules.cond_ot())`).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import is_number as _number
from ._base import AbstractPath, Key, PathSample, Point, Time, check_pair

__all__ = ["ConstantNoisePath"]

_X = Float[Array, "*event"]
_T = Float[ArrayLike, ""]


class ConstantNoisePath(AbstractPath):
    r"""$x_t = (1-t)x_0 + t x_1 + \sigma z$ with target $u_t = x_1 - x_0$.

    Attributes:
        sigma: the constant noise scale $\sigma \ge 0$ (torchcfm's `sigma`; its
            two-dimensional experiments use 0.1).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import paths
        >>> path = paths.ConstantNoisePath(0.1)
        >>> ps = path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 0.25)
        >>> ps.ut.tolist()
        [1.0, 1.0]
    """

    sigma: float | Float[Array, ""]

    def __check_init__(self):
        if _number(self.sigma) and not self.sigma >= 0:  # also rejects nan
            raise ValueError(
                f"sigma must be a number >= 0 (the constant noise scale), got "
                f"{self.sigma!r}; use sigma=0 for the noiseless straight path."
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
        xt = (1 - t) * x0 + t * x1 + self.sigma * z
        ut = x1 - x0
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
