"""Stochastic interpolants: boundary conditions, endpoints, ut = d xt / dt, SB-CFM,
targets, errors, and the Gaussian ground truth (conditional expectations, ODE and
SDE marginals).

Gaussian ground truth. With x0 ~ N(0, I), x1 ~ N(mu, s^2 I) and z ~ N(0, I)
independent, x_t = a0 x0 + a1 x1 + g z (a0 = alpha, a1 = beta, g = gamma; a mirror
interpolant has a0 = 0, a1 = alpha + beta) is Gaussian with mean m = a1 mu and
variance V = a0^2 + a1^2 s^2 + g^2 per coordinate, and every conditional
expectation given x_t is linear:

    b(t, x)   = E[x_t' | x_t = x] = a1' mu + C / V (x - m),
                C = a0 a0' + a1 a1' s^2 + g g' = V' / 2,
    eta(t, x) = E[n | x_t = x]    = q / V (x - m)   (noise n = z, scale q = g;
                                                    one-sided: n = x0, q = a0)
    s(t, x)   = -(x - m) / V = -eta / q.

The flow of b is x -> m_t + sqrt(V_t / V_0) (x - m_0), and the SDE
dX = (b + eps s) dt + sqrt(2 eps) dW has the same Gaussian marginals for eps >= 0.
"""

import dataclasses
from collections.abc import Callable

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowlab
from flowlab import paths
from flowlab.sampling import interpolant_sde

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: solves and losses of the interpolant cases; split over two
# workers, each compiled them.
pytestmark = pytest.mark.xdist_group("interpolants")

KEY = jax.random.key(0)  # for hypothesis tests (function-scoped fixtures are not)

# Tolerances.
# float64 identities: a few roundings of values up to |d_gamma z| ~ 50 * 3 near the
# ends of sqrt-gamma paths.
F64 = 1e-10
# Statistical checks: |estimate - truth| <= Z standard errors, the standard error
# computed from the same samples; fixed keys make every check deterministic, and a
# correct implementation exceeds 5 SE with probability ~6e-7 per check.
Z = 5.0
# dopri5 at rtol = atol = 1e-9 on a linear field of O(1) coefficients: the global
# error measured is ~1e-8; 1e-6 leaves two orders of margin.
ODE_TOL = 1e-6
EPS_T = 1e-3  # sqrt-gamma paths: d_gamma diverges at t = 0, 1


@dataclasses.dataclass(frozen=True)
class Case:
    """An interpolant and its closed forms, written independently of flowlab."""

    name: str
    path: paths.AbstractInterpolant
    alpha: Callable
    beta: Callable
    gamma: Callable
    gamma2: Callable  # gamma^2 in closed form (smooth even where gamma' is not)
    safe: tuple[float, float] = (0.0, 1.0)

    @property
    def kind(self):
        """The structural kind, from the class (flowlab has no kind field)."""
        if isinstance(self.path, paths.OneSidedInterpolant):
            return "one_sided"
        if isinstance(self.path, paths.MirrorInterpolant):
            return "mirror"
        assert isinstance(self.path, paths.AbstractTwoSidedInterpolant)
        return "two_sided"

    def __str__(self):
        return self.name


def _sqrt(a):
    return lambda t: jnp.sqrt(a * t * (1 - t))


def _sq(f):
    return lambda t: f(t) ** 2


_one_minus, _ident = (lambda t: 1 - t), (lambda t: t)
_quad = lambda t: 1.5 * t * (1 - t)  # noqa: E731
_sin2 = lambda t: 0.7 * jnp.sin(jnp.pi * t) ** 2  # noqa: E731
_enc = lambda t: jnp.where(t < 0.5, jnp.cos(jnp.pi * t) ** 2, 0.0)  # noqa: E731
_dec = lambda t: jnp.where(t > 0.5, jnp.cos(jnp.pi * t) ** 2, 0.0)  # noqa: E731
_zero = lambda t: 0.0 * t  # noqa: E731
_custom_gamma = lambda t: t * (1 - t) ** 2  # noqa: E731

CASES = [
    Case("linear", paths.linear_interpolant(), _one_minus, _ident, _zero, _zero),
    Case(
        "linear_sqrt",
        paths.linear_interpolant(paths.sqrt_gamma(2.0)),
        _one_minus,
        _ident,
        _sqrt(2.0),
        lambda t: 2.0 * t * (1 - t),
        safe=(EPS_T, 1 - EPS_T),
    ),
    Case(
        "linear_quadratic",
        paths.linear_interpolant(paths.quadratic_gamma(1.5)),
        _one_minus,
        _ident,
        _quad,
        _sq(_quad),
    ),
    Case(
        "trigonometric_sin2",
        paths.trigonometric_interpolant(paths.sin2_gamma(0.7)),
        lambda t: jnp.cos(0.5 * jnp.pi * t),
        lambda t: jnp.sin(0.5 * jnp.pi * t),
        _sin2,
        _sq(_sin2),
    ),
    Case(
        "encoding_decoding",
        paths.encoding_decoding_interpolant(),
        _enc,
        _dec,
        lambda t: jnp.sin(jnp.pi * t) ** 2,
        lambda t: jnp.sin(jnp.pi * t) ** 4,
    ),
    Case(
        "schrodinger_bridge",
        paths.schrodinger_bridge(0.8),
        _one_minus,
        _ident,
        lambda t: 0.8 * jnp.sqrt(t * (1 - t)),
        lambda t: 0.64 * t * (1 - t),
        safe=(EPS_T, 1 - EPS_T),
    ),
    Case(
        "custom",
        paths.StochasticInterpolant(
            lambda t: (1 - t) ** 2, lambda t: t**2, _custom_gamma
        ),
        lambda t: (1 - t) ** 2,
        lambda t: t**2,
        _custom_gamma,
        _sq(_custom_gamma),
    ),
    Case("one_sided", paths.one_sided_interpolant(), _one_minus, _ident, _zero, _zero),
    Case(
        "mirror",
        paths.mirror_interpolant(paths.sin2_gamma(0.7)),
        _one_minus,
        _ident,
        _sin2,
        _sq(_sin2),
    ),
]
cases = pytest.mark.parametrize("case", CASES, ids=str)


def _pair_and_noise(case, x0, x1, z):
    """(x0 as the path uses it, noise n) for a case."""
    x0 = x1 if case.kind == "mirror" else x0
    return x0, (x0 if case.kind == "one_sided" else z)


@cases
@given(pair=helpers.pairs())
def test_endpoints(case, pair):
    x0, x1 = pair
    start = case.path.sample(KEY, x0, x1, 0.0)
    end = case.path.sample(KEY, x0, x1, 1.0)
    np.testing.assert_allclose(start.xt, x1 if case.kind == "mirror" else x0, atol=F64)
    np.testing.assert_allclose(end.xt, x1, rtol=F64, atol=F64)


@cases
@given(pair=helpers.pairs(), data=st.data())
def test_ut_is_time_derivative_of_xt(case, pair, data):
    """With the key fixed, z is fixed: ut must be the jvp of t -> xt."""
    x0, x1 = pair
    t = jnp.float64(data.draw(helpers.times(case.safe)))
    ps = case.path.sample(KEY, x0, x1, t)
    xt, dxt = jax.jvp(
        lambda s: case.path.sample(KEY, x0, x1, s).xt, (t,), (jnp.ones_like(t),)
    )
    np.testing.assert_allclose(ps.xt, xt, rtol=F64, atol=F64)
    np.testing.assert_allclose(ps.ut, dxt, rtol=F64, atol=F64)
    # Against the independent closed forms.
    x0p, noise = _pair_and_noise(case, x0, x1, ps.z)
    z = jax.random.normal(KEY, x1.shape)
    a, b, g = case.alpha(t), case.beta(t), case.gamma(t)
    da, db, dg = (jax.grad(f)(t) for f in (case.alpha, case.beta, case.gamma))
    np.testing.assert_allclose(ps.xt, a * x0p + b * x1 + g * z, rtol=F64, atol=F64)
    np.testing.assert_allclose(ps.ut, da * x0p + db * x1 + dg * z, rtol=F64, atol=F64)
    np.testing.assert_array_equal(ps.z, noise)


@cases
def test_coefficients_match_closed_forms(case):
    for t in np.linspace(*case.safe, 7):
        t = jnp.float64(t)
        c = case.path.coefficients(t)
        for name, fn in (("alpha", case.alpha), ("beta", case.beta)):
            np.testing.assert_allclose(getattr(c, name), fn(t), atol=F64)
            np.testing.assert_allclose(
                getattr(c, "d_" + name), jax.grad(fn)(t), atol=F64
            )
        if case.kind != "one_sided":
            np.testing.assert_allclose(c.gamma, case.gamma(t), atol=F64)
            np.testing.assert_allclose(c.d_gamma, jax.grad(case.gamma)(t), atol=F64)


@cases
def test_sample_fields_and_dtype(case, key):
    x0 = jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3)
    x1 = -x0 + 1.0
    ps = case.path.sample(key, x0, x1, 0.3)
    assert isinstance(ps, paths.PathSample)
    assert ps.xt.dtype == ps.ut.dtype == ps.z.dtype == jnp.float32
    assert ps.xt.shape == ps.ut.shape == ps.z.shape == (2, 3)
    np.testing.assert_array_equal(ps.x0, x1 if case.kind == "mirror" else x0)
    np.testing.assert_array_equal(ps.x1, x1)
    if case.name in ("encoding_decoding", "schrodinger_bridge"):  # where, sqrt
        jitted = jax.jit(case.path.sample)(key, x0, x1, jnp.float32(0.3))
        np.testing.assert_allclose(jitted.xt, ps.xt, rtol=1e-6)  # float32 fusion


@given(
    pair=helpers.pairs(),
    t=st.floats(0.01, 0.99),
    sigma=st.floats(0.1, 2.0),
)
def test_schrodinger_bridge_velocity_and_score(pair, t, sigma):
    """Tong et al.'s conditional velocity and score of SB-CFM."""
    x0, x1 = pair
    path = paths.schrodinger_bridge(sigma)
    ps = path.sample(KEY, x0, x1, t)
    mean = (1 - t) * x0 + t * x1
    want_u = (1 - 2 * t) / (2 * t * (1 - t)) * (ps.xt - mean) + (x1 - x0)
    # |(1-2t)/(2t(1-t))| <= 50 at t = 0.01 multiplies O(1) values.
    np.testing.assert_allclose(ps.ut, want_u, rtol=F64, atol=F64)
    want_s = -ps.z / (sigma * np.sqrt(t * (1 - t)))
    np.testing.assert_allclose(path.score_target(ps), want_s, rtol=F64, atol=F64)
    np.testing.assert_allclose(ps.xt, mean + sigma * np.sqrt(t * (1 - t)) * ps.z)


@cases
def test_targets_and_conversions(case, key):
    x0, x1 = jnp.array([0.3, -1.0]), jnp.array([2.0, 0.5])
    t = jnp.float64(0.37)
    ps = case.path.sample(key, x0, x1, t)
    c = case.path.coefficients(t)
    q, dq = (c.alpha, c.d_alpha) if case.kind == "one_sided" else (c.gamma, c.d_gamma)
    assert case.path.velocity_target(ps) is ps.ut
    np.testing.assert_array_equal(case.path.denoiser_target(ps), ps.z)
    v = case.path.interpolant_velocity_target(ps)
    np.testing.assert_allclose(v + dq * ps.z, ps.ut, rtol=F64, atol=F64)
    np.testing.assert_allclose(
        case.path.two_field_to_velocity(t, ps.xt, v, ps.z), ps.ut, rtol=F64, atol=F64
    )
    if case.name != "linear":  # q = 0 there: no score
        score = case.path.score_target(ps)
        np.testing.assert_allclose(score, -ps.z / q, rtol=F64)
        np.testing.assert_allclose(
            case.path.denoiser_to_score(t, ps.xt, ps.z), score, rtol=F64
        )
        np.testing.assert_allclose(
            case.path.score_to_denoiser(t, ps.xt, score), ps.z, rtol=F64, atol=F64
        )


def test_encoding_decoding_passes_through_pure_noise(key):
    path = paths.encoding_decoding_interpolant()
    ps = path.sample(key, jnp.ones(3), 2 * jnp.ones(3), 0.5)
    np.testing.assert_allclose(ps.xt, ps.z, atol=F64)
    # C^1 at t = 1/2: the one-sided derivatives of alpha and beta vanish there.
    for t in (0.5 - 1e-9, 0.5, 0.5 + 1e-9):
        c = path.coefficients(jnp.float64(t))
        assert abs(float(c.d_alpha)) < 1e-7
        assert abs(float(c.d_beta)) < 1e-7


def test_one_sided_draws_nothing():
    path = paths.one_sided_interpolant()
    ps = path.sample(None, jnp.array([1.0, 2.0]), jnp.array([3.0, 5.0]), 0.25)
    np.testing.assert_allclose(ps.xt, [1.5, 2.75], rtol=F64)
    np.testing.assert_array_equal(ps.z, [1.0, 2.0])


# ---------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fns", "message"),
    [
        ((lambda t: 1 - t**2 + 0.5, _ident, _zero), r"alpha_fn\(0\) must be 1"),
        ((lambda t: 1 - 0.9 * t, _ident, _zero), r"alpha_fn\(1\) must be 0"),
        ((_one_minus, lambda t: t + 0.1, _zero), r"beta_fn\(0\) must be 0"),
        ((_one_minus, lambda t: 0.5 * t, _zero), r"beta_fn\(1\) must be 1"),
        ((_one_minus, _ident, lambda t: 0.1 + 0 * t), r"gamma_fn\(0\) must be 0"),
        ((_one_minus, _ident, lambda t: t), r"gamma_fn\(1\) must be 0"),
    ],
)
def test_boundary_conditions_are_enforced(fns, message):
    with pytest.raises(ValueError, match=message):
        paths.StochasticInterpolant(*fns)


def test_boundary_tolerance_admits_float32_rounding():
    # cos(pi / 2) = -4.4e-8 in float32: within the 1e-6 tolerance.
    path = paths.StochasticInterpolant(
        lambda t: jnp.cos(0.5 * jnp.pi * jnp.float32(t)), _ident
    )
    assert isinstance(path, paths.AbstractTwoSidedInterpolant)
    with pytest.raises(ValueError, match="gamma_fn"):
        paths.linear_interpolant(lambda t: 1e-5 * (1 - t))


def test_construction_errors():
    with pytest.raises(TypeError, match="alpha_fn must be a callable"):
        paths.StochasticInterpolant(1.0, _ident)
    with pytest.raises(TypeError, match="must return a scalar"):
        paths.StochasticInterpolant(lambda t: jnp.stack([1 - t, 1 - t]), _ident)
    # The kinds are classes: there is no kind to misspell, and a one-sided
    # interpolant has no gamma_fn to set (its standard normal source is the noise).
    with pytest.raises(TypeError):
        paths.StochasticInterpolant(_one_minus, _ident, kind="three_sided")
    with pytest.raises(TypeError):
        paths.OneSidedInterpolant(_one_minus, _ident, paths.sin2_gamma())
    with pytest.raises(TypeError, match="gamma_fn must be a callable"):
        paths.MirrorInterpolant(0.5)
    with pytest.raises(ValueError, match="sigma must be positive"):
        paths.schrodinger_bridge(0.0)


def test_sample_errors(key):
    path = paths.linear_interpolant(paths.sin2_gamma())
    with pytest.raises(ValueError, match="x0 and x1 must have the same event shape"):
        path.sample(key, jnp.zeros(2), jnp.zeros(3), 0.5)
    with pytest.raises(ValueError, match="t must be a scalar"):
        path.sample(key, jnp.zeros(2), jnp.zeros(2), jnp.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="pass a PRNG key"):
        path.sample(None, jnp.zeros(2), jnp.zeros(2), 0.5)
    with pytest.raises(ValueError, match="z must have the event shape"):
        path.interpolate(jnp.zeros(2), jnp.zeros(2), jnp.zeros(3), 0.5)
    with pytest.raises(ValueError, match="t must be a scalar"):
        path.coefficients(jnp.zeros(2))


# ---------------------------------------------------------------------------------
# Gaussian ground truth
# ---------------------------------------------------------------------------------

MU, STD = jnp.array([1.5, -1.0]), 0.5
GAUSSIAN_CASES = [c for c in CASES if c.name != "linear"]  # linear: no noise


def _moments(case, t):
    """(m, V, m', V', q) of x_t at scalar t, from the closed forms (V' by jvp)."""

    def mv(t):
        mirror, one_sided = case.kind == "mirror", case.kind == "one_sided"
        a0 = 0.0 * t if mirror else case.alpha(t)
        a1 = case.alpha(t) + case.beta(t) if mirror else case.beta(t)
        g2 = 0.0 * t if one_sided else case.gamma2(t)
        return a1 * MU, a0**2 + a1**2 * STD**2 + g2

    (m, v), (dm, dv) = jax.jvp(mv, (t,), (jnp.ones_like(t),))
    q = case.alpha(t) if case.kind == "one_sided" else case.gamma(t)
    return m, v, dm, dv, q


def exact_fields(case, t, x):
    """(b, eta, s, v) at (t, x): the conditional expectations of the targets."""
    m, var, dm, dv, q = _moments(case, t)
    score = -(x - m) / var
    b = dm - 0.5 * dv * score  # C / V (x - m) with C = V' / 2
    eta = -q * score
    dq = jax.grad(case.alpha if case.kind == "one_sided" else case.gamma)(t)
    return b, eta, score, b - dq * eta


def _draw(key, n):
    k0, k1 = jax.random.split(key)
    x1 = MU[None] + STD * jax.random.normal(k1, (n, 2))
    return jax.random.normal(k0, (n, 2)), x1


def _ols(x, y):
    """Least-squares y = c + k x (1-D): (c, k, se_c, se_k), c at x = mean(x)."""
    xc = x - x.mean()
    k = np.dot(xc, y) / np.dot(xc, xc)
    c = y.mean()
    resid = y - c - k * xc
    s2 = np.dot(resid, resid) / (len(x) - 2)
    return c, k, np.sqrt(s2 / len(x)), np.sqrt(s2 / np.dot(xc, xc))


# Two-sided (sqrt gamma), the encoder-decoder and one-sided by default (each
# compiles ~1-2 s); every case with -m slow. The other cases' coefficients are
# checked by the identities above and their fields by the ODE test below.
FAST_CASES = ("schrodinger_bridge", "encoding_decoding", "one_sided")
REGRESSION_CASES = [
    pytest.param(c, id=c.name, marks=() if c.name in FAST_CASES else pytest.mark.slow)
    for c in GAUSSIAN_CASES
]


@pytest.mark.parametrize("case", REGRESSION_CASES)
def test_targets_regress_onto_exact_fields(case, key):
    """Least squares of each target on x_t recovers the exact linear field.

    At t = 0.3, 0.5, 0.8, per coordinate: the intercept (at the mean of x_t) and the
    slope of the fit of b, eta, s and v targets agree with the exact fields.
    """
    n = 20_000
    k_data, k_path = jax.random.split(key)
    x0, x1 = _draw(k_data, n)
    keys = jax.random.split(k_path, n)

    @jax.jit
    def draw(t):
        ps = jax.vmap(case.path.sample)(keys, x0, x1, jnp.full((n,), t))
        targets = (
            ps.ut,
            ps.z,
            jax.vmap(case.path.score_target)(ps),
            jax.vmap(case.path.interpolant_velocity_target)(ps),
        )
        x_mean = jnp.mean(ps.xt, axis=0)
        fields = exact_fields(case, t, x_mean)
        slopes = jax.jacfwd(lambda y: exact_fields(case, t, y))(x_mean)
        return ps.xt, targets, fields, slopes

    for t in (0.3, 0.5, 0.8):
        xt, targets, fields, slopes = draw(jnp.float64(t))
        for d in range(2):
            x = np.asarray(xt[:, d])
            for i, name in enumerate(("b", "eta", "s", "v")):
                c, k, se_c, se_k = _ols(x, np.asarray(targets[i][:, d]))
                info = (t, name, d)
                assert abs(c - fields[i][d]) <= Z * se_c + F64, info
                assert abs(k - slopes[i][d, d]) <= Z * se_k + F64, info


def _all_b(t, x, args):
    """The exact b of every case, one state leaf per case (one compiled solve)."""
    return {c.name: exact_fields(c, t, x[c.name])[0] for c in GAUSSIAN_CASES}


def test_probability_flow_ode_reproduces_marginals(key):
    """dopri5 on the exact b from samples of x_0 matches N(m_t, V_t) at 0.5 and 1.

    Every case is integrated in one solve (a dict state), to compile once.
    """
    n = 4000
    x0, x1 = _draw(key, n)
    start = {c.name: x1 if c.kind == "mirror" else x0 for c in GAUSSIAN_CASES}
    out = flowlab.sample_ode(
        _all_b, start, solver="dopri5", rtol=1e-9, atol=1e-9, save_trajectory=3
    )
    for case in GAUSSIAN_CASES:
        m0, v0 = _moments(case, jnp.float64(0.0))[:2]
        x_start = start[case.name]
        for i, t in ((1, 0.5), (2, 1.0)):
            m, var = _moments(case, jnp.float64(t))[:2]
            xt = out.trajectory[case.name][i]
            # The flow map is affine: exact per sample.
            want = m[None] + jnp.sqrt(var / v0) * (x_start - m0[None])
            np.testing.assert_allclose(xt, want, atol=ODE_TOL, err_msg=case.name)
            _check_gaussian(xt, m, var)


def _check_gaussian(x, m, var):
    """Sample mean and variance per coordinate within Z standard errors."""
    n = x.shape[0]
    mean, sample_var = x.mean(0), x.var(0, ddof=1)
    np.testing.assert_array_less(np.abs(mean - m), Z * np.sqrt(var / n))
    # Var of the sample variance of a Gaussian: 2 V^2 / (n - 1).
    np.testing.assert_array_less(
        np.abs(sample_var - var), Z * var * np.sqrt(2 / (n - 1))
    )


SDE_CASES = [c for c in CASES if c.name in ("linear_quadratic", "schrodinger_bridge")]
SDE_CASES += [c for c in CASES if c.name in ("encoding_decoding", "one_sided")]
SDE_EPSILONS = (0.0, 0.5, 1.0)


@pytest.mark.parametrize("case", SDE_CASES, ids=str)
def test_sde_family_reproduces_marginals(case, key):
    """`flowlab.sample_sde` on `interpolant_sde(b, s, eps)`, the exact b and score,
    matches N(m_t, V_t) at t = 0.5 and 1 for eps = 0, 0.5, 1.

    Euler-Maruyama with 400 equal steps. Tolerance: Monte-Carlo error (Z SE of the
    sample moments against the exact moments of the discretised chain, computed by
    the linear recursion mean' = mean + h(m' + k (mean - m)), var' = (1 + h k)^2 var
    + 2 eps h with the drift b + eps s = m' + k (x - m), k = (V'/2 - eps) / V),
    plus the discretisation bias (recursion against the SDE's exact moments)
    bounded by 2e-2 V, measured at most 6e-3 V with 400 steps.
    """
    n, steps = 4000, 400
    h = 1.0 / steps
    x0, _ = _draw(key, n)

    def b_fn(t, x, args):
        return exact_fields(case, t, x)[0]

    def score_fn(t, x, args):
        return exact_fields(case, t, x)[2]

    ts = jnp.arange(steps) * h
    m_all, v_all, dm_all, dv_all, _ = (
        np.asarray(a) for a in jax.vmap(lambda t: _moments(case, t))(ts)
    )
    m_true, v_true = (
        np.asarray(a) for a in jax.vmap(lambda t: _moments(case, t)[:2])(ts + h)
    )
    for e, eps in enumerate(SDE_EPSILONS):
        # The same b_fn and score_fn each time: one compiled solve per case.
        sde = interpolant_sde(b_fn, score_fn, eps)
        out = flowlab.sample_sde(
            jax.random.fold_in(key, e), *sde, x0, steps=steps, save_trajectory=3
        )
        np.testing.assert_allclose(out.ts, [0.0, 0.5, 1.0], atol=F64)
        k_all = (0.5 * dv_all - eps) / v_all
        chain_mean, chain_var = np.zeros(2), 1.0
        for i in range(steps):
            step_mean = dm_all[i] + k_all[i] * (chain_mean - m_all[i])
            chain_mean = chain_mean + h * step_mean
            chain_var = (1 + h * k_all[i]) ** 2 * chain_var + 2 * eps * h
            if i + 1 in (steps // 2, steps):
                m, var = m_true[i], float(v_true[i])
                info = (eps, (i + 1) * h)
                assert np.max(np.abs(chain_mean - m)) <= 2e-2 * var, info
                assert abs(chain_var - var) <= 2e-2 * var, info
                saved = 1 if i + 1 == steps // 2 else 2
                _check_gaussian(out.trajectory[saved], chain_mean, chain_var)
