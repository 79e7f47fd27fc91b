r"""The wrapped normal: a Gaussian on a tangent space, pushed through `expmap`.

`WrappedNormal(manifold, loc, scale)` draws $v \sim \mathcal{N}(0, \sigma^2 I_d)$ in
an orthonormal basis $e_1, \dots, e_d$ of $T_{\mu}M$ ($d$ = `manifold.dim`,
$\mu$ = `loc`, $\sigma$ = `scale`) and returns $x = \exp_\mu(\sum_i v_i e_i)$. Its
log-density with respect to the Riemannian volume is read off the pre-image
$u = \log_\mu(x)$:

$$\log p(x) = \log \mathcal{N}(v; 0, \sigma^2 I_d) - \log J(u), \qquad
J(u) = \sqrt{\det(A^\top G_x A)},$$

where $A$ is the Jacobian of $v \mapsto \exp_\mu(\sum_i v_i e_i)$ (ambient
coordinates, flattened) and $G_x$ the metric at $x$, so $J$ is the volume change of
`expmap(loc, .)` (1 on a flat space, $(\sin r / r)^{d-1}$ on $S^d$,
$(\sinh r / r)^{d-1}$ on $H^d$, $(\sin\frac{r}{2} / \frac{r}{2})^2$ on SO(3), with
$r = \|u\|_\mu$).

Only the shortest pre-image counts: the density is exact where `expmap(loc, .)` is
one-to-one (tangent vectors shorter than `manifold.injectivity_radius`, everywhere on
complete spaces without a cut locus such as $\mathbb{R}^d$ and $H^d$), and on a
compact manifold it leaves out the mass that the Gaussian puts beyond the cut
locus, which then wraps round (on the torus and the sphere this is the usual
"wrapped" approximation). That mass is $P(\sigma \chi_d > \text{radius})$:
negligible for $\sigma$ well below the injectivity radius ($< 10^{-8}$ on $S^2$ at
$\sigma = 0.5$), but for a wide `scale` on a compact manifold `log_prob` is not
normalised; use a uniform base there instead.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .. import _checks
from ._base import AbstractManifold, Point, Scalar, Tangent

__all__ = ["WrappedNormal", "log_expmap_jacobian", "tangent_basis"]


def _gram(inner_fn, vs: Float[Array, "k *shape"]) -> Float[Array, "k k"]:
    """The matrix of `inner_fn(v_i, v_j)` over the leading axis of `vs`."""
    return jax.vmap(lambda a: jax.vmap(lambda b: inner_fn(a, b))(vs))(vs)


def tangent_basis(manifold: AbstractManifold, x: Point) -> Float[Array, "dim *shape"]:
    r"""An orthonormal basis of $T_x M$ in the metric `manifold.inner` at `x`.

    The ambient standard basis is projected on $T_x M$ (`proju`), and the Gram
    matrix $G_{ij} = \langle P e_i, P e_j\rangle_x$ of the projections is
    diagonalised: its `dim` largest eigenpairs $(\lambda_k, q_k)$ give
    $b_k = \lambda_k^{-1/2} \sum_i q_{ki} P e_i$, with
    $\langle b_k, b_l\rangle_x = \delta_{kl}$ (the other eigenvalues are zero up to
    rounding: the projections span a `dim`-dimensional space).

    The basis is defined up to a rotation, and its derivative in `x` is not
    (eigenvectors of repeated eigenvalues): differentiate quantities that do not
    depend on the choice, as `WrappedNormal.log_prob` does.

    Args:
        manifold: the manifold.
        x: a point of it.

    Returns:
        The basis vectors $b_1, \dots, b_d$ stacked on the first axis.
    """
    x = jnp.asarray(x)
    if x.shape != manifold.shape:
        raise ValueError(
            f"x must have the shape {manifold.shape} of a point of {manifold!r}, "
            f"got {x.shape}."
        )
    n = math.prod(manifold.shape)
    dtype = jnp.result_type(x, float)
    eye = jnp.eye(n, dtype=dtype).reshape((n, *manifold.shape))
    projected = jax.vmap(lambda e: manifold.proju(x, e))(eye)
    gram = _gram(lambda a, b: manifold.inner(x, a, b), projected)
    lam, q = jnp.linalg.eigh(gram)  # ascending: the last `dim` are the basis
    lam, q = lam[n - manifold.dim :], q[:, n - manifold.dim :]
    coef = q / jnp.sqrt(lam)[None, :]  # (n, dim)
    return jnp.tensordot(coef.T, projected, axes=1)


def log_expmap_jacobian(manifold: AbstractManifold, x: Point, u: Tangent) -> Scalar:
    r"""$\log J(u)$, the log volume change of `expmap(x, .)` at the tangent `u`.

    $J(u) = \sqrt{\det(A^\top G_y A) / \det(B^\top G_x B)}$, with $B$ the columns
    of a basis of $T_x M$, $A$ the Jacobian of $c \mapsto \exp_x(u + Bc)$ at
    $c = 0$ and $G$ the metric at $x$ and at $y = \exp_x(u)$. The ratio does not
    depend on $B$ (for an orthonormal one the denominator is 1), which is held
    fixed (`stop_gradient`) and projected on $T_x M$, so the result has the
    derivatives of $\log J$ in `x` and `u`.

    Args:
        manifold: the manifold.
        x: the base point.
        u: a tangent vector at `x`.

    Returns:
        The scalar $\log J(u)$; 0 on a flat manifold.
    """
    basis = jax.lax.stop_gradient(tangent_basis(manifold, x))
    basis = jax.vmap(lambda b: manifold.proju(x, b))(basis)  # tangent at x, to O(dx)

    def exp_fn(c: Float[Array, " dim"]) -> Float[Array, " n"]:
        return manifold.expmap(x, u + jnp.tensordot(c, basis, axes=1)).reshape(-1)

    zero = jnp.zeros((manifold.dim,), jnp.result_type(basis, u))
    a = jax.jacfwd(exp_fn)(zero).T.reshape(basis.shape)  # (dim, *shape)
    y = manifold.expmap(x, u)
    gram_y = _gram(lambda p, q: manifold.inner(y, p, q), a)
    gram_x = _gram(lambda p, q: manifold.inner(x, p, q), basis)
    return 0.5 * (_logdet_pd(gram_y) - _logdet_pd(gram_x))


def _logdet_pd(g: Float[Array, "k k"]) -> Scalar:
    """`log det g` of a symmetric positive-definite `g`, by Cholesky."""
    chol = jnp.linalg.cholesky(0.5 * (g + g.T))
    return 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))


class WrappedNormal(eqx.Module):
    r"""The wrapped normal at `loc`, with the tangent standard deviation `scale`.

    Attributes:
        manifold: the manifold.
        loc: its centre $\mu$, a point (by default `manifold.origin()`).
        scale: $\sigma > 0$, the standard deviation of each coordinate of the
            Gaussian in an orthonormal basis of $T_\mu M$ (a float, or a scalar
            array to differentiate).

    Example:
        >>> import jax
        >>> from flowlab import manifolds
        >>> s2 = manifolds.Sphere(2)
        >>> base = manifolds.WrappedNormal(s2, scale=0.3)
        >>> x = base.sample(jax.random.key(0), 5)
        >>> x.shape, jax.vmap(base.log_prob)(x).shape
        ((5, 3), (5,))
    """

    manifold: AbstractManifold
    loc: Point
    scale: Float[Array, ""]

    def __init__(
        self,
        manifold: AbstractManifold,
        loc: Float[ArrayLike, "*shape"] | None = None,
        scale: float | Float[ArrayLike, ""] = 1.0,
    ):
        _checks.instance_of(
            "manifold", manifold, AbstractManifold, "manifold", "manifolds.Sphere(2)"
        )
        loc = manifold.origin() if loc is None else jnp.asarray(loc)
        if loc.shape != manifold.shape:
            raise ValueError(
                f"loc must be a point of {manifold!r}, of shape {manifold.shape}, "
                f"got shape {loc.shape}."
            )
        if _checks.is_number(scale) and not scale > 0:
            raise ValueError(f"scale must be a positive float, got {scale!r}.")
        if jnp.shape(scale) != ():
            raise ValueError(
                f"scale must be a scalar (one standard deviation for every "
                f"direction), got shape {jnp.shape(scale)}."
            )
        self.manifold = manifold
        self.loc = loc
        self.scale = jnp.asarray(scale, jnp.result_type(loc, float))

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n *shape"]:
        """`n` independent points, stacked on the first axis."""
        key = _checks.key(key)
        _checks.positive_int("n", n)
        basis = tangent_basis(self.manifold, self.loc)
        v = self.scale * jax.random.normal(key, (n, self.manifold.dim), basis.dtype)
        u = jnp.tensordot(v, basis, axes=1)
        return jax.vmap(lambda w: self.manifold.expmap(self.loc, w))(u)

    def log_prob(self, x: Point) -> Scalar:
        r"""The log-density at one point `x`, by the Riemannian volume.

        From the shortest pre-image $u = \log_\mu(x)$ only (see the module's
        docstring); $+\infty$ at the cut locus of `loc`, where $J = 0$.
        """
        m, loc, scale = self.manifold, self.loc, self.scale
        u = m.logmap(loc, x)
        sq = m.inner(loc, u, u)
        log_gauss = (
            -0.5 * sq / scale**2
            - m.dim * jnp.log(scale)
            - 0.5 * m.dim * jnp.log(2 * jnp.pi)
        )
        return log_gauss - log_expmap_jacobian(m, loc, u)
