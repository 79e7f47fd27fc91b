"""Log-likelihoods on manifolds: the uniform base, the volume change of a flow, grads.

The reference for a non-trivial flow is independent of the divergence: the flow's
volume change $J = \\sqrt{\\det(A^\\top G A)}$, with $A$ the Jacobian (by `jax.jacfwd`
through the forward solve) of $c \\mapsto \\phi(\\exp_{x_0}(\\sum_i c_i e_i))$ in an
orthonormal basis $e_i$ of $T_{x_0}M$ and $G$ the metric at $\\phi(x_0)$, so that
$\\log p_1(\\phi(x_0)) = \\log p_0(x_0) - \\log J$.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import log_likelihood, manifolds, sample_and_log_prob, sample_ode
from flowlab.manifolds import tangent_basis
from flowlab.sampling.likelihood import normal_chart_field

COMPACT = [
    manifolds.Sphere(2),
    manifolds.FlatTorus(2),
    # 7-10 s each; the sphere and the torus run by default
    pytest.param(manifolds.SO3(), marks=pytest.mark.slow, id="SO3()"),
]


def zero(t, x, args):
    return jnp.zeros_like(x)


@pytest.mark.parametrize("manifold", COMPACT, ids=repr)
@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_the_zero_field_gives_minus_the_log_volume(manifold, method):
    x = jax.vmap(manifold.random_uniform)(jax.random.split(jax.random.key(0), 5))
    ll = log_likelihood(
        zero,
        x,
        manifold=manifold,
        method=method,
        key=jax.random.key(1) if method == "hutchinson" else None,
    ).log_prob
    expected = {
        "Sphere": math.log(4 * math.pi),
        "FlatTorus": 2 * math.log(2 * math.pi),
        "SO3": math.log(8 * math.pi**2),
    }[type(manifold).__name__]
    np.testing.assert_allclose(ll, -expected, atol=1e-4)


def _field(manifold, a):
    """A time-dependent field that changes volumes (not a Killing field)."""

    def field(t, x, args):
        push = manifold.proju(x, jnp.cos(2 * t) * a)  # periodic on the torus too:
        return push + 0.5 * manifold.proju(x, jnp.sin(jnp.roll(x, 1) + x) * jnp.sin(t))

    return field


def _flow_log_volume_change(manifold, field, x0, steps):
    basis = tangent_basis(manifold, x0)

    def flow(c):
        x = manifold.expmap(x0, jnp.tensordot(c, basis, axes=1))
        return sample_ode(
            field, x[None], manifold=manifold, solver="rk4", steps=steps
        ).x[0]

    c0 = jnp.zeros(manifold.dim, x0.dtype)
    x1 = flow(c0)
    a = jax.jacrev(flow)(c0).reshape((-1, manifold.dim))  # columns: d phi / d c_i
    cols = a.T.reshape((manifold.dim, *manifold.shape))
    gram = jax.vmap(lambda u: jax.vmap(lambda v: manifold.inner(x1, u, v))(cols))(cols)
    return x1, 0.5 * jnp.linalg.slogdet(gram)[1]


CASES = [
    # 22 s (the sphere's chart Jacobian through 16 RK4 steps); the torus runs by
    # default, and the sphere's likelihood in the zero-field test and its CLI run
    pytest.param(manifolds.Sphere(2), None, marks=pytest.mark.slow),
    pytest.param(manifolds.SO3(), None, marks=pytest.mark.slow),
    (manifolds.FlatTorus(2), None),
    pytest.param(manifolds.Hyperbolic(2), "wrapped", marks=pytest.mark.slow),
]
STEPS = 16  # both sides are RK4 solves: they agree to its error, about 1e-6


@pytest.mark.parametrize(("manifold", "base"), CASES, ids=lambda c: repr(c))
def test_log_likelihood_is_the_flows_volume_change(manifold, base):
    a = jax.random.normal(jax.random.key(3), manifold.shape)
    field = _field(manifold, a)
    key = jax.random.key(4)
    x0 = manifold.expmap(
        manifold.origin(),
        manifold.proju(manifold.origin(), 0.7 * jax.random.normal(key, manifold.shape)),
    )
    x1, log_j = _flow_log_volume_change(manifold, field, x0, steps=STEPS)
    if base is None:
        log_p0 = manifold.uniform_log_prob(x0)
        base_log_prob = None
    else:
        normal = manifolds.WrappedNormal(manifold, manifold.origin(), 1.0)
        log_p0, base_log_prob = normal.log_prob(x0), normal.log_prob
    assert float(jnp.abs(log_j)) > 0.05  # the flow does change volumes
    ll = log_likelihood(
        field,
        x1[None],
        manifold=manifold,
        base_log_prob=base_log_prob,
        solver="rk4",
        steps=STEPS,
    ).log_prob
    np.testing.assert_allclose(ll[0], log_p0 - log_j, atol=1e-4)


@pytest.mark.slow  # 13 s; the Euclidean Hutchinson checks run by default
def test_hutchinson_is_unbiased_on_the_sphere():
    s2 = manifolds.Sphere(2)
    field = _field(s2, jnp.array([0.3, -1.0, 0.5]))
    x = jax.vmap(s2.random_uniform)(jax.random.split(jax.random.key(5), 2))
    exact = log_likelihood(field, x, manifold=s2, solver="rk4", steps=16).log_prob
    draws = jnp.stack(
        [
            log_likelihood(
                field,
                x,
                manifold=s2,
                solver="rk4",
                steps=16,
                method="hutchinson",
                key=jax.random.key(k),
            ).log_prob
            for k in range(64)
        ]
    )
    se = draws.std(0) / math.sqrt(len(draws))
    assert bool(jnp.all(draws.std(0) > 0))
    assert bool(jnp.all(jnp.abs(draws.mean(0) - exact) < 3 * se + 1e-9))


def test_the_divergence_chart_gives_closed_form_divergences():
    """div of proju(a) on S^2 is -2 a.x; on H^2 the gradient of c.x has div 2 c.x."""
    s2 = manifolds.Sphere(2)
    a = jnp.array([0.3, -0.5, 0.8])
    for x in (s2.projx(jnp.array([0.2, 0.4, -0.7])), s2.origin()):
        chart = normal_chart_field(s2, lambda y: s2.proju(y, a), x)
        div = jnp.trace(jax.jacfwd(chart)(jnp.zeros(3)))
        np.testing.assert_allclose(div, -2 * jnp.dot(a, x), rtol=1e-10)
    h2 = manifolds.Hyperbolic(2)
    c, minkowski = jnp.array([0.4, -0.3, 0.7]), jnp.array([-1.0, 1.0, 1.0])

    def gradient(y):  # the Lorentz gradient of y -> c . y, projected
        g = minkowski * c
        return g + jnp.sum(minkowski * g * y) * y

    so3 = manifolds.SO3()  # against the embedded formula sum_k <b_k, D v[b_k]>
    r = manifolds.axis_angle_to_matrix(jnp.array([0.3, -0.2, 0.9]))
    m = jnp.array([[0.3, 0.1, -0.2], [0.5, -0.4, 0.2], [0.1, 0.7, 0.3]])
    v = lambda y: so3.proju(y, m.T)  # noqa: E731
    skew = [
        jnp.array(e)
        for e in (
            [[0, -1, 0], [1, 0, 0], [0, 0, 0.0]],
            [[0, 0, 1], [0, 0, 0], [-1, 0, 0.0]],
            [[0, 0, 0], [0, 0, -1], [0, 1, 0.0]],
        )
    ]
    embedded = sum(
        jnp.sum(b * jax.jvp(v, (r,), (b,))[1])
        for b in (r @ e / math.sqrt(2) for e in skew)
    )
    chart = normal_chart_field(so3, v, r)
    div = jnp.trace(
        jax.jacfwd(lambda f: chart(f.reshape(3, 3)).reshape(-1))(jnp.zeros(9))
    )
    np.testing.assert_allclose(div, embedded, rtol=1e-10)
    y = h2.expmap(h2.origin(), jnp.array([0.0, 0.7, -0.4]))
    chart = normal_chart_field(h2, gradient, y)
    np.testing.assert_allclose(
        jnp.trace(jax.jacfwd(chart)(jnp.zeros(3))), 2 * jnp.dot(c, y), rtol=1e-10
    )


# Slow (30 s: reverse mode through a Riemannian solve); the Euclidean gradient
# checks in test_likelihood.py run by default.
@pytest.mark.slow
def test_the_log_likelihood_is_differentiable_in_the_field():
    s2 = manifolds.Sphere(2)
    x = jax.vmap(s2.random_uniform)(jax.random.split(jax.random.key(6), 3))

    def field(t, y, a):
        return s2.proju(y, a)

    def total(a):
        ll = log_likelihood(field, x, a, manifold=s2, solver="rk4", steps=8)
        return ll.log_prob.sum()

    a, e = jnp.array([0.2, -0.4, 0.9]), jnp.array([0.6, 0.0, -0.8])
    grad = jax.grad(total)(a)
    eps = 1e-6  # a central difference along one direction
    fd = (total(a + eps * e) - total(a - eps * e)) / (2 * eps)
    assert bool(jnp.all(jnp.isfinite(grad)))
    np.testing.assert_allclose(jnp.dot(grad, e), fd, rtol=1e-6)


def test_bad_input_is_refused_before_the_solve():
    s2 = manifolds.Sphere(2)
    off = jnp.array([[0.0, 0.0, 1.2]])
    with pytest.raises(
        ValueError, match=r"x1: 1 of 1 points are off Sphere.*0\.2 from"
    ):
        log_likelihood(zero, off, manifold=s2)
    # The zero field keeps the projected point: one Euler step is its exact solve.
    projected = {"manifold": s2, "project": True, "solver": "euler", "steps": 1}
    ll = log_likelihood(zero, off, **projected).log_prob
    np.testing.assert_allclose(ll, -math.log(4 * math.pi), atol=1e-6)
    h2 = manifolds.Hyperbolic(2)
    with pytest.raises(ValueError, match="base_log_prob is needed on Hyperbolic"):
        log_likelihood(zero, h2.origin()[None], manifold=h2)


# Slow (11 s); the Euclidean forward/backward agreement runs by default.
@pytest.mark.slow
def test_sample_and_log_prob_agrees_with_log_likelihood_on_the_sphere():
    # Forwards from x0: the samples are sample_ode's, and their log-densities those
    # that log_likelihood (checked against the flow's volume change above) gives
    # them; both sides are RK4 solves with the same steps, the backward one from
    # the forward one's end, so they agree to RK4's error (about 1e-6).
    s2 = manifolds.Sphere(2)
    field = _field(s2, jax.random.normal(jax.random.key(3), s2.shape))
    x0 = jax.vmap(s2.random_uniform)(jax.random.split(jax.random.key(8), 4))
    rk4 = {"manifold": s2, "solver": "rk4", "steps": STEPS}
    out = sample_and_log_prob(field, x0, **rk4)
    np.testing.assert_array_equal(out.x0, x0)
    np.testing.assert_allclose(out.x1, sample_ode(field, x0, **rk4).x, atol=1e-12)
    back = log_likelihood(field, out.x1, **rk4)
    np.testing.assert_allclose(out.log_prob, back.log_prob, atol=1e-4)
    np.testing.assert_allclose(back.x0, x0, atol=1e-4)
    # Not vacuous: the flow changes volumes, away from the uniform -log(4 pi).
    assert float(jnp.max(jnp.abs(out.log_prob + math.log(4 * math.pi)))) > 0.05
