r"""Multimarginal stochastic interpolants: one model for transport among K+1 laws.

Albergo, Boffi, Lindsey & Vanden-Eijnden (2023), *Multimarginal generative modeling
with stochastic interpolants*. With samples $x_0, \dots, x_K$ of $K + 1$ marginals
(independent, or coupled in any way), a point $\alpha$ of the simplex
$\Delta^K = \{\alpha_k \ge 0, \sum_k \alpha_k = 1\}$ and $z \sim N(0, I)$,

$$x(\alpha) = \sum_{k=0}^K \alpha_k x_k + \gamma(\alpha) z, \qquad
\gamma(e_k) = 0,$$

so $x(e_k) = x_k$. One regression per vertex learns
$g_k(\alpha, x) = E[x_k \mid x(\alpha) = x]$, and, when $\gamma \ne 0$, the denoiser
$\eta(\alpha, x) = E[z \mid x(\alpha) = x]$. Along any curve $\alpha(t)$ of the
simplex, $\frac{d}{dt} x(\alpha(t)) = \sum_k \dot\alpha_k x_k + \dot\gamma z$, so the
field

$$v(t, x) = \sum_k \dot\alpha_k(t)\, g_k(\alpha(t), x)
+ \tfrac{d}{dt}\gamma(\alpha(t))\, \eta(\alpha(t), x)$$

transports the law of $x(\alpha(0))$ to that of $x(\alpha(1))$: on the edge
$\alpha(t) = (1 - t) e_i + t e_j$ it carries marginal $i$ to marginal $j$, for every
pair, with one model. A choice of curve changes the transport cost, not the
endpoints.

A multimarginal model is a per-sample function `model_fn(params, alpha, x, cond)`
returning the stacked predictions $(g_0, \dots, g_K)$, shape `(K + 1, *event)`, with
$\eta$ appended as slice `K + 1` when `gamma_fn` is set.
"""

from collections.abc import Callable
from numbers import Integral
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._types import VelocityFn

__all__ = ["MultimarginalInterpolant", "MultimarginalSample"]

_Alpha = Float[Array, " k"]
AlphaCurve = Callable[[Float[Array, ""]], _Alpha]
r"""A curve $t \mapsto \alpha(t)$ on the simplex."""

VERTEX_TOL = 1e-6
r"""How far $\gamma(e_k)$ may be from 0 (float32 rounding)."""


class MultimarginalSample(NamedTuple):
    r"""One draw of a multimarginal interpolant, for one sample.

    Attributes:
        alpha: the simplex point, shape `(K + 1,)`.
        xs: the marginals' samples $x_0, \dots, x_K$, shape `(K + 1, *event)`.
        xt: $x(\alpha)$.
        z: the latent noise, or `None` without `gamma_fn`.
    """

    alpha: _Alpha
    xs: Float[Array, "k *event"]
    xt: Float[Array, "*event"]
    z: Float[Array, "*event"] | None = None


class MultimarginalInterpolant(eqx.Module):
    r"""$x(\alpha) = \sum_k \alpha_k x_k + \gamma(\alpha) z$ over $K + 1$ marginals.

    Attributes:
        num_marginals: $K + 1 \ge 2$.
        gamma_fn: optional $\alpha \mapsto \gamma(\alpha)$, zero at every vertex, e.g.
            $\sqrt{a(1 - \|\alpha\|^2)}$ (on an edge, $\sqrt{2a\,t(1 - t)}$).
        concentration: $\alpha \sim \mathrm{Dirichlet}(c\,\mathbf 1)$; $c = 1$ is
            uniform on the simplex.
        edge_probability: the probability of drawing $\alpha$ instead uniformly on
            a uniformly chosen edge, where edge transport evaluates the model.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> mmi = MultimarginalInterpolant(3)
        >>> xs = jnp.arange(6.0).reshape(3, 2)
        >>> mmi.interpolate(jnp.array([0.0, 1.0, 0.0]), xs).tolist()
        [2.0, 3.0]
    """

    num_marginals: int = eqx.field(static=True)
    gamma_fn: Callable[[_Alpha], Float[Array, ""]] | None = None
    concentration: float = eqx.field(static=True, default=1.0)
    edge_probability: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        k = self.num_marginals
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ValueError(f"num_marginals must be an int >= 2, got {k!r}.")
        if not 0.0 <= self.edge_probability <= 1.0:
            raise ValueError(
                f"edge_probability must lie in [0, 1], got {self.edge_probability}."
            )
        if not self.concentration > 0:
            raise ValueError(
                f"concentration must be positive, got {self.concentration}."
            )
        if self.gamma_fn is None:
            return
        if not callable(self.gamma_fn):
            raise TypeError("gamma_fn must be a callable of a simplex point alpha.")
        with jax.ensure_compile_time_eval():
            values = jax.vmap(self.gamma_fn)(jnp.eye(k))
        if values.shape != (k,):
            raise TypeError(
                "gamma_fn must return a scalar for one alpha of shape (K+1,)."
            )
        try:
            worst = float(jnp.max(jnp.abs(values)))
        except jax.errors.ConcretizationTypeError:
            return
        if not worst <= VERTEX_TOL:
            raise ValueError(
                "gamma_fn must vanish at every vertex e_k so that x(e_k) = x_k, got "
                f"gamma_fn(e_k) = {values.tolist()}."
            )

    @property
    def num_outputs(self) -> int:
        r"""Slices a model returns: $K + 1$, plus one for $\eta$ with `gamma_fn`."""
        return self.num_marginals + (self.gamma_fn is not None)

    def _check_alpha(self, alpha: ArrayLike) -> _Alpha:
        alpha = jnp.asarray(alpha)
        if alpha.shape != (self.num_marginals,):
            raise ValueError(
                f"alpha must have shape ({self.num_marginals},) (one simplex point), "
                f"got {alpha.shape}; batch with jax.vmap."
            )
        return alpha

    def _check_xs(self, xs: ArrayLike) -> Float[Array, "k *event"]:
        xs = jnp.asarray(xs)
        if xs.ndim < 2 or xs.shape[0] != self.num_marginals:
            raise ValueError(
                f"xs must stack one sample of each of the {self.num_marginals} "
                f"marginals, shape ({self.num_marginals}, *event), got {xs.shape}."
            )
        return xs

    def gamma(self, alpha: _Alpha) -> Float[Array, ""]:
        r"""$\gamma(\alpha)$ (zero without `gamma_fn`)."""
        alpha = self._check_alpha(alpha)
        if self.gamma_fn is None:
            return jnp.zeros((), alpha.dtype)
        return self.gamma_fn(alpha)

    def sample_alpha(self, key: PRNGKeyArray, dtype: Any = float) -> _Alpha:
        r"""$\alpha \sim \mathrm{Dirichlet}(c\mathbf 1)$, or on an edge (see above)."""
        k = self.num_marginals
        k_dir, k_edge, k_pick, k_t = jax.random.split(key, 4)
        dtype = jnp.result_type(dtype)
        if self.concentration == 1:
            # Dirichlet(1): normalised standard exponentials (cheap to compile).
            e = jax.random.exponential(k_dir, (k,), dtype)
            alpha = e / jnp.sum(e)
        else:
            conc = jnp.full((k,), self.concentration, dtype)
            alpha = jax.random.dirichlet(k_dir, conc, dtype=dtype)
        if self.edge_probability == 0.0:
            return alpha
        ends = jax.random.choice(k_pick, k, (2,), replace=False)
        t = jax.random.uniform(k_t, (), dtype)
        eye = jnp.eye(k, dtype=dtype)
        on_edge = (1 - t) * eye[ends[0]] + t * eye[ends[1]]
        use_edge = jax.random.bernoulli(k_edge, self.edge_probability)
        return jnp.where(use_edge, on_edge, alpha)

    def interpolate(
        self,
        alpha: _Alpha,
        xs: Float[Array, "k *event"],
        z: Float[Array, "*event"] | None = None,
    ) -> Float[Array, "*event"]:
        r"""$x(\alpha) = \sum_k \alpha_k x_k + \gamma(\alpha) z$."""
        alpha, xs = self._check_alpha(alpha), self._check_xs(xs)
        xt = jnp.tensordot(alpha.astype(xs.dtype), xs, axes=1)
        if self.gamma_fn is None:
            return xt
        if z is None or jnp.shape(z) != xs.shape[1:]:
            raise ValueError(
                f"with gamma_fn set, z of the event shape {xs.shape[1:]} is needed."
            )
        return xt + self.gamma(alpha) * z

    def sample(
        self, key: PRNGKeyArray, xs: Float[ArrayLike, "k *event"], alpha=None
    ) -> MultimarginalSample:
        r"""Draw $\alpha$ (unless given) and $z$; build $x(\alpha)$."""
        xs = self._check_xs(xs)
        k_alpha, k_z = jax.random.split(key)
        if alpha is None:
            alpha = self.sample_alpha(k_alpha, xs.dtype)
        alpha = self._check_alpha(alpha)
        z = None
        if self.gamma_fn is not None:
            z = jax.random.normal(k_z, xs.shape[1:], xs.dtype)
        return MultimarginalSample(alpha, xs, self.interpolate(alpha, xs, z), z)

    def target(self, ps: MultimarginalSample) -> Float[Array, "out *event"]:
        r"""The stacked regression targets $(x_0, \dots, x_K[, z])$."""
        if ps.z is None:
            return ps.xs
        return jnp.concatenate([ps.xs, ps.z[None]])

    def curve_velocity(
        self,
        model_fn: Callable[..., Array],
        params: PyTree | None,
        alpha_fn: AlphaCurve,
        cond: Any = None,
    ) -> VelocityFn:
        r"""The transport field $v(t, x, \text{args})$ along the curve `alpha_fn`.

        $v = \sum_k \dot\alpha_k g_k(\alpha(t), x) + \frac{d}{dt}\gamma(\alpha(t))\,
        \eta(\alpha(t), x)$, derivatives by `jax.jvp`. With `params=None` the field
        reads the parameters from `args`: `sample_ode(v, x, params)` then reuses its
        compiled solve for new parameters.
        """
        if not callable(model_fn) or not callable(alpha_fn):
            raise TypeError("model_fn and alpha_fn must be callables.")
        k = self.num_marginals

        def curve(t):
            alpha = self._check_alpha(alpha_fn(t))
            return alpha, self.gamma(alpha)

        def v(t, x, args):
            t = jnp.asarray(t, x.dtype)
            (alpha, _), (d_alpha, d_gamma) = jax.jvp(curve, (t,), (jnp.ones_like(t),))
            out = model_fn(args if params is None else params, alpha, x, cond)
            if out.shape != (self.num_outputs, *x.shape):
                raise ValueError(
                    f"model_fn must return shape {(self.num_outputs, *x.shape)} "
                    f"(stacked g_k{', then eta' if self.gamma_fn else ''}), got "
                    f"{out.shape}."
                )
            vel = jnp.tensordot(d_alpha.astype(out.dtype), out[:k], axes=1)
            if self.gamma_fn is not None:
                vel = vel + d_gamma * out[k]
            return vel

        return v

    def edge_velocity(
        self,
        model_fn: Callable[..., Array],
        params: PyTree | None,
        i: int,
        j: int,
        cond: Any = None,
    ) -> VelocityFn:
        r"""The field carrying marginal `i` ($t = 0$) to marginal `j` ($t = 1$).

        The curve is the edge $\alpha(t) = (1 - t) e_i + t e_j$, where the field is
        $g_j - g_i + \frac{d}{dt}\gamma\,\eta$. See `curve_velocity` for `params`.

        Example:
            >>> v = mmi.edge_velocity(model_fn, None, 0, 2)  # doctest: +SKIP
            >>> flowlab.sample_ode(v, x_from_marginal_0, params).x  # doctest: +SKIP
        """
        k = self.num_marginals
        for name, value in (("i", i), ("j", j)):
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise ValueError(f"{name} must be an int in [0, {k}), got {value!r}.")
            if not 0 <= value < k:
                raise ValueError(f"{name} must be an int in [0, {k}), got {value!r}.")
        i, j = int(i), int(j)
        if i == j:
            raise ValueError(f"i and j must differ, got i = j = {i}.")

        def edge(t):
            eye = jnp.eye(k, dtype=t.dtype)
            return (1 - t) * eye[i] + t * eye[j]

        return self.curve_velocity(model_fn, params, edge, cond)
