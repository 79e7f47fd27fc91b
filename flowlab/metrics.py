r"""Sample-quality and transport metrics.

- `wasserstein2`: the exact 2-Wasserstein distance between two equal-size point
  clouds with uniform weights, $W_2 = \big(\min_\pi \tfrac1n\sum_i
  \|x_i - y_{\pi(i)}\|^2\big)^{1/2}$, from an exact assignment (no entropic bias).
- `mmd`: maximum mean discrepancy with a sum of Gaussian kernels.
- `path_energy`: $E\int_0^1 \|v(t, x_t)\|^2 dt$ along the flow of a field, and
  `normalized_path_energy` $= |E\!\int\!\|v\|^2 - W_2^2| / W_2^2$ (Tong et al.'s NPE).
"""

from collections.abc import Sequence
from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float
from scipy.optimize import linear_sum_assignment

from ._types import VelocityFn
from .sampling import sample_ode

__all__ = ["mmd", "normalized_path_energy", "path_energy", "wasserstein2"]


def wasserstein2(x: Float[ArrayLike, "n *d"], y: Float[ArrayLike, "n *d"]) -> float:
    """Exact 2-Wasserstein distance between two sets of `n` points (uniform weights).

    Solves the assignment problem on the squared-Euclidean cost with scipy's
    Jonker-Volgenant solver, in float64 on the host. Cost grows as $O(n^3)$: about
    3 s for n = 2,000 and 4-5 minutes for n = 10,000 on one CPU core.
    """
    x = np.asarray(x, np.float64).reshape(np.shape(x)[0], -1)
    y = np.asarray(y, np.float64).reshape(np.shape(y)[0], -1)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must hold the same number of points of the same size, got "
            f"{x.shape} and {y.shape}."
        )
    cost = np.sum(x**2, axis=1)[:, None] + np.sum(y**2, axis=1)[None, :] - 2 * x @ y.T
    np.maximum(cost, 0.0, out=cost)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def mmd(
    x: Float[ArrayLike, "n *d"],
    y: Float[ArrayLike, "m *d"],
    bandwidths: Sequence[float] = (0.1, 0.5, 1.0, 2.0, 5.0),
) -> Float[Array, ""]:
    r"""Unbiased squared MMD with kernel $\sum_b \exp(-\|x - y\|^2 / (2 b^2))$."""
    x = jnp.asarray(x).reshape(jnp.shape(x)[0], -1)
    y = jnp.asarray(y).reshape(jnp.shape(y)[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same event size, got {x.shape}, {y.shape}."
        )
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("mmd needs at least two points in each set.")

    def kernel(a, b):
        d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
        d2 = jnp.maximum(d2, 0.0)
        return sum(jnp.exp(-d2 / (2 * bw**2)) for bw in bandwidths)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    sum_xx = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    sum_yy = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    return sum_xx + sum_yy - 2 * jnp.mean(kxy)


class _EnergyField(eqx.Module):
    """Dynamics of `(x, kinetic energy so far)` for one sample.

    A module rather than a closure: equal for the same `v`, so repeated calls reuse
    `sample_ode`'s compiled solve instead of retracing `v`.
    """

    v: VelocityFn = eqx.field(static=True)

    def __call__(self, t, state, args):
        x, _ = state
        dx = self.v(t, x, args)
        return dx, jnp.sum(dx**2)


def path_energy(
    v: VelocityFn,
    x0: Float[Array, "batch *event"],
    args: Any = None,
    *,
    solver: str | diffrax.AbstractSolver = "euler",
    steps: int | None = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[Float[Array, "batch *event"], Float[Array, ""]]:
    r"""Samples and the mean kinetic energy $E\int_0^1 \|v(t, x_t)\|^2 dt$.

    The energy is integrated alongside the flow with the same solver and steps, so
    the samples are those `sample_ode` would return.

    Returns:
        `(x1, energy)`: the pushed-forward batch and the batch mean of the energy.
    """
    x0 = jnp.asarray(x0)
    state = (x0, jnp.zeros((x0.shape[0],), x0.dtype))
    out = sample_ode(
        _EnergyField(v), state, args, solver=solver, steps=steps, rtol=rtol, atol=atol
    )
    x1, energy = out.x
    return x1, jnp.mean(energy)


def normalized_path_energy(energy: float, w2: float) -> float:
    r"""Tong et al.'s NPE, $|E\!\int\!\|v\|^2dt - W_2^2| / W_2^2$."""
    if not w2 > 0:
        raise ValueError(f"w2 must be positive, got {w2}.")
    return float(abs(float(energy) - w2**2) / w2**2)
