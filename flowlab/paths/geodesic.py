r"""Geodesic paths on a Riemannian manifold (Chen & Lipman, 2024).

$$x_t = \exp_{x_0}\!\big(\kappa_t \log_{x_0}(x_1)\big), \qquad u_t = \frac{d x_t}{dt},$$

with $\kappa_t$ the $\alpha_t$ of a schedule ($\kappa_0 = 0$, $\kappa_1 = 1$: Cond-OT's
$\alpha_t = t$ moves at the constant speed $d(x_0, x_1)$). The target $u_t$ is one
`jax.jvp` in $t$ and lies in the tangent space at $x_t$. On `Euclidean(d)` the path is
the affine path $x_0 + \kappa_t (x_1 - x_0)$.
"""

import jax
import jax.numpy as jnp

from .. import _checks, registry
from ..manifolds import AbstractManifold
from ..schedules import AbstractSchedule
from ._base import AbstractScheduledPath, Key, PathSample, Point, Time, check_pair

__all__ = ["GeodesicPath"]


def _geodesic(
    schedule: AbstractSchedule, manifold: AbstractManifold | None = None
) -> "GeodesicPath":
    """The `"geodesic"` path of configs: the manifold comes from the data set."""
    if manifold is None:
        raise ValueError(
            "the geodesic path needs data on a manifold (data.target = "
            "'vmf_mixture', 'quakes', 'torus_mixture', 'so3_mixture', ...); "
            "Euclidean data takes path.name = 'affine'."
        )
    return GeodesicPath(schedule, manifold)


class GeodesicPath(AbstractScheduledPath):
    r"""The path along the shortest geodesic from `x0` to `x1`, timed by a schedule.

    Attributes:
        schedule: a `flowlab.schedules.AbstractSchedule`; its `alpha` is $\kappa_t$
            and must run from 0 at $t = 0$ to 1 at $t = 1$ (`schedules.cond_ot()`).
        manifold: a `flowlab.manifolds.AbstractManifold`; `x0` and `x1` are its points.

    Where the shortest geodesic is not unique (antipodal points on a sphere) the
    manifold's `logmap` picks one; `Sphere` returns 0 there, so $x_t = x_0$.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds, paths, schedules
        >>> path = paths.GeodesicPath(schedules.cond_ot(), manifolds.Sphere(2))
        >>> north, east = jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0])
        >>> ps = path.sample(None, north, east, 0.5)
        >>> [round(v, 4) for v in ps.xt.tolist()]  # half way down the meridian
        [0.7071, 0.0, 0.7071]
        >>> round(float(jnp.linalg.norm(ps.ut)), 4)  # speed: the distance, pi/2
        1.5708
    """

    schedule: AbstractSchedule
    manifold: AbstractManifold

    def __check_init__(self):
        _checks.instance_of(
            "manifold",
            self.manifold,
            AbstractManifold,
            "flowlab.manifolds.AbstractManifold",
            "manifolds.Sphere(2)",
        )

    def sample(self, key: Key, x0: Point, x1: Point, t: Time) -> PathSample:
        """Point and target velocity at time `t` (deterministic; `key` is unused)."""
        del key
        x0, x1, t = check_pair(x0, x1, t)
        if x0.shape != self.manifold.shape:
            raise ValueError(
                f"x0 and x1 must be points of {type(self.manifold).__name__}, of "
                f"shape {self.manifold.shape}, got {x0.shape}."
            )
        u = self.manifold.logmap(x0, x1)

        def point(s):
            return self.manifold.expmap(x0, self.schedule(s).alpha * u)

        t = t.astype(jnp.result_type(t, x0))
        xt, ut = jax.jvp(point, (t,), (jnp.ones_like(t),))
        return PathSample(t=t, x0=x0, x1=x1, xt=xt, ut=ut)

    def squared_error(self, xt, pred, target):
        r"""$\|\mathrm{proju}_{x_t}(\text{pred}) - u_t\|^2_{x_t} / d$ (`manifold.dim`).

        The squared norm in the metric at $x_t$ of the prediction's tangent part
        against the target, per intrinsic dimension (so that on `Euclidean(d)` it
        is the affine path's mean squared error).
        """
        diff = self.manifold.proju(xt, pred) - target
        return self.manifold.inner(xt, diff, diff) / self.manifold.dim


registry.register("path", "geodesic", _geodesic)
