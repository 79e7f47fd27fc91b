r"""Two-dimensional toy distributions, as pure JAX samplers.

`Moons` and `EightGaussians` follow the definitions torchcfm uses, so published
numbers compare:

- eight Gaussians centred at radius 5 on the eight compass directions, with
  covariance $\sqrt{0.1}\,I$ (torchcfm passes the square root of the variance as the
  covariance, so the per-axis standard deviation is $0.1^{1/4} \approx 0.562$);
- moons from torchdyn's `generate_moons(n, noise=0.2)`: the two half circles on an
  evenly spaced grid of angles (first `n // 2` points on the upper moon), plus one
  uniform shift $U(0, 0.2)$ per point added to *both* coordinates, then scaled
  $\cdot 3 - 1$ (unlike scikit-learn's Gaussian noise).

`scurve` is scikit-learn's `make_s_curve(noise=0.1)` projected on its (x, z) axes.
"""

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .. import registry
from ._base import AbstractSampler, check_n

__all__ = [
    "Checkerboard",
    "EightGaussians",
    "Gaussian",
    "Moons",
    "Rings",
    "SCurve",
    "Spirals",
]


class Gaussian(AbstractSampler):
    r"""Isotropic Gaussian $N(\mu, s^2 I)$ with exact `log_prob`."""

    mean: Float[Array, " dim"]
    std: float = 1.0

    def __init__(self, dim: int = 2, mean: ArrayLike | float = 0.0, std: float = 1.0):
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}.")
        self.mean = jnp.broadcast_to(jnp.asarray(mean, float), (dim,))
        self.std = float(std)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.mean.shape

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        n = check_n(n)
        z = jax.random.normal(key, (n, *self.event_shape), self.mean.dtype)
        return self.mean[None] + self.std * z

    def log_prob(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        """Log density of one sample."""
        d = x.size
        r = (x - self.mean) / self.std
        return -0.5 * jnp.sum(r**2) - d * (
            math.log(self.std) + 0.5 * math.log(2 * math.pi)
        )


class _Planar(AbstractSampler):
    """A distribution on the plane: samples of shape `(2,)`."""

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (2,)


class EightGaussians(_Planar):
    """Eight Gaussians on a circle (torchcfm's `sample_8gaussians`)."""

    radius: float = 5.0
    variance: float = 0.1

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        n = check_n(n)
        k_mode, k_noise = jax.random.split(key)
        r = 1 / math.sqrt(2)
        centres = self.radius * jnp.array(
            [[1, 0], [-1, 0], [0, 1], [0, -1], [r, r], [r, -r], [-r, r], [-r, -r]]
        )
        mode = jax.random.randint(k_mode, (n,), 0, 8)
        std = self.variance**0.25  # covariance sqrt(variance) * I, as torchcfm
        return centres[mode] + std * jax.random.normal(k_noise, (n, 2))


class Moons(_Planar):
    """Two moons as torchdyn's `generate_moons(noise=0.2)`, then `3 x - 1`."""

    noise: float = 0.2

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        n = check_n(n)
        n_out = n // 2
        n_in = n - n_out
        a_out = jnp.linspace(0, jnp.pi, n_out)
        a_in = jnp.linspace(0, jnp.pi, n_in)
        outer = jnp.stack([jnp.cos(a_out), jnp.sin(a_out)], axis=-1)
        inner = jnp.stack([1 - jnp.cos(a_in), 0.5 - jnp.sin(a_in)], axis=-1)
        x = jnp.concatenate([outer, inner])
        x = x + self.noise * jax.random.uniform(key, (n, 1))
        return 3 * x - 1


class SCurve(_Planar):
    """scikit-learn's S-curve, coordinates (x, z), with Gaussian noise, scaled.

    `(x, z) = (sin t, sign(t)(cos t - 1))` with `t ~ U(-3π/2, 3π/2)`, plus
    `noise`-std Gaussian noise per coordinate, all times `scale`. torchcfm's
    experiment runner uses `noise=0.05, scale=1.5`.
    """

    noise: float = 0.1
    scale: float = 1.0

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        n = check_n(n)
        k_t, k_noise = jax.random.split(key)
        t = 3 * jnp.pi * (jax.random.uniform(k_t, (n,)) - 0.5)
        x = jnp.stack([jnp.sin(t), jnp.sign(t) * (jnp.cos(t) - 1)], axis=-1)
        return self.scale * (x + self.noise * jax.random.normal(k_noise, (n, 2)))


class Checkerboard(_Planar):
    """Uniform on the black squares of a 4x4 checkerboard spanning [-4, 4]^2."""

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        n = check_n(n)
        k_x, k_y, k_row = jax.random.split(key, 3)
        x = jax.random.uniform(k_x, (n,), minval=-2.0, maxval=2.0)
        y = jax.random.uniform(k_y, (n,)) - 2.0 * jax.random.bernoulli(k_row, 0.5, (n,))
        y = y + jnp.floor(x) % 2
        return 2 * jnp.stack([x, y], axis=-1)


class Spirals(_Planar):
    """Two interleaved spirals (one and a half turns each) with Gaussian noise."""

    noise: float = 0.1

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        n = check_n(n)
        k_r, k_arm, k_noise = jax.random.split(key, 3)
        theta = jnp.sqrt(jax.random.uniform(k_r, (n,))) * 3 * jnp.pi
        arm = jnp.where(jax.random.bernoulli(k_arm, 0.5, (n,)), 1.0, -1.0)
        x = arm[:, None] * jnp.stack(
            [-theta * jnp.cos(theta), theta * jnp.sin(theta)], axis=-1
        )
        return x / 3 + self.noise * jax.random.normal(k_noise, (n, 2))


class Rings(_Planar):
    """Four concentric rings of radii 1, 2, 3, 4 with radial Gaussian noise."""

    noise: float = 0.08

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        n = check_n(n)
        k_ring, k_angle, k_noise = jax.random.split(key, 3)
        radius = 1.0 + jax.random.randint(k_ring, (n,), 0, 4)
        angle = jax.random.uniform(k_angle, (n,), maxval=2 * jnp.pi)
        radius = radius + self.noise * jax.random.normal(k_noise, (n,))
        return radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


for _name, _cls in {
    "gaussian": Gaussian,
    "8gaussians": EightGaussians,
    "moons": Moons,
    "scurve": SCurve,
    "checkerboard": Checkerboard,
    "spirals": Spirals,
    "rings": Rings,
}.items():
    registry.register("data", _name, _cls)
