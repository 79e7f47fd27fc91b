"""Changing the schedule after training: the scale-time transform between schedules.

Checked against the exact Gaussian fields of both schedules (the transform of one
is the other), against an independent transform (differentiable closed-form SNR
inverses with `jax.jvp`; `scipy.optimize.brentq` and finite differences for a
bisection schedule), and by sampling: a Cond-OT field sampled through the cosine
schedule gives the Cond-OT samples.
"""

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize

import flowlab
from flowlab import models, paths, schedules
from flowlab.sampling import (
    ScheduleChangeTimes,
    change_schedule,
    schedule_change_times,
)
from flowlab.sampling.schedule_change import DEFAULT_T_EPS

# Tolerances.
# float64 identities between two evaluations of the same field (the transform, and
# the exact field of the target schedule), with coefficients of size <= ~30 inside
# [0.01, 0.99] (linear_vp's and vp's d_sigma ~ 1/sqrt(1 - r)): a few ulps of each,
# measured <= 1e-13; F64 leaves room for the hypothesis draws.
F64 = 1e-10
# jvp through closed-form SNR inverses against the library's closed forms: the same
# derivative by two routes, a few ulps apart.
JVP_TOL = 1e-9
# brentq to xtol 1e-14 and central differences with step 1e-5: truncation
# ~h^2 |f'''| <= 1e-9, rounding ~1e-14 / 1e-5 = 1e-9.
FD_TOL = 1e-7
# dopri5 at rtol = atol = 1e-8 on two parametrisations of one flow: each sample is
# accurate to ~1e-7 (the global error of the adaptive solve; measured in the test's
# comments), so 1e-6 is the acceptance bound.
SAMPLE_TOL = 1e-6
# float32: a handful of roundings of O(1-10) values.
F32 = 1e-5

MU = jnp.array([1.0, -2.0])
STD = 0.5

_CUSTOM = schedules.Schedule(lambda t: t * t * (3 - 2 * t), lambda t: 1 - t)

# (trained, target): the pairs, both directions of cond_ot <-> cosine, a
# user Schedule on either side, and a pair with a variance preserving target.
PAIRS = {
    "cond_ot->cosine": (schedules.cond_ot(), schedules.cosine()),
    "cosine->cond_ot": (schedules.cosine(), schedules.cond_ot()),
    "cond_ot->linear_vp": (schedules.cond_ot(), schedules.linear_vp()),
    "cond_ot->vp": (schedules.cond_ot(), schedules.vp()),
    "polynomial2->cond_ot": (schedules.polynomial(2), schedules.cond_ot()),
    "cond_ot->custom": (schedules.cond_ot(), _CUSTOM),
    "custom->cosine": (_CUSTOM, schedules.cosine()),
    "cosine->polynomial2": (schedules.cosine(), schedules.polynomial(2)),
}
pairs = pytest.mark.parametrize(
    ("trained", "target"), list(PAIRS.values()), ids=list(PAIRS)
)

# Pairs whose transform is singular at an end (the default clips r there): the
# trained SNR's derivative vanishes at t = 0 (polynomial(2), the smoothstep) or the
# target's d_sigma is infinite at r = 1 (linear_vp, vp).
SINGULAR = {
    "cond_ot->linear_vp",
    "cond_ot->vp",
    "polynomial2->cond_ot",
    "custom->cosine",
}


def _gaussian(schedule):
    """The exact field of data N(MU, STD^2 I) on `schedule` (helpers' formula)."""
    return lambda t, x: helpers.gaussian_velocity(t, x, (schedule, MU, STD))


def _changed(trained, target, **kwargs):
    """The transform of the exact trained field; `args` carries its schedule."""
    field = change_schedule(helpers.gaussian_velocity, trained, target, **kwargs)
    return lambda r, x: field(r, x, (trained, MU, STD))


@pairs
@given(r=st.floats(0.01, 0.99), x=helpers.arrays(np.float64, (2,)))
def test_transform_of_the_exact_field_is_the_exact_field(trained, target, r, x):
    r = jnp.float64(r)
    got = _changed(trained, target)(r, x)
    np.testing.assert_allclose(got, _gaussian(target)(r, x), rtol=F64, atol=F64)


@pairs
def test_finite_at_both_ends(trained, target, request):
    # Regular pairs evaluate at r = 0 and r = 1 themselves and equal the exact field
    # there; singular ones evaluate at r clipped into [eps, 1 - eps] by default.
    singular = request.node.callspec.id in SINGULAR
    eps = DEFAULT_T_EPS if singular else 0.0
    field, exact = _changed(trained, target), _gaussian(target)
    x = jnp.array([0.3, -1.2])
    for r, clipped in ((0.0, eps), (1.0, 1.0 - eps)):
        got = field(jnp.float64(r), x)
        assert bool(jnp.all(jnp.isfinite(got))), r
        np.testing.assert_allclose(got, exact(jnp.float64(clipped), x), atol=F64)
    if singular:  # without the clip one end is 0 / 0 or inf * 0
        unclipped = _changed(trained, target, t_eps=0.0)
        ends = jnp.stack([unclipped(jnp.float64(r), x) for r in (0.0, 1.0)])
        assert not bool(jnp.all(jnp.isfinite(ends)))


def _mixture_velocity(t, x, schedule):
    r"""The exact field of an equal-weight mixture of N(m_k, 0.3^2 I), one sample.

    $v = \sum_k P(k \mid x)\, v_k$, with $v_k$ the Gaussian field of component $k$
    and $P(k \mid x) \propto \mathcal N(x; \alpha m_k, (\alpha^2 0.3^2 +
    \sigma^2) I)$: nonlinear in $x$, bending the Cond-OT paths.
    """
    centres = jnp.array([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]])
    std = 0.3
    s = schedule(t)
    var = s.alpha**2 * std**2 + s.sigma**2
    log_w = -jnp.sum((x[None] - s.alpha * centres) ** 2, axis=1) / (2 * var)
    fields = jax.vmap(lambda m: helpers.gaussian_velocity(t, x, (schedule, m, std)))(
        centres
    )
    return jax.nn.softmax(log_w) @ fields


def _mlp_velocity():
    """A small random MLP (a trained-looking field of (t, x)), float64 params."""
    model_fn, params = models.init_model(
        models.MLP(width=16, depth=2, activation="silu"),
        jax.random.key(3),
        jnp.zeros(2),
    )
    params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
    # Scaled by 4 so that it moves the points by O(1).
    return lambda t, x, p: 4 * model_fn(p, t, x, None), params


# Each field compiles two dopri5 solves (~4 s); the default run keeps the mixture.
@pytest.mark.parametrize(
    "field", ["mixture", pytest.param("mlp", marks=pytest.mark.slow)]
)
def test_cond_ot_model_sampled_through_cosine_gives_the_same_samples(field, key):
    # The acceptance check: the same start points, the Cond-OT ODE and the
    # cosine-time ODE of the transformed field, both by dopri5 at 1e-8.
    x0 = jax.random.normal(key, (16, 2), jnp.float64)
    cond_ot, cosine = schedules.cond_ot(), schedules.cosine()
    if field == "mixture":
        v, args = _mixture_velocity, cond_ot
    else:
        v, args = _mlp_velocity()
    opts = {"solver": "dopri5", "rtol": 1e-8, "atol": 1e-8}
    ref = flowlab.sample_ode(v, x0, args, **opts)
    out = flowlab.sample_ode(change_schedule(v, cond_ot, cosine), x0, args, **opts)
    assert bool(jnp.all(jnp.isfinite(out.x)))
    # Measured max |difference|: 1.1e-8 (mixture), 5.7e-8 (mlp).
    np.testing.assert_allclose(out.x, ref.x, rtol=0, atol=SAMPLE_TOL)
    # The samples moved (a test of an identity map would pass trivially).
    assert float(jnp.max(jnp.abs(ref.x - x0))) > 0.5


def _nonlinear_field(t, x, args):
    """Any field will do: the transform holds for every v, not only exact ones."""
    del args
    return jnp.sin(3 * x) * t + jnp.cos(2 * t) * x**2 - 0.5


def _reference_times(trained, target, r):
    """`(t, s)` at r by the closed-form SNR inverse, differentiable in r."""
    b = target(r)
    t = trained.snr_inverse(b.alpha / b.sigma)
    return t, b.sigma / trained(t).sigma


# Pairs whose trained schedule has a closed-form (differentiable) snr_inverse.
CLOSED_FORM = [k for k in PAIRS if not k.startswith("custom")]


@pytest.mark.parametrize("name", CLOSED_FORM)
@given(r=st.floats(0.02, 0.98), x=helpers.arrays(np.float64, (2,)))
def test_against_jvp_of_closed_form_inverses(name, r, x):
    trained, target = PAIRS[name]
    r = jnp.float64(r)
    (t, s), (d_t, d_s) = jax.jvp(
        lambda r: _reference_times(trained, target, r), (r,), (jnp.ones_like(r),)
    )
    got = schedule_change_times(trained, target, r)
    assert isinstance(got, ScheduleChangeTimes)
    np.testing.assert_allclose(got, [t, s, d_t, d_s], rtol=JVP_TOL, atol=JVP_TOL)
    want = d_s / s * x + s * d_t * _nonlinear_field(t, x / s, None)
    field = change_schedule(_nonlinear_field, trained, target)
    np.testing.assert_allclose(field(r, x, None), want, rtol=JVP_TOL, atol=JVP_TOL)


def _brentq_times(trained_fn, target_fn, r):
    """`(t, s)` at r from two numpy (alpha, sigma) functions: brentq on the SNR."""
    alpha_b, sigma_b = target_fn(r)
    t = optimize.brentq(
        lambda t: trained_fn(t)[0] * sigma_b - alpha_b * trained_fn(t)[1],
        0.0,
        1.0,
        xtol=1e-14,
    )
    return t, sigma_b / trained_fn(t)[1]


def _numpy_cond_ot(t):
    return t, 1 - t


def _numpy_cosine(t):
    return np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)


def _numpy_smoothstep(t):
    return t * t * (3 - 2 * t), 1 - t


@pytest.mark.parametrize(
    ("name", "trained_fn", "target_fn"),
    [
        ("cond_ot->custom", _numpy_cond_ot, _numpy_smoothstep),
        ("custom->cosine", _numpy_smoothstep, _numpy_cosine),
    ],
)
def test_against_brentq_and_finite_differences(name, trained_fn, target_fn):
    # The user Schedule's snr_inverse is a bisection: no derivative to take, so the
    # reference is scipy's root and central differences of it, all in numpy.
    trained, target = PAIRS[name]
    h = 1e-5
    x = jnp.array([0.7, -0.4])
    field = change_schedule(_nonlinear_field, trained, target)
    for r in (0.1, 0.4, 0.75, 0.95):
        t, s = _brentq_times(trained_fn, target_fn, r)
        (t_hi, s_hi), (t_lo, s_lo) = (
            _brentq_times(trained_fn, target_fn, r + d) for d in (h, -h)
        )
        d_t, d_s = (t_hi - t_lo) / (2 * h), (s_hi - s_lo) / (2 * h)
        got = schedule_change_times(trained, target, r)
        np.testing.assert_allclose(got, [t, s, d_t, d_s], rtol=FD_TOL, atol=FD_TOL)
        want = d_s / s * x + s * d_t * _nonlinear_field(t, x / s, None)
        np.testing.assert_allclose(
            field(jnp.float64(r), x, None), want, rtol=FD_TOL, atol=FD_TOL
        )


@pytest.mark.parametrize("name", ["cond_ot->cosine", "cond_ot->vp", "custom->cosine"])
def test_changing_back_is_the_identity(name):
    # B -> A after A -> B: t_r and s_r compose to r and 1, so the field is v again.
    trained, target = PAIRS[name]
    there = change_schedule(_nonlinear_field, trained, target)
    back = change_schedule(there, target, trained)
    x = jnp.array([0.7, -0.4])
    for t in (0.1, 0.5, 0.9):
        t = jnp.float64(t)
        # The bisection schedule's inverse is exact to 2^-60; the rest is rounding.
        np.testing.assert_allclose(
            back(t, x, None), _nonlinear_field(t, x, None), rtol=F64, atol=F64
        )


def test_sample_points_scale_with_the_schedule():
    # x^B_r = s_r x^A_{t_r} for one draw (x0, x1): the defining property of s_r.
    trained, target = PAIRS["cond_ot->custom"]
    x0, x1 = jnp.array([0.3, -1.0]), jnp.array([2.0, 0.5])
    path_a, path_b = paths.AffinePath(trained), paths.AffinePath(target)
    for r in (0.0, 0.2, 0.6, 1.0):
        c = schedule_change_times(trained, target, r)
        xb = path_b.sample(None, x0, x1, jnp.float64(r)).xt
        xa = path_a.sample(None, x0, x1, c.t).xt
        np.testing.assert_allclose(xb, c.scale * xa, rtol=F64, atol=F64)


def test_jit_float32_and_an_equal_field_reuses_the_compiled_solve(key):
    trained, target = PAIRS["cond_ot->cosine"]
    field = change_schedule(helpers.gaussian_velocity, trained, target)
    args = (trained, MU, STD)
    x = jnp.array([0.3, -1.2])
    jitted = eqx.filter_jit(lambda f, r, x: f(r, x, args))(field, 0.4, x)
    np.testing.assert_allclose(jitted, field(0.4, x, args), rtol=F64, atol=F64)
    args32 = (trained, MU.astype(jnp.float32), STD)
    out32 = field(jnp.float32(0.4), x.astype(jnp.float32), args32)
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(out32, field(0.4, x, args), rtol=F32, atol=F32)

    traces = [0]

    def v(t, x, args):
        traces[0] += 1  # runs only while JAX traces the field
        return helpers.gaussian_velocity(t, x, args)

    x0 = jax.random.normal(key, (8, 2), jnp.float64)

    def run():
        w = change_schedule(v, schedules.cond_ot(), schedules.cosine())  # a new one
        return flowlab.sample_ode(w, x0, args, solver="rk4", steps=4)

    run()
    n_traces = traces[0]
    assert n_traces > 0
    run()
    assert traces[0] == n_traces


def test_bad_arguments_raise():
    cond_ot, cosine = schedules.cond_ot(), schedules.cosine()
    v = helpers.gaussian_velocity
    with pytest.raises(TypeError, match="v must be a callable"):
        change_schedule(None, cond_ot, cosine)
    with pytest.raises(TypeError, match="trained must be a flowlab.schedules"):
        change_schedule(v, "cond_ot", cosine)
    with pytest.raises(TypeError, match=r"target must be .* pass target.schedule"):
        change_schedule(v, cond_ot, paths.AffinePath(cosine))
    for t_eps in (0.5, -0.1, "1e-3"):
        with pytest.raises(ValueError, match=r"t_eps must be a float in \[0, 0.5\)"):
            change_schedule(v, cond_ot, cosine, t_eps=t_eps)
    with pytest.raises(TypeError, match="trained must be"):
        schedule_change_times(None, cosine, 0.5)
    with pytest.raises(ValueError, match="r must be a scalar"):
        schedule_change_times(cond_ot, cosine, jnp.zeros(3))
