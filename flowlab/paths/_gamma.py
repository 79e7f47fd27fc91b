r"""Noise scales $\gamma(t)$ of stochastic interpolants, zero at $t = 0$ and $t = 1$."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "QuadraticGamma",
    "Sin2Gamma",
    "SqrtGamma",
    "ZeroGamma",
    "quadratic_gamma",
    "sin2_gamma",
    "sqrt_gamma",
    "zero_gamma",
]

_T = Float[ArrayLike, ""]


class ZeroGamma(eqx.Module):
    r"""$\gamma \equiv 0$: a deterministic interpolant (a flow-matching path)."""

    def __call__(self, t: _T) -> Float[Array, ""]:
        return jnp.zeros_like(t)


class SqrtGamma(eqx.Module):
    r"""$\gamma(t) = \sqrt{a\,t(1-t)}$ (Brownian-bridge noise).

    $\dot\gamma = a(1-2t)/(2\gamma)$ diverges at $t = 0, 1$, and so does the velocity
    target there: draw times in $[t_\epsilon, 1 - t_\epsilon]$ (the interpolant
    losses' default) or regress the bounded two-field targets.
    """

    a: float = 1.0

    def __call__(self, t: _T) -> Float[Array, ""]:
        return jnp.sqrt(self.a * t * (1 - t))


class QuadraticGamma(eqx.Module):
    r"""$\gamma(t) = a\,t(1-t)$."""

    a: float = 1.0

    def __call__(self, t: _T) -> Float[Array, ""]:
        return self.a * t * (1 - t)


class Sin2Gamma(eqx.Module):
    r"""$\gamma(t) = a \sin^2(\pi t)$."""

    a: float = 1.0

    def __call__(self, t: _T) -> Float[Array, ""]:
        return self.a * jnp.sin(jnp.pi * t) ** 2


def zero_gamma() -> ZeroGamma:
    r"""$\gamma \equiv 0$."""
    return ZeroGamma()


def sqrt_gamma(a: float = 1.0) -> SqrtGamma:
    r"""$\gamma(t) = \sqrt{a\,t(1-t)}$."""
    return SqrtGamma(a)


def quadratic_gamma(a: float = 1.0) -> QuadraticGamma:
    r"""$\gamma(t) = a\,t(1-t)$."""
    return QuadraticGamma(a)


def sin2_gamma(a: float = 1.0) -> Sin2Gamma:
    r"""$\gamma(t) = a\sin^2(\pi t)$."""
    return Sin2Gamma(a)
