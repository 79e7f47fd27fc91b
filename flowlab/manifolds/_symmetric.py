r"""Functions of symmetric matrices, with derivatives finite at repeated eigenvalues.

For $A = V \operatorname{diag}(\lambda) V^\top$ (`jnp.linalg.eigh`) the matrix
function is $f(A) = V \operatorname{diag}(f(\lambda)) V^\top$, and its derivative
in a direction $E$ is the Daleckii–Krein formula

$$Df(A)[E] = V \big(F \circ (V^\top E V)\big) V^\top, \qquad
F_{ab} = f[\lambda_a, \lambda_b] = \frac{f(\lambda_a) - f(\lambda_b)}
{\lambda_a - \lambda_b}, \quad f[\lambda, \lambda] = f'(\lambda).$$

Differentiating `eigh` itself divides by $\lambda_a - \lambda_b$ (NaN at $A = I$);
these helpers never do. Each scalar function comes with its first divided
difference `dd(x, y)` in a closed form that is accurate for $x \approx y$ (no
cancellation, $dd(x, x) = f'(x)$).

Second derivatives are finite too, also under `jax.hessian` (forward over
reverse). That needs the derivative's coefficients to be smooth functions of $A$
alone, which $V$ is not; so a derivative is applied through the Fréchet operator
$K(A)_{ijkl} = \sum_{ab} F_{ab} V_{ia} V_{ka} V_{jb} V_{lb}$, an $n^4$ array (smooth
in $A$) with its own `jax.custom_jvp` from the second Daleckii–Krein formula with
second divided differences $f[\lambda_a, \lambda_c, \lambda_b]$. A derivative costs
$O(n^5)$ time and $O(n^4)$ memory per matrix: meant for the small matrices (n up to
about 10) of SPD manifolds. Third derivatives at repeated eigenvalues are not
finite.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "dd_exp",
    "dd_log",
    "dd_log1p",
    "dd_relu",
    "relu",
    "sym",
    "sym_fdiff",
    "sym_frechet",
    "sym_funm",
]

Matrix = Float[Array, "n n"]
ScalarFn = Callable[[Array], Array]
DividedDifference = Callable[[Array, Array], Array]

_SERIES = 1e-2  # |t| below which expm1(t)/t and log1p(t)/t use their Taylor series


def sym(a: Float[Array, "*b n n"]) -> Float[Array, "*b n n"]:
    r"""The symmetric part $(A + A^\top)/2$ (exactly symmetric in floating point)."""
    return (a + jnp.swapaxes(a, -1, -2)) / 2


def _expm1c(t):
    r"""$(e^t - 1)/t$, with its Taylor series (error below $t^7/8!$) for small $t$."""
    small = jnp.abs(t) < _SERIES
    ts = jnp.where(small, 1.0, t)
    series = 1 + t / 2 * (
        1 + t / 3 * (1 + t / 4 * (1 + t / 5 * (1 + t / 6 * (1 + t / 7))))
    )
    return jnp.where(small, series, jnp.expm1(ts) / ts)


def _log1pc(r):
    r"""$\log(1 + r)/r$ for $r \ge 0$, with its Taylor series for small $r$."""
    small = r < _SERIES
    rs = jnp.where(small, 1.0, r)
    series = jnp.full_like(r, 1 / 8)  # 1 - r/2 + r^2/3 - ... - r^7/8, by Horner
    for k in range(7, 0, -1):
        series = 1 / k - r * series
    return jnp.where(small, series, jnp.log1p(rs) / rs)


def dd_exp(x, y):
    r"""$\exp[x, y] = e^{\max}\,(e^{-\delta} - 1)/(-\delta)$, $\delta = |x - y|$.

    Also the divided difference of `expm1`.
    """
    lo, hi = jnp.minimum(x, y), jnp.maximum(x, y)
    return jnp.exp(hi) * _expm1c(lo - hi)


def dd_log(x, y):
    r"""$\log[x, y] = \log(1 + r)/(r \min)$, $r = |x - y|/\min$, for $x, y > 0$."""
    lo, hi = jnp.minimum(x, y), jnp.maximum(x, y)
    return _log1pc((hi - lo) / lo) / lo


def dd_log1p(x, y):
    r"""The divided difference of $\log(1 + x)$, for $x, y > -1$."""
    lo, hi = jnp.minimum(x, y), jnp.maximum(x, y)
    return _log1pc((hi - lo) / (1 + lo)) / (1 + lo)


def relu(x):
    r"""$\max(x, 0)$."""
    return jnp.maximum(x, 0)


def dd_relu(x, y):
    """The divided difference of `relu`.

    1 where both are positive, 0 where neither is, else the slope of the chord,
    which divides by at least the positive one.
    """
    lo, hi = jnp.minimum(x, y), jnp.maximum(x, y)
    mixed = (lo <= 0) & (hi > 0)
    chord = hi / jnp.where(mixed, hi - lo, 1.0)
    return jnp.where(lo > 0, 1.0, jnp.where(mixed, chord, 0.0)).astype(chord.dtype)


def _dd2(dd: DividedDifference, x, y, z):
    r"""The second divided difference $f[x, y, z]$.

    The divided difference of $dd(\cdot, y)$ between $x$ and $z$, or its slope at
    the midpoint where $|x - z| \le \varepsilon^{1/3} \max(1, |x|, |z|)$ (error
    $O(\varepsilon^{2/3})$ either way).
    """
    x, y, z = jnp.broadcast_arrays(x, y, z)
    eps = jnp.finfo(x.dtype).eps
    scale = jnp.maximum(1.0, jnp.maximum(jnp.abs(x), jnp.abs(z)))
    apart = jnp.abs(x - z) > eps ** (1 / 3) * scale
    chord = (dd(x, y) - dd(z, y)) / jnp.where(apart, x - z, 1.0)
    mid = (x + z) / 2
    slope = jax.jvp(lambda s: dd(s, y), (mid,), (jnp.ones_like(mid),))[1]
    return jnp.where(apart, chord, slope)


def _eig_dd(a: Matrix, dd: DividedDifference):
    """Eigenvalues, eigenvectors and the divided differences `F` of `a`."""
    lam, v = jnp.linalg.eigh(sym(a))
    return lam, v, dd(lam[:, None], lam[None, :])


def _kernel(v: Matrix, f_dd: Matrix) -> Float[Array, "n n n n"]:
    return jnp.einsum("ab,ia,ka,jb,lb->ijkl", f_dd, v, v, v, v)


def _apply(k: Float[Array, "n n n n"], e: Matrix) -> Matrix:
    return sym(jnp.einsum("ijkl,kl->ij", k, sym(e)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _frechet_kernel(a: Matrix, dd: DividedDifference) -> Float[Array, "n n n n"]:
    """$K(A)$: `_apply(K, E)` is $Df(A)[E]$ (Daleckii–Krein)."""
    _, v, f_dd = _eig_dd(a, dd)
    return _kernel(v, f_dd)


@_frechet_kernel.defjvp
def _frechet_kernel_jvp(dd, primals, tangents):
    (a,), (h,) = primals, tangents
    lam, v, f_dd = _eig_dd(a, dd)
    # D^2 f(A)[H, E] = V (sum_c f[l_a, l_c, l_b] (H~_ac E~_cb + E~_ac H~_cb)) V^T
    f2 = _dd2(dd, lam[:, None, None], lam[None, :, None], lam[None, None, :])
    g = f2 * (v.T @ sym(h) @ v)[:, :, None]
    half = jnp.einsum("acb,ia,kc,jb,lb->ijkl", g, v, v, v, v)
    return _kernel(v, f_dd), half + jnp.transpose(half, (1, 0, 3, 2))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def sym_funm(a: Matrix, f: ScalarFn, dd: DividedDifference) -> Matrix:
    r"""$f(A)$ for the symmetric part of `a`, $f$ applied to the eigenvalues.

    Args:
        a: a square matrix (its symmetric part is used).
        f: the scalar function, elementwise (`jnp.exp`).
        dd: its first divided difference, accurate for close arguments (`dd_exp`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> a = jnp.eye(2)  # repeated eigenvalues: eigh's own derivative is NaN
        >>> g = jax.grad(lambda a: sym_funm(a, jnp.exp, dd_exp).sum())(a)
        >>> [round(x, 4) for x in g.ravel().tolist()]
        [2.7183, 2.7183, 2.7183, 2.7183]
    """
    lam, v = jnp.linalg.eigh(sym(a))
    return sym((v * f(lam)[None, :]) @ v.T)


@sym_funm.defjvp
def _sym_funm_jvp(f, dd, primals, tangents):
    (a,), (da,) = primals, tangents
    return sym_funm(a, f, dd), _apply(_frechet_kernel(a, dd), da)


def sym_frechet(a: Matrix, e: Matrix, dd: DividedDifference) -> Matrix:
    r"""The Fréchet derivative $Df(A)[E]$ of the function with divided difference `dd`.

    At the symmetric part of `a`, in the direction `sym(e)`.
    """
    return _apply(_frechet_kernel(a, dd), e)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def sym_fdiff(a: Matrix, b: Matrix, f: ScalarFn, dd: DividedDifference) -> Matrix:
    r"""$f(B) - f(A)$, accurate relative to $B - A$ when $B \approx A$.

    With $A = U \operatorname{diag}(\lambda) U^\top$ and
    $B = W \operatorname{diag}(\mu) W^\top$, exactly
    $f(B) - f(A) = U \big(\hat F \circ (U^\top (B - A) W)\big) W^\top$,
    $\hat F_{ij} = f[\lambda_i, \mu_j]$: the difference is never formed by
    subtracting two rounded matrix functions.
    """
    a, b = sym(a), sym(b)
    lam, u = jnp.linalg.eigh(a)
    mu, w = jnp.linalg.eigh(b)
    f_hat = dd(lam[:, None], mu[None, :])
    return sym(u @ (f_hat * (u.T @ (b - a) @ w)) @ w.T)


@sym_fdiff.defjvp
def _sym_fdiff_jvp(f, dd, primals, tangents):
    (a, b), (da, db) = primals, tangents
    out = sym_fdiff(a, b, f, dd)
    return out, _apply(_frechet_kernel(b, dd), db) - _apply(_frechet_kernel(a, dd), da)
