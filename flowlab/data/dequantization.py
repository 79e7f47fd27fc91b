r"""Uniform dequantisation: continuous points from data on a grid.

A flow has a density, and a density fitted to data on a grid (pixels of a few
levels) can grow without bound on the grid points. Dequantisation trains and scores
it on $y = x + u$ with $u$ uniform on the grid cell of $x$ instead; then the
discrete log-likelihood is bounded below by the continuous one (Theis et al., 2016),

$$\log P(x) \ge \mathbb E_u[\log p(x + u)] + D \log \Delta,$$

for an event of size $D$ and bin width $\Delta$ (Jensen's inequality on
$P(x) = \int_{\text{cell}(x)} p(y)\,dy$), which `flowlab.metrics.bits_per_dim`
turns into bits per dimension.

**Convention: the data values are the centres of their bins**, so
$u \sim U(-\Delta/2, \Delta/2)^D$ and the cell of $x$ is
$[x - \Delta/2, x + \Delta/2)$. This keeps the data's mean and its symmetric range:
the digits' pixels $k = 0, \dots, 16$, scaled as $k / 8 - 1$ (`load_digits`), have
$\Delta = 1/8$ and fill $[-1 - 1/16, 1 + 1/16)$ once dequantised, 17 bins of width
$1/8$.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .. import _checks

__all__ = ["dequantize"]


def dequantize(
    key: PRNGKeyArray, x: Float[ArrayLike, "..."], bin_width: float
) -> Float[Array, "..."]:
    r"""`x` plus independent uniform noise on its bin, $u \sim U(-\Delta/2, \Delta/2)$.

    Draw a new `u` for every training batch (e.g. with
    `jax.random.fold_in(key, step)`); to score, dequantise held-out data once with a
    fixed key and pass `bin_width` to `flowlab.metrics.bits_per_dim`.

    Args:
        key: a JAX PRNG key.
        x: data whose values are bin centres (any shape; a batch or one sample), in
            a floating dtype, which the result keeps.
        bin_width: the grid spacing $\Delta > 0$ after any scaling (the digits of
            `load_digits`: $1/8$).

    Returns:
        `x + u`, of the shape and dtype of `x`.

    Raises:
        ValueError: `bin_width` is not a positive number, or `x` is not floating.
        TypeError: `key` is not a PRNG key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.arange(17.0) / 8 - 1  # the digits' 17 levels
        >>> y = dequantize(jax.random.key(0), x, 1 / 8)
        >>> bool(jnp.all(jnp.abs(y - x) <= 1 / 16))
        True
    """
    key = _checks.key(key)
    if not (_checks.is_number(bin_width) and bin_width > 0):
        raise ValueError(
            f"bin_width must be a positive float (the grid spacing after scaling, "
            f"e.g. 1 / 8 for load_digits), got {bin_width!r}."
        )
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"x must be floating (scale the grid first, e.g. x / 8 - 1), got dtype "
            f"{x.dtype}."
        )
    half = 0.5 * bin_width
    return x + jax.random.uniform(key, x.shape, x.dtype, -half, half)
