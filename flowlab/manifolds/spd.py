r"""Symmetric positive-definite matrices $\mathrm{SPD}(n)$, with two metrics.

A point is an $n \times n$ matrix $P = P^\top \succ 0$; a tangent vector at $P$ is
any symmetric matrix, so the dimension is $n(n+1)/2$ and `proju` symmetrises.
$\mathrm{SPD}(n)$ is an open cone, complete (and non-compact) under both metrics.

**Affine-invariant** (`SPD`): $\langle u, v\rangle_P = \operatorname{tr}(P^{-1} u
P^{-1} v)$, invariant under $P \mapsto A P A^\top$ for every invertible $A$;

$$\exp_P(u) = P^{1/2} \exp(P^{-1/2} u P^{-1/2}) P^{1/2}, \quad
\log_P(Q) = P^{1/2} \log(P^{-1/2} Q P^{-1/2}) P^{1/2}, \quad
d(P, Q) = \|\log(P^{-1/2} Q P^{-1/2})\|_F.$$

Any factor $P = L L^\top$ may stand in for $P^{1/2}$ (for orthogonal $R$,
$\log(R^\top X R) = R^\top \log(X) R$); flowlab uses the Cholesky factor: one
factorisation, solves instead of inverses, and derivatives without eigenvalue gaps.

**Log-Euclidean** (`SPDLogEuclidean`): the Frobenius metric pulled back by the
matrix logarithm, $\langle u, v\rangle_P = \langle D\log_P[u], D\log_P[v]\rangle_F$.
It is flat: geodesics are $\exp((1 - t) \log P + t \log Q)$, and

$$\exp_P(u) = \exp(\log P + D\log_P[u]), \quad
\log_P(Q) = D\exp_{\log P}[\log Q - \log P], \quad
d(P, Q) = \|\log Q - \log P\|_F.$$

Stability. The matrix functions are those of symmetric matrices
(`flowlab.manifolds._symmetric`): eigenvalues through `jnp.linalg.eigh`,
derivatives by the Daleckii–Krein formula, finite (to second order) where
eigenvalues repeat, as at $P = Q$ or $P = I$.

- A step with $\|W\|_F \le 1$, $W = L^{-1} u L^{-T}$ (for the log-Euclidean
  metric $W = D\log_P[u]$), is taken as $P$ plus the increment,
  $P + L \operatorname{expm1}(W) L^\top$ (log-Euclidean: $P + (\exp(\log P + W) -
  \exp(\log P))$, the difference formed without cancellation), so a small step
  keeps its relative precision and the derivative at $u = 0$ is exactly the
  identity. A longer step is $L \exp(W) L^\top$ (log-Euclidean:
  $\exp(\log P + W)$), which stays positive definite even when it shrinks $P$ by
  $e^{-40}$.
- `logmap` and `dist` of the affine-invariant metric use $\log(I + N) =
  \operatorname{log1p}(N)$ with $N = L^{-1}(Q - P) L^{-T}$ when $\|N\|_F \le 1/2$,
  so nearby points keep their relative precision, and $\log(L^{-1} Q L^{-T})$
  otherwise. The log-Euclidean $\log Q - \log P$ is never formed by subtracting
  two rounded logarithms.
- `projx` symmetrises and lifts the eigenvalues below the floor
  $\sqrt{\varepsilon}\,\|A\|_F$ ($\varepsilon$ the dtype's machine epsilon) to it:
  the Frobenius-nearest matrix with eigenvalues at least the floor, condition
  number at most $1/\sqrt{\varepsilon}$. A symmetric matrix whose eigenvalues are
  all above the floor comes back unchanged.
- `is_point` checks symmetry and positive semi-definiteness within
  `atol · max(1, max|x_ij|)`: the cone is invariant under scaling, so $10^{30} I$ and
  $10^{-30} I$ are as good points as $I$.
"""

import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, ArrayLike, Bool, Float

from .. import _checks, registry
from ._base import AbstractManifold, Point, Scalar, Tangent, safe_norm
from ._symmetric import (
    dd_exp,
    dd_log,
    dd_log1p,
    dd_relu,
    relu,
    sym,
    sym_fdiff,
    sym_frechet,
    sym_funm,
)

__all__ = ["SPD", "SPDLogEuclidean"]

Matrix = Float[Array, "n n"]

_NEAR_STEP = 1.0  # ||W||_F^2 up to which a step is taken as P plus its increment
_NEAR_LOG = 0.25  # ||N||_F^2 up to which log(I + N) is log1p(N)


def _whiten(chol: Matrix, a: Matrix) -> Matrix:
    r"""$L^{-1} a L^{-\top}$, by two triangular solves."""
    y = solve_triangular(chol, a, lower=True)
    return sym(solve_triangular(chol, y.T, lower=True).T)


def _color(chol: Matrix, a: Matrix) -> Matrix:
    r"""$L a L^\top$."""
    return sym(chol @ a @ chol.T)


def _log_ratio(chol: Matrix, x: Matrix, y: Matrix) -> Matrix:
    r"""$\log(L^{-1} y L^{-\top})$: by `log1p` of $L^{-1}(y - x)L^{-\top}$ if small."""
    n = _whiten(chol, y - x)
    near = jnp.sum(n * n) <= _NEAR_LOG
    eye = jnp.eye(n.shape[0], dtype=n.dtype)
    close = sym_funm(jnp.where(near, n, jnp.zeros_like(n)), jnp.log1p, dd_log1p)
    far = sym_funm(jnp.where(near, eye, _whiten(chol, y)), jnp.log, dd_log)
    return jnp.where(near, close, far)


class _AbstractSPD(AbstractManifold):
    """What both metrics share: points, tangent spaces, `projx` and the origin."""

    n: eqx.AbstractVar[int]
    injectivity_radius: ClassVar[float] = math.inf  # complete, non-positive curvature

    def __check_init__(self):
        _checks.positive_int("n", self.n)

    @property
    def dim(self) -> int:
        """$n(n+1)/2$, the dimension of the symmetric matrices."""
        return self.n * (self.n + 1) // 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, self.n)

    def _matrix(self, name: str, a) -> Matrix:
        """`a` as a floating-point array of shape `(n, n)`, or a `ValueError`."""
        return _checks.float_array(name, a, self.shape, f"a matrix of {self!r}")

    def projx(self, x: Float[ArrayLike, "n n"]) -> Point:
        r"""The symmetric part of `x`, eigenvalues lifted to the floor.

        The floor is $\sqrt{\varepsilon}\,\|x\|_F$; a symmetric `x` whose
        eigenvalues are all above it comes back unchanged.
        """
        a = sym(self._matrix("x", x))
        size = safe_norm(a)
        floor = jnp.sqrt(jnp.finfo(a.dtype).eps) * jnp.where(size > 0, size, 1.0)
        lift = sym_funm(floor * jnp.eye(self.n, dtype=a.dtype) - a, relu, dd_relu)
        return sym(a + lift)

    def proju(self, x: Point, u: Float[ArrayLike, "n n"]) -> Tangent:
        """The symmetric part of `u`."""
        return sym(self._matrix("u", u))

    def origin(self, dtype=float) -> Point:
        """The identity matrix."""
        return jnp.eye(self.n, dtype=dtype)

    def is_point(self, x: Float[ArrayLike, "n n"], atol: float = 1e-5) -> Bool:
        """Whether `x` is symmetric positive semi-definite within a relative `atol`.

        The tolerance is `atol · max(1, max|x_ij|)`, relative to the scale of `x`.
        """
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.asarray(False)
        x = self._matrix("x", x)
        tol = atol * jnp.maximum(1.0, jnp.max(jnp.abs(x)))
        symmetric = jnp.all(jnp.abs(x - x.T) <= tol)
        lowest = jnp.linalg.eigvalsh(sym(x))[0]
        return symmetric & (lowest >= -tol) & jnp.all(jnp.isfinite(x))


@registry.register("manifold", "spd")
class SPD(_AbstractSPD):
    r"""$\mathrm{SPD}(n)$, affine-invariant metric $\mathrm{tr}(P^{-1} u P^{-1} v)$.

    Attributes:
        n: the matrix size (points have shape `(n, n)`; the dimension is
            $n(n+1)/2$).

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> spd = manifolds.SPD(2)
        >>> p, q = jnp.eye(2), jnp.diag(jnp.array([jnp.e**2, 1.0]))
        >>> round(spd.dist(p, q).item(), 4)  # |log e^2|
        2.0
        >>> a = jnp.array([[2.0, 1.0], [0.0, 1.0]])  # any invertible matrix
        >>> round(spd.dist(a @ p @ a.T, a @ q @ a.T).item(), 4)  # affine invariance
        2.0
    """

    n: int = eqx.field(static=True)

    def expmap(self, x: Point, u: Tangent) -> Point:
        x, u = self._matrix("x", x), self._matrix("u", u)
        chol = jnp.linalg.cholesky(x)
        w = _whiten(chol, u)
        near = jnp.sum(w * w) <= _NEAR_STEP
        zero = jnp.zeros_like(w)
        step = _color(chol, sym_funm(jnp.where(near, w, zero), jnp.expm1, dd_exp))
        far = _color(chol, sym_funm(jnp.where(near, zero, w), jnp.exp, dd_exp))
        return jnp.where(near, sym(x + step), far)

    def logmap(self, x: Point, y: Point) -> Tangent:
        x, y = self._matrix("x", x), self._matrix("y", y)
        chol = jnp.linalg.cholesky(x)
        return _color(chol, _log_ratio(chol, x, y))

    def dist(self, x: Point, y: Point) -> Scalar:
        r"""$\|\log(L^{-1} y L^{-\top})\|_F$, $L L^\top = x$ (0 gradient at y = x)."""
        x, y = self._matrix("x", x), self._matrix("y", y)
        return safe_norm(_log_ratio(jnp.linalg.cholesky(x), x, y))

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        x, u, v = self._matrix("x", x), self._matrix("u", u), self._matrix("v", v)
        chol = jnp.linalg.cholesky(x)
        return jnp.sum(_whiten(chol, u) * _whiten(chol, v))


@registry.register("manifold", "spd_log_euclidean")
class SPDLogEuclidean(_AbstractSPD):
    r"""$\mathrm{SPD}(n)$ with the log-Euclidean metric, $d = \|\log Q - \log P\|_F$.

    Attributes:
        n: the matrix size (points have shape `(n, n)`).

    The metric is flat (the matrix logarithm is an isometry onto the symmetric
    matrices) and invariant under $P \mapsto c R P R^\top$ for $c > 0$ and
    orthogonal $R$, but not under every congruence as `SPD`'s is; it is cheaper to
    reason about and its means are $\exp$ of Euclidean means of $\log P$.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import manifolds
        >>> le = manifolds.SPDLogEuclidean(2)
        >>> p = jnp.array([[2.0, 1.0], [1.0, 2.0]])  # eigenvalues 1 and 3
        >>> round(le.dist(jnp.eye(2), p).item(), 4)  # |log 3|
        1.0986
        >>> u = le.logmap(jnp.eye(2), p)
        >>> bool(jnp.abs(le.expmap(jnp.eye(2), u) - p).max() < 1e-5)
        True
    """

    n: int = eqx.field(static=True)

    def expmap(self, x: Point, u: Tangent) -> Point:
        x, u = self._matrix("x", x), self._matrix("u", u)
        log_x = sym_funm(x, jnp.log, dd_log)
        w = sym_frechet(x, u, dd_log)
        near = jnp.sum(w * w) <= _NEAR_STEP
        zero = jnp.zeros_like(w)
        step = sym_fdiff(log_x, log_x + jnp.where(near, w, zero), jnp.exp, dd_exp)
        far = sym_funm(log_x + jnp.where(near, zero, w), jnp.exp, dd_exp)
        return jnp.where(near, sym(x + step), far)

    def logmap(self, x: Point, y: Point) -> Tangent:
        x, y = self._matrix("x", x), self._matrix("y", y)
        log_x = sym_funm(x, jnp.log, dd_log)
        return sym_frechet(log_x, sym_fdiff(x, y, jnp.log, dd_log), dd_exp)

    def dist(self, x: Point, y: Point) -> Scalar:
        r"""$\|\log y - \log x\|_F$ (zero gradient at $y = x$)."""
        x, y = self._matrix("x", x), self._matrix("y", y)
        return safe_norm(sym_fdiff(x, y, jnp.log, dd_log))

    def inner(self, x: Point, u: Tangent, v: Tangent) -> Scalar:
        x, u, v = self._matrix("x", x), self._matrix("u", u), self._matrix("v", v)
        return jnp.sum(sym_frechet(x, u, dd_log) * sym_frechet(x, v, dd_log))
