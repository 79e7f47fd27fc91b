r"""Stochastic interpolants $x_t = \alpha(t) x_0 + \beta(t) x_1 + \gamma(t) z$.

Albergo, Boffi & Vanden-Eijnden (2023), *Stochastic interpolants: a unifying framework
for flows and diffusions*. The pair $(x_0, x_1)$ may be coupled in any way, $z \sim
N(0, I)$ is independent of it, and
$\alpha(0) = \beta(1) = 1$, $\alpha(1) = \beta(0) = 0$, $\gamma(0) = \gamma(1) = 0$
(checked at construction), so $x_t$ runs from the source to the target. On one sample
the path gives $x_t$ and targets whose conditional expectations given $x_t$ are:

| field | definition | per-sample target |
|---|---|---|
| velocity $b$ | $E[\dot x_t \mid x_t]$ | $u_t = \dot x_t$ (`PathSample.ut`) |
| denoiser $\eta$ | $E[z \mid x_t]$ | $z$ |
| score $s$ | $-\eta / \gamma = \nabla \log \rho_t$ | $-z / \gamma$ |
| $v$ | $E[\dot\alpha x_0 + \dot\beta x_1 \mid x_t]$ | $u_t - \dot\gamma z$ |

where $u_t = \dot\alpha x_0 + \dot\beta x_1 + \dot\gamma z$ and
$b = v + \dot\gamma \eta$ (the *two-field* form: its targets stay bounded where
$\dot\gamma$ diverges). The probability-flow ODE $dX = b\,dt$ (`flowlab.sample_ode`)
and, for every $\epsilon(t) \ge 0$, the SDE
$dX = (b + \epsilon s)\,dt + \sqrt{2\epsilon}\,dW$ carry the law of $x_0$ to that of
$x_t$ for all $t$. Where $\gamma = 0$ the score $-\eta/\gamma$ is $0/0$: integrate on
$[t_\epsilon, 1 - t_\epsilon]$ or let $\epsilon(t)$ vanish at the ends. With the
fields as per-sample functions, `flowlab.sampling.interpolant_sde(b_fn, score_fn,
epsilon)` builds that SDE, the score from a denoiser by `denoiser_to_score`.

The interpolants are small final classes, one per family; they share
`AbstractInterpolant`'s coefficients (by `jax.jvp`), targets and conversions:

| class (factory) | $\alpha$, $\beta$ |
| :--- | :--- |
| `StochasticInterpolant(alpha_fn, beta_fn, gamma_fn)` | any |
| `LinearInterpolant` (`linear_interpolant`) | $1 - t$, $t$ |
| `TrigonometricInterpolant` (`trigonometric_interpolant`) | $\cos, \sin(\pi t/2)$ |
| `EncodingDecodingInterpolant` (`encoding_decoding_interpolant`) | to $z$, then back |
| `OneSidedInterpolant` (`one_sided_interpolant`) | any; the source is the noise |
| `MirrorInterpolant` (`mirror_interpolant`) | $x_t = x_1 + \gamma z$ |

The first four are two-sided: $z$ is drawn independently of the pair. A one-sided
interpolant has $\gamma \equiv 0$ and its noise is $x_0$ (`PathSample.z` is `x0`),
$\eta = E[x_0 \mid x_t]$ and $s = -\eta/\alpha$; a mirror interpolant replaces
$x_0$ by $x_1$, $x_t = (\alpha + \beta) x_1 + \gamma z$.

**Schrödinger-bridge CFM** (Tong et al. 2023) is `schrodinger_bridge(sigma)`:
$\alpha = 1 - t$, $\beta = t$, $\gamma = \sigma\sqrt{t(1-t)}$, trained on pairs from
the entropic OT plan of regularisation $2\sigma^2$ (`couplings.sinkhorn(epsilon=2
sigma**2)`). Its target is $\frac{1-2t}{2t(1-t)}(x_t - (1-t)x_0 - t x_1) + x_1 - x_0$
and its conditional score $-z/(\sigma\sqrt{t(1-t)})$.
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ._gamma import (
    QuadraticGamma,
    Sin2Gamma,
    SqrtGamma,
    ZeroGamma,
    quadratic_gamma,
    sin2_gamma,
    sqrt_gamma,
    zero_gamma,
)
from ._interpolant_base import (
    _S,
    _X,
    AbstractInterpolant,
    AbstractPairInterpolant,
    AbstractTwoSidedInterpolant,
    CoefficientFn,
    InterpolantCoefficients,
)

__all__ = [
    "KINDS",
    "AbstractInterpolant",
    "AbstractPairInterpolant",
    "AbstractTwoSidedInterpolant",
    "EncodingDecodingInterpolant",
    "InterpolantCoefficients",
    "LinearInterpolant",
    "MirrorInterpolant",
    "OneSidedInterpolant",
    "QuadraticGamma",
    "Sin2Gamma",
    "SqrtGamma",
    "StochasticInterpolant",
    "TrigonometricInterpolant",
    "ZeroGamma",
    "encoding_decoding_interpolant",
    "linear_interpolant",
    "mirror_interpolant",
    "one_sided_interpolant",
    "quadratic_gamma",
    "schrodinger_bridge",
    "sin2_gamma",
    "sqrt_gamma",
    "trigonometric_interpolant",
    "zero_gamma",
]


class StochasticInterpolant(AbstractPairInterpolant):
    r"""A two-sided interpolant from three user functions of a scalar time.

    Attributes:
        alpha_fn: $t \mapsto \alpha(t)$; $\alpha(0) = 1$, $\alpha(1) = 0$.
        beta_fn: $t \mapsto \beta(t)$; $\beta(0) = 0$, $\beta(1) = 1$.
        gamma_fn: $t \mapsto \gamma(t)$; $\gamma(0) = \gamma(1) = 0$ (default 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import paths
        >>> path = paths.StochasticInterpolant(
        ...     lambda t: 1 - t, lambda t: t, paths.sin2_gamma(0.5))
        >>> ps = path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 0.5)
        >>> bool(jnp.allclose(ps.xt, 0.5 + 0.5 * ps.z))
        True
    """

    alpha_fn: CoefficientFn
    beta_fn: CoefficientFn
    gamma_fn: CoefficientFn = eqx.field(default_factory=ZeroGamma)

    def alpha(self, t: _S) -> _S:
        return self.alpha_fn(t)

    def beta(self, t: _S) -> _S:
        return self.beta_fn(t)


class LinearInterpolant(AbstractPairInterpolant):
    r"""$\alpha = 1 - t$, $\beta = t$ and $\gamma$ = `gamma_fn` (default 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import paths
        >>> path = paths.linear_interpolant(paths.sin2_gamma(0.5))
        >>> ps = path.sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), 0.5)
        >>> bool(jnp.allclose(ps.xt, 0.5 + 0.5 * ps.z))
        True
    """

    gamma_fn: CoefficientFn = eqx.field(default_factory=ZeroGamma)

    def alpha(self, t: _S) -> _S:
        return 1 - t

    def beta(self, t: _S) -> _S:
        return t


class TrigonometricInterpolant(AbstractPairInterpolant):
    r"""$\alpha = \cos(\pi t / 2)$, $\beta = \sin(\pi t / 2)$ and `gamma_fn`."""

    gamma_fn: CoefficientFn = eqx.field(default_factory=ZeroGamma)

    def alpha(self, t: _S) -> _S:
        return jnp.cos(0.5 * jnp.pi * t)

    def beta(self, t: _S) -> _S:
        return jnp.sin(0.5 * jnp.pi * t)


class EncodingDecodingInterpolant(AbstractPairInterpolant):
    r"""Albergo et al.'s encoder-decoder: the sample is noised to $z$, then decoded.

    $x_t = \cos^2(\pi t)\,(1_{[0, 1/2)}(t)\, x_0 + 1_{(1/2, 1]}(t)\, x_1)
    + \gamma(t)\, z$, so $x_{1/2} = z$ for the default $\gamma = \sin^2(\pi t)$:
    $\alpha = \cos^2(\pi t)$ on $[0, 1/2)$ and 0 after, $\beta = \cos^2(\pi t)$ on
    $(1/2, 1]$ and 0 before (both $C^1$).
    """

    gamma_fn: CoefficientFn = eqx.field(default_factory=lambda: Sin2Gamma(1.0))

    def alpha(self, t: _S) -> _S:
        return jnp.where(t < 0.5, jnp.cos(jnp.pi * t) ** 2, 0.0)

    def beta(self, t: _S) -> _S:
        return jnp.where(t > 0.5, jnp.cos(jnp.pi * t) ** 2, 0.0)


def _one_minus(t):
    return 1 - t


def _identity(t):
    return t


class OneSidedInterpolant(AbstractInterpolant):
    r"""$x_t = \alpha x_0 + \beta x_1$ from a standard normal source $x_0$.

    The noise is $x_0$: $\eta = E[x_0 \mid x_t]$, $s = -\eta / \alpha$, and
    `PathSample.z` is `x0`; nothing is drawn.

    Attributes:
        alpha_fn: $t \mapsto \alpha(t)$ (default $1 - t$).
        beta_fn: $t \mapsto \beta(t)$ (default $t$).
    """

    alpha_fn: CoefficientFn = _one_minus
    beta_fn: CoefficientFn = _identity

    def alpha(self, t: _S) -> _S:
        return self.alpha_fn(t)

    def beta(self, t: _S) -> _S:
        return self.beta_fn(t)

    def gamma(self, t: _S) -> _S:
        return jnp.zeros_like(t)

    def source(self, x0: _X, x1: _X) -> _X:
        return x0

    def draw_noise(self, key: PRNGKeyArray | None, x1: _X, dtype) -> _X:
        del key
        return jnp.zeros(x1.shape, dtype)

    def noise(self, x0: _X, z: _X) -> _X:
        return x0

    def noise_coefficients(self, c: InterpolantCoefficients) -> tuple[_S, _S]:
        r"""$(\alpha, \dot\alpha)$: the source is the noise."""
        return c.alpha, c.d_alpha


class MirrorInterpolant(AbstractTwoSidedInterpolant):
    r"""$x_t = x_1 + \gamma(t) z$: from the data to itself (the source is ignored).

    The linear interpolant with `x1` in the place of `x0`; `PathSample.x0` reports
    it so.

    Attributes:
        gamma_fn: $t \mapsto \gamma(t)$, zero at both ends.
    """

    gamma_fn: CoefficientFn

    def alpha(self, t: _S) -> _S:
        return _one_minus(t)

    def beta(self, t: _S) -> _S:
        return _identity(t)

    def source(self, x0: _X, x1: _X) -> _X:
        return x1


KINDS: dict[str, type[AbstractInterpolant]] = {
    "two_sided": AbstractPairInterpolant,
    "one_sided": OneSidedInterpolant,
    "mirror": MirrorInterpolant,
}
"""The structural kinds of interpolant (module docstring) and their classes."""


def _or_zero(gamma_fn: CoefficientFn | None) -> CoefficientFn:
    return ZeroGamma() if gamma_fn is None else gamma_fn


def linear_interpolant(gamma_fn: CoefficientFn | None = None) -> LinearInterpolant:
    r"""$\alpha = 1 - t$, $\beta = t$ and `gamma_fn` (default $\gamma \equiv 0$)."""
    return LinearInterpolant(_or_zero(gamma_fn))


def trigonometric_interpolant(
    gamma_fn: CoefficientFn | None = None,
) -> TrigonometricInterpolant:
    r"""$\alpha = \cos(\pi t / 2)$, $\beta = \sin(\pi t / 2)$ and `gamma_fn`."""
    return TrigonometricInterpolant(_or_zero(gamma_fn))


def encoding_decoding_interpolant(
    gamma_fn: CoefficientFn | None = None,
) -> EncodingDecodingInterpolant:
    r"""The encoder-decoder interpolant; `gamma_fn` defaults to $\sin^2(\pi t)$."""
    return EncodingDecodingInterpolant(Sin2Gamma(1.0) if gamma_fn is None else gamma_fn)


def one_sided_interpolant(
    alpha_fn: CoefficientFn = _one_minus, beta_fn: CoefficientFn = _identity
) -> OneSidedInterpolant:
    r"""$x_t = \alpha x_0 + \beta x_1$ from a standard normal source $x_0$.

    The noise is $x_0$: $\eta = E[x_0 \mid x_t]$, $s = -\eta / \alpha$.
    Defaults: $\alpha = 1 - t$, $\beta = t$.
    """
    return OneSidedInterpolant(alpha_fn, beta_fn)


def mirror_interpolant(gamma_fn: CoefficientFn) -> MirrorInterpolant:
    r"""$x_t = x_1 + \gamma(t) z$: from the data to itself (the source is ignored)."""
    return MirrorInterpolant(gamma_fn)


def schrodinger_bridge(sigma: float) -> LinearInterpolant:
    r"""SB-CFM's path: $\alpha = 1-t$, $\beta = t$, $\gamma = \sigma\sqrt{t(1-t)}$.

    Schrödinger-bridge CFM is this path trained on pairs from the entropic OT plan of
    regularisation $2\sigma^2$: `couplings.sinkhorn(epsilon=2 * sigma**2)`.
    """
    if isinstance(sigma, int | float) and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}.")
    return LinearInterpolant(SqrtGamma(sigma**2))
