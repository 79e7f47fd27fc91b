r"""The rotation group SO(3) with its bi-invariant metric: points are rotation matrices.

A point is a $3 \times 3$ matrix $R$ with $R^\top R = I$ and $\det R = 1$; a tangent
vector at $R$ is $u = R\hat\omega$, with $\hat\omega$ the skew-symmetric matrix of
$\omega \in \mathbb{R}^3$ ($\hat\omega v = \omega \times v$). The metric

$$\langle u, v\rangle_R = \tfrac12 \operatorname{tr}(u^\top v), \qquad
\|R\hat\omega\|_R = \|\omega\|,$$

makes the geodesic distance the angle of the relative rotation, in $[0, \pi]$. With
$\theta = \|\omega\|$ and $\operatorname{Exp}$ Rodrigues' formula,

$$\exp_R(u) = R \operatorname{Exp}(R^\top u), \qquad
\operatorname{Exp}(\hat\omega) = I + \frac{\sin\theta}{\theta}\,\hat\omega
+ \frac{1 - \cos\theta}{\theta^2}\,\hat\omega^2, \qquad
\log_R(S) = R \operatorname{Log}(R^\top S),$$

$P_R(u) = R \operatorname{skew}(R^\top u)$ with
$\operatorname{skew}(A) = (A - A^\top)/2$, and `projx` is the nearest rotation
(the orthogonal polar factor, with a determinant fix). The injectivity radius is
$\pi$ and the volume $8\pi^2$.

Stability. Both maps go through the unit quaternion $q = (w, \mathbf{v}) =
(\cos\frac\theta2, \sin\frac\theta2\,\mathbf{n})$:

- `Exp` evaluates $\cos\frac\theta2$ and $\sin\frac\theta2 / \frac\theta2$ as
  functions of $\theta^2$, with Taylor series below $\theta = 2 \cdot 10^{-2}$, so
  $(1 - \cos\theta)/\theta^2 = \frac12 (\sin\frac\theta2 / \frac\theta2)^2$ has no
  cancellation and the derivatives at $\omega = 0$ are exact.
- The quaternion of a matrix is read off the row of
  $K = 4 q q^\top$ (linear in $R$) with the largest diagonal entry
  (Shepperd's method): it divides by at least 1, so the axis near $\theta = \pi$
  comes from the symmetric part of $R$, not from the vanishing $(R - R^\top)/2$.
- `Log` is $\omega = 2 \operatorname{atan2}(\|\mathbf{v}\|, w)\,\mathbf{v} /
  \|\mathbf{v}\|$ with $w \ge 0$ (the principal branch), accurate to rounding near
  the identity (with the series of $\operatorname{atan}(z)/z$) and near $\pi$.

At exactly $\theta = \pi$ both $\pm\pi\mathbf{n}$ are shortest; `logmap` and
`matrix_to_axis_angle` return the one whose largest-magnitude component is positive
(the first of equal ones), and `matrix_to_quaternion` the $q$ with $w = 0$ likewise.
"""

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .. import _checks, registry
from ._base import AbstractCompactManifold, Point, Scalar, Tangent, safe_norm

__all__ = [
    "SO3",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
]

Matrix = Float[Array, "3 3"]
_SMALL = 1e-4  # squared half angle (or tan of it) below which Taylor series are used


def _hat(omega: Float[Array, "3"]) -> Matrix:
    r"""The skew-symmetric $\hat\omega$ with $\hat\omega v = \omega \times v$."""
    x, y, z = omega[0], omega[1], omega[2]
    o = jnp.zeros_like(x)
    return jnp.stack(
        [jnp.stack([o, -z, y]), jnp.stack([z, o, -x]), jnp.stack([-y, x, o])]
    )


def _vee(a: Matrix) -> Float[Array, "3"]:
    r"""$\omega$ with $\hat\omega = \operatorname{skew}(a)$ (the skew part of `a`)."""
    return 0.5 * jnp.stack([a[2, 1] - a[1, 2], a[0, 2] - a[2, 0], a[1, 0] - a[0, 1]])


def _det(a: Matrix) -> Scalar:
    return jnp.dot(a[0], jnp.cross(a[1], a[2]))


def _cos_sinc(sq: Scalar) -> tuple[Scalar, Scalar]:
    r"""$\cos\phi$ and $\sin\phi/\phi$ for $\phi = \sqrt{sq}$, smooth at 0."""
    small = sq < _SMALL
    phi = jnp.sqrt(jnp.where(small, 1.0, sq))
    cos = jnp.where(small, 1 - sq / 2 * (1 - sq / 12 * (1 - sq / 30)), jnp.cos(phi))
    sinc = jnp.where(
        small, 1 - sq / 6 * (1 - sq / 20 * (1 - sq / 42)), jnp.sin(phi) / phi
    )
    return cos, sinc


def _axis_angle_to_quaternion(omega: Float[Array, "3"]) -> Float[Array, "4"]:
    cos, sinc = _cos_sinc(jnp.sum(omega * omega) / 4)
    return jnp.concatenate([cos[None], 0.5 * sinc * omega])


def _quaternion_to_matrix(q: Float[Array, "4"]) -> Matrix:
    w, v = q[0], q[1:]
    n2 = w * w + jnp.sum(v * v)
    r = (w * w - jnp.sum(v * v)) * jnp.eye(3, dtype=q.dtype)
    r = r + 2 * v[:, None] * v[None, :] + 2 * w * _hat(v)
    return r / jnp.where(n2 > 0, n2, 1.0)


def _quaternion(r: Matrix) -> Float[Array, "4"]:
    r"""The quaternion of `r` (norm 1 up to rounding for a rotation), with `w >= 0`.

    The row of $K = 4 q q^\top$ with the largest diagonal entry $4 q_k^2 \ge 1$
    (the diagonal sums to 4) divided by $2 \sqrt{K_{kk}}$ is $\pm q$.
    """
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = r
    k = jnp.stack(
        [
            jnp.stack([1 + r00 + r11 + r22, r21 - r12, r02 - r20, r10 - r01]),
            jnp.stack([r21 - r12, 1 + r00 - r11 - r22, r01 + r10, r02 + r20]),
            jnp.stack([r02 - r20, r01 + r10, 1 - r00 + r11 - r22, r12 + r21]),
            jnp.stack([r10 - r01, r02 + r20, r12 + r21, 1 - r00 - r11 + r22]),
        ]
    )
    i = jnp.argmax(jnp.diagonal(k))
    q = k[i] / (2 * jnp.sqrt(k[i, i]))
    return jnp.where(q[0] < 0, -q, q)


def _quaternion_to_axis_angle(q: Float[Array, "4"]) -> Float[Array, "3"]:
    r"""$2\operatorname{atan2}(\|v\|, w)\, v/\|v\|$ for $q = (w, v)$ with $w \ge 0$."""
    w, v = q[0], q[1:]
    sq = jnp.sum(v * v)
    small = sq < _SMALL * w * w  # tan(theta / 2) < 1e-2: the series of atan(z) / z
    w_safe = jnp.where(small, w, 1.0)
    z2 = jnp.where(small, sq / (w_safe * w_safe), 0.0)
    series = 2 / w_safe * (1 - z2 * (1 / 3 - z2 * (1 / 5 - z2 / 7)))
    r = jnp.sqrt(jnp.where(small, 1.0, sq))
    direct = 2 * jnp.arctan2(r, w) / r
    return jnp.where(small, series, direct) * v


def axis_angle_to_matrix(omega: Float[ArrayLike, "3"]) -> Matrix:
    r"""The rotation $\operatorname{Exp}(\hat\omega)$ of the rotation vector $\omega$.

    The turn by the angle $\|\omega\|$ about the axis $\omega / \|\omega\|$
    (Rodrigues' formula, smooth at $\omega = 0$).

    Args:
        omega: a rotation vector (axis times angle), of shape `(3,)`.

    Returns:
        The rotation matrix, of shape `(3, 3)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> r = manifolds.axis_angle_to_matrix(jnp.array([0.0, 0.0, jnp.pi / 2]))
        >>> [[round(v, 4) + 0.0 for v in row] for row in r.tolist()]  # x -> y
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    return _exp(_checks.float_array("omega", omega, (3,), "a rotation vector"))


def matrix_to_axis_angle(r: Float[ArrayLike, "3 3"]) -> Float[Array, "3"]:
    r"""The principal rotation vector $\omega$ of `r`, $\|\omega\| \in [0, \pi]$.

    The inverse of `axis_angle_to_matrix` for $\|\omega\| < \pi$; at exactly $\pi$
    the vector whose largest-magnitude component is positive.

    Args:
        r: a rotation matrix, of shape `(3, 3)`.

    Returns:
        The rotation vector (axis times angle), of shape `(3,)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> half_turn = jnp.diag(jnp.array([-1.0, 1.0, -1.0]))
        >>> omega = manifolds.matrix_to_axis_angle(half_turn)
        >>> [round(v, 4) for v in omega.tolist()]  # pi about the y axis
        [0.0, 3.1416, 0.0]
    """
    return _log(_checks.float_array("r", r, (3, 3), "a rotation matrix"))


def quaternion_to_matrix(q: Float[ArrayLike, "4"]) -> Matrix:
    r"""The rotation of the quaternion $q = (w, x, y, z)$, normalised first.

    $R = \big((w^2 - \|\mathbf{v}\|^2) I + 2\mathbf{v}\mathbf{v}^\top
    + 2 w \hat{\mathbf{v}}\big) / \|q\|^2$ for $q = (w, \mathbf{v})$; $q$ and $-q$
    give the same rotation.

    Args:
        q: a nonzero quaternion, scalar part first, of shape `(4,)`.

    Returns:
        The rotation matrix, of shape `(3, 3)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> q = jnp.array([1.0, 0.0, 0.0, 1.0])  # a quarter turn about z
        >>> r = manifolds.quaternion_to_matrix(q)
        >>> [round(v, 4) + 0.0 for v in r[:, 0].tolist()]  # x -> y
        [0.0, 1.0, 0.0]
    """
    return _rotation_of(_checks.float_array("q", q, (4,), "a quaternion (w, x, y, z)"))


def matrix_to_quaternion(r: Float[ArrayLike, "3 3"]) -> Float[Array, "4"]:
    r"""The unit quaternion $(w, x, y, z)$ of `r`, with $w \ge 0$.

    Of $\pm q$ the one with $w \ge 0$; for a half turn ($w = 0$) the one whose
    largest-magnitude component is positive. Shepperd's method: accurate to
    rounding for every angle.

    Args:
        r: a rotation matrix, of shape `(3, 3)`.

    Returns:
        The unit quaternion, scalar part first, of shape `(4,)`.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> q = manifolds.matrix_to_quaternion(jnp.eye(3))
        >>> q.tolist()
        [1.0, 0.0, 0.0, 0.0]
    """
    return _unit_quaternion(_checks.float_array("r", r, (3, 3), "a rotation matrix"))


def _polish(y: Matrix) -> Matrix:
    """One Newton-Schulz step towards the orthogonal polar factor (drift control)."""
    return y - 0.5 * y @ (y.T @ y - jnp.eye(3, dtype=y.dtype))


def _polar_step(r: Matrix, a: Matrix, n: Matrix) -> Float[Array, "3"]:
    r"""The $\omega$ of $\hat\omega P + P\hat\omega = n - n^\top$, $P$ symmetric.

    Here $P = \operatorname{sym}(r^\top a)$; the result is zero where the system is
    singular. With $n = r^\top da$ it is the derivative of the nearest rotation $r$
    of $a$: differentiating "$r^\top a$ is symmetric" along $dr = r\hat\omega$ gives
    $\hat\omega P + P\hat\omega = n - n^\top$, solved as
    $(\operatorname{tr}P\, I - P)\,\omega = 2\operatorname{vee}(n)$ (the matrix has
    the eigenvalues $s_i + s_j$ of the signed singular values: it is singular only
    where the nearest rotation is not unique). With $n = r^\top a$ it is the
    Newton step that makes $r^\top a$ symmetric.
    """
    p = r.T @ a
    eye = jnp.eye(3, dtype=a.dtype)
    b = jnp.trace(p) * eye - 0.5 * (p + p.T)
    ok = _det(b) > jnp.finfo(a.dtype).eps * jnp.abs(jnp.trace(b)) ** 3
    omega = jnp.linalg.solve(jnp.where(ok, b, eye), 2 * _vee(n))
    return jnp.where(ok, omega, 0.0)


@jax.custom_jvp
def _nearest_rotation(a: Matrix) -> Matrix:
    r"""$U \operatorname{diag}(1, 1, \pm 1) V^\top$ for $a = U \Sigma V^\top$.

    One Newton step on the optimality condition ($R^\top a$ symmetric) follows the
    SVD: it brings a float32 result from a few ulps to about one.
    """
    u, _, vt = jnp.linalg.svd(a)
    one = jnp.ones((), a.dtype)
    flip = jnp.where(_det(u) * _det(vt) < 0, -one, one)  # the smallest direction
    r = (u * jnp.stack([one, one, flip])[None, :]) @ vt
    return _polish(r @ _exp(_polar_step(r, a, r.T @ a)))


@_nearest_rotation.defjvp
def _nearest_rotation_jvp(primals, tangents):
    """`r @ hat(omega)` with `omega = _polar_step(r, a, r.T @ da)` (no SVD jvp)."""
    (a,), (da,) = primals, tangents
    r = _nearest_rotation(a)
    return r, r @ _hat(_polar_step(r, a, r.T @ da))


# The kernels, jitted: eagerly (and under eager jax.grad) each is one compiled call
# instead of dozens of dispatches of scalar operations; under jit they are inlined.


@jax.jit
def _exp(omega: Float[Array, "3"]) -> Matrix:
    return _quaternion_to_matrix(_axis_angle_to_quaternion(omega))


@jax.jit
def _log(r: Matrix) -> Float[Array, "3"]:
    return _quaternion_to_axis_angle(_quaternion(r))


@jax.jit
def _unit_quaternion(r: Matrix) -> Float[Array, "4"]:
    q = _quaternion(r)
    return q / jnp.sqrt(jnp.sum(q * q))  # |q| >= its pivot entry >= 1/2


_rotation_of = jax.jit(_quaternion_to_matrix)
_projx = jax.jit(_nearest_rotation)


@jax.jit
def _expmap(x: Matrix, u: Matrix) -> Matrix:
    return _polish(x @ _exp(_vee(x.T @ u)))


@jax.jit
def _logmap(x: Matrix, y: Matrix) -> Matrix:
    return x @ _hat(_log(x.T @ y))


@jax.jit
def _dist(x: Matrix, y: Matrix) -> Scalar:
    q = _quaternion(x.T @ y)
    return 2 * jnp.arctan2(safe_norm(q[1:]), q[0])


@jax.jit
def _proju(x: Matrix, u: Matrix) -> Matrix:
    a = x.T @ u
    return x @ (0.5 * (a - a.T))


@registry.register("manifold", "so3")
class SO3(AbstractCompactManifold):
    r"""The rotations of $\mathbb{R}^3$, as $3 \times 3$ matrices.

    The metric is $\langle u, v\rangle_R = \frac12\operatorname{tr}(u^\top v)$, so
    `dist` is the rotation angle of $R^\top S$ and $\|R\hat\omega\|_R = \|\omega\|$.
    Tangent vectors are ambient matrices $R\hat\omega$; `expmap` takes the tangent
    part of any ambient `u`. Conversions: `quaternion_to_matrix`,
    `matrix_to_quaternion`, `axis_angle_to_matrix`, `matrix_to_axis_angle`.

    Attributes:
        dim: 3.
        shape: `(3, 3)`.

    At a half turn ($\operatorname{dist} = \pi$) two geodesics are shortest;
    `logmap` returns $R\hat\omega$ with the largest component of $\omega$ positive.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> so3 = manifolds.SO3()
        >>> rz = manifolds.axis_angle_to_matrix(jnp.array([0.0, 0.0, 0.5]))
        >>> round(so3.dist(so3.origin(), rz).item(), 6)  # the angle
        0.5
        >>> u = so3.logmap(so3.origin(), rz)
        >>> round(so3.norm(so3.origin(), u).item(), 6)
        0.5
        >>> bool(jnp.allclose(so3.expmap(so3.origin(), u), rz, atol=1e-6))
        True
    """

    injectivity_radius: ClassVar[float] = math.pi  # the largest rotation angle

    @property
    def dim(self) -> int:
        return 3

    @property
    def shape(self) -> tuple[int, ...]:
        return (3, 3)

    def expmap(self, x: Point, u: Tangent) -> Point:
        x = _checks.float_array("x", x, self.shape, "a rotation matrix")
        u = _checks.float_array("u", u, self.shape, "a tangent vector")
        return _expmap(x, u)

    def logmap(self, x: Point, y: Point) -> Tangent:
        x = _checks.float_array("x", x, self.shape, "a rotation matrix")
        y = _checks.float_array("y", y, self.shape, "a rotation matrix")
        return _logmap(x, y)

    def dist(self, x: Point, y: Point) -> Scalar:
        x = _checks.float_array("x", x, self.shape, "a rotation matrix")
        y = _checks.float_array("y", y, self.shape, "a rotation matrix")
        return _dist(x, y)

    def projx(self, x) -> Point:
        r"""The nearest rotation in the Frobenius norm (the polar factor, det-fixed).

        $U\operatorname{diag}(1, 1, \det UV^\top) V^\top$ for the SVD
        $x = U\Sigma V^\top$. Its derivative solves a $3 \times 3$ linear system
        instead of differentiating the SVD, so it is finite at rotations (where the
        singular values repeat); it is zero where the nearest rotation is not unique.
        """
        return _projx(_checks.float_array("x", x, self.shape, "a 3x3 matrix"))

    def proju(self, x: Point, u) -> Tangent:
        x = _checks.float_array("x", x, self.shape, "a rotation matrix")
        u = _checks.float_array("u", u, self.shape, "a 3x3 matrix")
        return _proju(x, u)

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        return 0.5 * jnp.sum(u * v)

    map_projection = "mollweide"
    map_labels = ("longitude of R e_z", "latitude of R e_z")

    def map2d(self, x: Point) -> Float[Array, "2"]:
        r"""Where the rotation takes the north pole: its last column on a map.

        The longitude and latitude of $R e_z$; a rotation about that axis does not
        show.
        """
        x = jnp.asarray(x)
        lon = jnp.arctan2(x[1, 2], x[0, 2])
        lat = jnp.arctan2(x[2, 2], jnp.hypot(x[0, 2], x[1, 2]))
        return jnp.stack([lon, lat])

    def origin(self, dtype=float) -> Point:
        """The identity."""
        return jnp.eye(3, dtype=dtype)

    def random_uniform(self, key: PRNGKeyArray, dtype=float) -> Point:
        """A Haar-uniform rotation, from a uniform unit quaternion."""
        key = _checks.key(key)
        return _rotation_of(jax.random.normal(key, (4,), dtype))

    def log_volume(self) -> Scalar:
        r"""$\log 8\pi^2$.

        $q \mapsto R(q)$ is 2-to-1 from the unit sphere $S^3$ and doubles lengths
        (a turn by $\theta$ is an arc of $\theta/2$), so the volume is
        $\frac12 \cdot 2^3 \cdot 2\pi^2 = 8\pi^2$. Equivalently, the density of
        the angle of a uniform rotation is $(1 - \cos\theta)/\pi$ on $[0, \pi]$,
        and the volume form in exponential coordinates is
        $2(1 - \cos\theta)/\theta^2\, d^3\omega$.
        """
        return jnp.log(8.0) + 2 * jnp.log(jnp.pi)
