r"""The manifold interface: one point, one tangent vector, pure functions.

A manifold is an immutable pytree (`equinox.Module`) whose methods act on **one**
point `x` (an array of the manifold's `shape`, its ambient coordinates) and tangent
vectors `u, v` at `x` (arrays of the same shape); batches go through `jax.vmap`.

- `expmap(x, u)`: the point at time 1 on the geodesic from `x` with velocity `u`;
- `logmap(x, y)`: the velocity `u` at `x` with `expmap(x, u) = y` (shortest geodesic);
- `projx(x)`: the point of the manifold nearest to an ambient point;
- `proju(x, u)`: the projection of an ambient vector on the tangent space,
  orthogonal in the ambient coordinates' Euclidean inner product;
- `inner(x, u, v)`: the Riemannian metric $\langle u, v\rangle_x$;
- `origin()`: a reference point (the north pole, the identity, the zero vector),
  where base distributions are centred;
- `norm(x, u)`, `dist(x, y)`: $\|u\|_x$ and the geodesic distance;
- `is_point(x)`, `is_tangent(x, u)`: whether `x` is on the manifold, `u` tangent at `x`.
- `check_point(x)`, `check_tangent(x, u)`: the input itself, or an error
  (`equinox.error_if`, so inside `jit` too).

Compact manifolds (`AbstractCompactManifold`) also draw uniform points and know their
volume. Every method is differentiable everywhere it is defined, with finite
gradients at the points where a naive formula divides by zero (`u = 0`, `y = x`).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .. import _checks

__all__ = ["AbstractCompactManifold", "AbstractFlatManifold", "AbstractManifold"]

Point = Float[Array, "*shape"]
Tangent = Float[Array, "*shape"]
Scalar = Float[Array, ""]


def safe_sqrt(sq: Scalar) -> Scalar:
    """`sqrt(sq)` for `sq >= 0` with a zero (not NaN) gradient at `sq = 0`."""
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def safe_norm(u: Float[Array, "*shape"]) -> Scalar:
    """The Euclidean `‖u‖`, with a zero (not NaN) gradient at `u = 0`."""
    return safe_sqrt(jnp.sum(u * u))


class AbstractManifold(eqx.Module):
    r"""A Riemannian manifold embedded in $\mathbb{R}^{\text{shape}}$.

    Attributes:
        dim: the intrinsic dimension (2 for the sphere $S^2 \subset \mathbb{R}^3$).
        shape: the shape of a point's ambient coordinates, e.g. `(3,)` for $S^2$.
        injectivity_radius: the largest $r$ such that `expmap(x, .)` is one-to-one
            on tangent vectors of norm below $r$ at every `x` ($\pi$ on the unit
            sphere, `math.inf` on a flat or a negatively curved space): within it,
            `logmap(x, expmap(x, u)) = u`.

    Subclasses implement `expmap`, `logmap`, `projx`, `proju`, `inner` and `origin`;
    `norm` and `dist` follow (override `dist` where a closed form is more stable),
    and `is_point` / `is_tangent` compare `projx` / `proju` with their input.
    """

    dim: eqx.AbstractVar[int]
    shape: eqx.AbstractVar[tuple[int, ...]]
    injectivity_radius: eqx.AbstractVar[float]

    def __check_init__(self):
        _checks.positive_int("dim", self.dim)

    @abc.abstractmethod
    def expmap(self, x: Point, u: Tangent) -> Point:
        """The endpoint at time 1 of the geodesic from `x` with initial velocity `u`."""

    @abc.abstractmethod
    def logmap(self, x: Point, y: Point) -> Tangent:
        """The initial velocity at `x` of the shortest geodesic that reaches `y`."""

    @abc.abstractmethod
    def projx(self, x: Float[ArrayLike, "*shape"]) -> Point:
        """The point of the manifold nearest to the ambient point `x`."""

    @abc.abstractmethod
    def proju(self, x: Point, u: Float[ArrayLike, "*shape"]) -> Tangent:
        """The projection of the ambient `u` on the tangent space at `x`.

        Orthogonal for the Euclidean inner product of the ambient coordinates
        (which is the metric's on the sphere, not on the hyperboloid or the SPD
        cone): it never lengthens `u`.
        """

    @abc.abstractmethod
    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        r"""The metric $\langle u, v\rangle_x$."""

    @abc.abstractmethod
    def origin(self, dtype=float) -> Point:
        """The manifold's reference point, where base distributions are centred."""

    def features(self, x: Point) -> Float[Array, "..."]:
        r"""What a network reads of the point `x`: its ambient coordinates.

        A manifold whose coordinates are not continuous functions on it (the
        torus's angles jump at $2\pi$) gives a continuous embedding instead.
        `flowlab.models.TangentModel` feeds these to the network and pulls the
        network's output back through their derivative.
        """
        return x

    def map2d(self, x: Point) -> Float[Array, "2"]:
        """Two coordinates to draw the point `x` with (a run's `samples.png`).

        By default the first two ambient coordinates; the sphere gives longitude
        and latitude (for a map projection, `map_projection`), the torus its two
        angles (the unrolled square), the hyperbolic plane the Poincaré disk.
        """
        return jnp.asarray(x).reshape(-1)[:2]

    map_projection = None
    """The matplotlib projection `map2d` is drawn in (`None`: a plain plane)."""

    map_labels = ("$x_1$", "$x_2$")
    """The names of the two `map2d` coordinates."""

    def norm(self, x: Point, u: Tangent) -> Scalar:
        r"""$\|u\|_x = \sqrt{\langle u, u\rangle_x}$ (zero gradient at `u = 0`)."""
        return safe_sqrt(self.inner(x, u, u))

    def dist(self, x: Point, y: Point) -> Scalar:
        """The geodesic distance, `norm(x, logmap(x, y))`."""
        return self.norm(x, self.logmap(x, y))

    def is_point(self, x: Float[ArrayLike, "*shape"], atol: float = 1e-5) -> Bool:
        """Whether `x` lies on the manifold within `atol` (a boolean array)."""
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.asarray(False)
        return jnp.all(jnp.abs(self.projx(x) - x) <= atol)

    def is_tangent(
        self, x: Point, u: Float[ArrayLike, "*shape"], atol: float = 1e-5
    ) -> Bool:
        """Whether `u` lies in the tangent space at `x` within `atol`."""
        u = jnp.asarray(u)
        if u.shape != self.shape:
            return jnp.asarray(False)
        return jnp.all(jnp.abs(self.proju(x, u) - u) <= atol)

    def check_point(self, x: Float[ArrayLike, "*shape"], atol: float = 1e-5) -> Point:
        """`x` itself if it is a point of the manifold; an error otherwise.

        A wrong shape is a `ValueError` at once; a point off the manifold is an
        error raised by `equinox.error_if`, inside `jit` too.
        """
        x = self._shaped("x", x)
        return eqx.error_if(
            x, ~self.is_point(x, atol), f"x is not a point of {self!r} (atol {atol})."
        )

    def check_tangent(
        self, x: Point, u: Float[ArrayLike, "*shape"], atol: float = 1e-5
    ) -> Tangent:
        """`u` itself if it is tangent at `x`; an error otherwise (as `check_point`)."""
        u = self._shaped("u", u)
        return eqx.error_if(
            u,
            ~self.is_tangent(x, u, atol),
            f"u is not a tangent vector of {self!r} at x (atol {atol}).",
        )

    def check_points(
        self,
        name: str,
        x: Float[ArrayLike, "batch *shape"],
        *,
        atol: float = 1e-5,
        project: bool = False,
    ) -> Float[Array, "batch *shape"]:
        r"""A batch of points of the manifold, checked (or projected) for a solve.

        Args:
            name: the argument's name, for the messages (`"x0"`).
            x: the batch, `(batch, *shape)`.
            atol: how far (in ambient coordinates) a point may lie from the
                manifold.
            project: return `projx` of every point instead of checking them.

        Returns:
            `x` (or its projection). A wrong shape is a `ValueError`; so are
            points off the manifold, with how many and the largest distance
            $\|\mathrm{projx}(x) - x\|$ in the message. Inside `jit` (a traced
            `x`) the distance is not known when the message is written: the error
            (`equinox.error_if`) says that it exceeds `atol`.
        """
        x = jnp.asarray(x)
        if x.ndim != len(self.shape) + 1 or x.shape[1:] != self.shape:
            raise ValueError(
                f"{name} must be a batch of points of {self!r}, of shape "
                f"(batch, {', '.join(map(str, self.shape))}), got {x.shape}."
            )
        projected = jax.vmap(self.projx)(x)
        if project:
            return projected
        gaps = jax.vmap(safe_norm)(projected - x)
        if isinstance(gaps, jax.core.Tracer):
            return eqx.error_if(
                x,
                jnp.any(~(gaps <= atol)),
                f"{name} has points off {self!r}, farther than atol = {atol} from "
                "it; pass project=True to project them onto it.",
            )
        off = ~(gaps <= atol)
        if bool(jnp.any(off)):
            raise ValueError(
                f"{name}: {int(off.sum())} of {x.shape[0]} points are off {self!r}; "
                f"the farthest lies {float(jnp.nanmax(gaps)):.3g} from it (atol "
                f"{atol}). Pass project=True to project them onto it."
            )
        return x

    def _shaped(self, name: str, a: Float[ArrayLike, "*shape"]) -> Array:
        return _checks.float_array(name, a, self.shape, f"an array of {self!r}")


class AbstractCompactManifold(AbstractManifold):
    """A compact manifold: finite volume, and a uniform distribution to draw from."""

    @abc.abstractmethod
    def random_uniform(self, key: PRNGKeyArray, dtype=float) -> Point:
        """One point of shape `self.shape`, uniform by the Riemannian volume.

        A batch: `jax.vmap(m.random_uniform)(jax.random.split(key, n))`.
        """

    @abc.abstractmethod
    def log_volume(self) -> Scalar:
        """The log of the manifold's Riemannian volume."""

    def uniform_log_prob(self, x: Point) -> Scalar:
        """The log-density of the uniform distribution, `-log_volume()`, at `x`."""
        return jnp.zeros((), jnp.result_type(x, float)) - self.log_volume()


class AbstractFlatManifold(AbstractManifold):
    r"""A flat manifold in its own coordinates: points of shape `(dim,)`.

    Every ambient vector is tangent, and the metric is the Euclidean inner product.
    """

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def proju(self, x: Point, u: Float[ArrayLike, "*shape"]) -> Tangent:
        return jnp.asarray(u)

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        return jnp.sum(u * v)

    def origin(self, dtype=float) -> Point:
        """The zero vector."""
        return jnp.zeros(self.shape, dtype)
