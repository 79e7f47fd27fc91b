"""The exact flow map of Gaussian data under the Cond-OT path, for the flow-map tests.

For x1 ~ N(mu, sd^2 I) and x0 ~ N(0, I), x_t = t x1 + (1 - t) x0 has the marginal
N(t mu, sigma_t^2 I) with sigma_t^2 = t^2 sd^2 + (1 - t)^2, the marginal velocity is
affine in x, and the flow map is X(t, s, x) = s mu + (sigma_s / sigma_t)(x - t mu).
Written out here independently of the library.
"""

import jax
import jax.numpy as jnp

MU = jnp.array([1.5, -0.5])
SD = 0.4


def sigma(t):
    return jnp.sqrt(t**2 * SD**2 + (1 - t) ** 2)


def d_sigma(t):
    return (t * SD**2 - (1 - t)) / sigma(t)


def exact_map(t, s, x):
    return s * MU + sigma(s) / sigma(t) * (x - t * MU)


def exact_velocity(t, x):
    return MU + d_sigma(t) / sigma(t) * (x - t * MU)


def exact_average_velocity(t, s, x):
    """u(t, s, x) = (X(t, s, x) - x) / (s - t), its s -> t limit at s = t."""
    gap = s - t
    tiny = jnp.abs(gap) < 1e-9
    safe = jnp.where(tiny, 1.0, gap)
    slope = jnp.where(tiny, d_sigma(t), (sigma(s) - sigma(t)) / safe)
    return MU + slope / sigma(t) * (x - t * MU)


def exact_model_fn(params, times, x, cond=None):
    """A flow-map network `model_fn(params, (t, s - t), x, cond)` that is exact."""
    del params, cond
    t, gap = times[0], times[1]
    return exact_average_velocity(t, t + gap, x)


def exact_teacher_field(t, x, args=None):
    del args
    return exact_velocity(t, x)


def derivative_error(fmap, params, t, xt):
    """RMS of d/ds X(t, s, x) at s = t (by jax.jvp) minus the exact velocity, over
    the rows of `xt`, and the RMS of the exact velocity: `(error, scale)`."""

    def d_s(x):
        s = jnp.asarray(t, jnp.float32)
        return jax.jvp(lambda s_: fmap(params, s, s_, x), (s,), (jnp.ones_like(s),))[1]

    got = jax.vmap(d_s)(xt)
    want = jax.vmap(lambda x: exact_velocity(t, x))(xt)

    def rms(a):
        return float(jnp.sqrt(jnp.mean(jnp.sum(a**2, axis=-1))))

    return rms(got - want), rms(want)
