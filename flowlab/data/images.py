r"""Images as samples: flat vectors with a known layout and quantised pixels.

An `AbstractImageSampler` draws flat samples, `(n, height * width * channels)`,
and knows their `image_shape` (for image models and plots) and the `bin_width` of
its pixels: the source images take values on a grid of spacing `bin_width`, and
`sample` returns them *dequantised* (`flowlab.data.dequantize`), each pixel spread
uniformly over its bin,

$$\tilde x = x + w\,(u - \tfrac12), \qquad u \sim U[0, 1)^D,$$

so a continuous density is fitted. A density $p$ of $\tilde x$ bounds the
probability of the discrete image from below (Theis et al., 2016),
$\log P(x) \ge E_u[\log p(\tilde x)] + D \log w$, and its bits per dimension are

$$\mathrm{bpd}(x) = -\frac{\log p(\tilde x) + D \log w}{D \log 2},$$

an upper bound in expectation over $u$ (`flowlab.metrics.bits_per_dim`). A density
uniform over $L$ levels scores $\log_2 L$.
"""

import abc
import math

from ._base import AbstractSampler

__all__ = ["AbstractImageSampler"]


class AbstractImageSampler(AbstractSampler):
    """A sampler of flat, dequantised images (module docstring)."""

    @property
    @abc.abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """`(height, width, channels)` of one image; a sample has their product."""

    @property
    @abc.abstractmethod
    def bin_width(self) -> float:
        """The spacing of the pixel values' grid, in the samples' units."""

    @property
    @abc.abstractmethod
    def value_range(self) -> tuple[float, float]:
        """The lowest and highest pixel values of the (quantised) images."""

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (math.prod(self.image_shape),)
