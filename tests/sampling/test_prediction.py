"""`velocity_field`: sampling a model that predicts x1, epsilon, the score, ….

Ground truth: Gaussian data N(mu, s^2 I) and a standard normal source, for which
every prediction is known in closed form on an affine path. With
$m^2 = \\alpha^2 s^2 + \\sigma^2$ and $r = x - \\alpha\\mu$:
$E[x_1 | x] = \\mu + \\alpha s^2 r/m^2$, $E[x_0 | x] = \\sigma r/m^2$,
$\\nabla\\log p_t = -r/m^2$, and the velocity is `helpers.gaussian_velocity`.
"""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowlab
from flowlab import losses, paths, schedules
from flowlab.sampling import velocity_field

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: solves of the Gaussian fields; split over two workers, each
# compiled them.
pytestmark = pytest.mark.xdist_group("prediction")

MU, STD = jnp.array([1.0, -0.5]), 0.5


def _posterior(t, x, args):
    schedule, mu, std = args
    s = schedule(t)
    m2 = s.alpha**2 * std**2 + s.sigma**2
    r = x - s.alpha * mu
    return {
        "x1": mu + s.alpha * std**2 * r / m2,
        "x0": s.sigma * r / m2,
        "epsilon": s.sigma * r / m2,
        "score": -r / m2,
    }


# Module-level predictors (one per prediction), so repeated solves reuse the
# compiled code, as `helpers.gaussian_velocity` does.
def _x1(t, x, args):
    return _posterior(t, x, args)["x1"]


def _x0(t, x, args):
    return _posterior(t, x, args)["x0"]


def _score(t, x, args):
    return _posterior(t, x, args)["score"]


PREDICTORS = {"x1": _x1, "x0": _x0, "epsilon": _x0, "score": _score}
CASES = [c for c in helpers.ALL_SCHEDULES if c.name in ("cond_ot", "cosine", "vp")]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("prediction", list(PREDICTORS))
def test_each_prediction_gives_the_exact_velocity(case, prediction, key):
    # The conversion is an identity of the 2x2 system (x_t, v) <-> (x1, x0): exact
    # predictions give the exact velocity to float64 rounding (amplified by at
    # most 1/min(alpha, sigma) ~ 10 on the well-conditioned times): 1e-10.
    path = paths.AffinePath(case.schedule)
    v = velocity_field(PREDICTORS[prediction], path, prediction)
    args = (case.schedule, MU, STD)
    x = jax.random.normal(key, (2,), jnp.float64)
    for t in np.linspace(*case.well_conditioned, 5):
        np.testing.assert_allclose(
            v(t, x, args), helpers.gaussian_velocity(t, x, args), rtol=1e-10
        )


@pytest.mark.parametrize("prediction", ["x1", "epsilon", "score"])
@pytest.mark.parametrize(
    ("solver", "steps", "atol"),
    # Against the velocity model evaluated at the same clipped times. The fields
    # agree to rounding (amplified by at most 1/t_eps = 1e3 near the ends), so
    # both solves take the same steps, dopri5's adaptive ones included (measured
    # ~1e-13): 1e-10 leaves room for another platform's rounding.
    [("dopri5", None, 1e-10), ("euler", 100, 1e-10)],
)
def test_sampling_a_prediction_matches_the_velocity_model(
    prediction, solver, steps, atol, key
):
    schedule = schedules.cond_ot()
    path, args = paths.AffinePath(schedule), (schedule, MU, STD)
    x0 = jax.random.normal(key, (64, 2), jnp.float64)
    v = velocity_field(PREDICTORS[prediction], path, prediction)
    velocity = velocity_field(helpers.gaussian_velocity, path, t_eps=1e-3)
    options = {"solver": solver, "steps": steps, "rtol": 1e-9, "atol": 1e-9}
    out = flowlab.sample_ode(v, x0, args, **options)
    assert np.isfinite(out.x).all()
    exact = flowlab.sample_ode(velocity, x0, args, **options)
    np.testing.assert_allclose(out.x, exact.x, rtol=0, atol=atol)
    if solver == "dopri5":
        # The closed-form flow: the clipping freezes the field on two intervals of
        # length eps = 1e-3, an O(eps^2 |dv/dt|) displacement (measured 3e-6).
        flow = helpers.gaussian_flow_map(CASES[0], MU, STD, 0.0, 1.0, x0)
        np.testing.assert_allclose(out.x, flow, rtol=0, atol=1e-5)


@pytest.mark.parametrize("solver", ["rk4", "tsit5"])
@pytest.mark.parametrize("prediction", ["x1", "score"])
def test_sampling_stays_finite_at_the_singular_ends(solver, prediction, key):
    # x1 divides by sigma_1 = 0 and the score by alpha_0 = 0; rk4 and tsit5
    # evaluate at t = 1 as well as at t = 0 (Euler and dopri5: above). With the
    # clipping they stay finite.
    schedule = schedules.cond_ot()
    v = velocity_field(PREDICTORS[prediction], paths.AffinePath(schedule), prediction)
    x0 = jax.random.normal(key, (16, 2), jnp.float64)
    out = flowlab.sample_ode(v, x0, (schedule, MU, STD), solver=solver, steps=20)
    assert np.isfinite(out.x).all()


def test_without_clipping_the_conversions_are_singular_where_documented(key):
    schedule = schedules.cond_ot()
    path, args = paths.AffinePath(schedule), (schedule, MU, STD)
    x = jax.random.normal(key, (2,), jnp.float64)
    assert not np.isfinite(
        velocity_field(_x1, path, "x1", t_eps=0.0)(1.0, x, args)
    ).all()
    assert not np.isfinite(
        velocity_field(_score, path, "score", t_eps=0.0)(0.0, x, args)
    ).all()
    # The default clips to [1e-3, 1 - 1e-3]: the field there.
    v = velocity_field(_x1, path, "x1")
    np.testing.assert_allclose(
        v(1.0, x, args), helpers.gaussian_velocity(1 - 1e-3, x, args), rtol=1e-10
    )


def test_the_velocity_prediction_is_the_model_itself(key):
    path = paths.AffinePath(schedules.cond_ot())
    v = velocity_field(helpers.gaussian_velocity, path)
    args = (schedules.cond_ot(), MU, STD)
    x = jax.random.normal(key, (2,), jnp.float64)
    for t in (0.0, 1.0):  # no clipping: t_eps = 0
        np.testing.assert_array_equal(
            v(t, x, args), helpers.gaussian_velocity(t, x, args)
        )


def test_two_field_on_an_interpolant(key):
    path = paths.linear_interpolant(paths.sqrt_gamma(1.0))
    b, eta = jax.random.normal(key, (2, 3))
    t, x = 0.3, jnp.zeros(3)
    expected = path.two_field_to_velocity(t, x, b, eta)
    for output in ((b, eta), jnp.stack([b, eta])):  # a pair or its stack
        v = velocity_field(lambda t, x, a, out=output: out, path, "two_field")
        np.testing.assert_allclose(v(t, x, None), expected, rtol=1e-12)


def test_the_loss_prediction_object_is_accepted(key):
    loss = losses.FlowMatchingLoss(paths.AffinePath(schedules.cosine()), "x1")
    v = velocity_field(_x1, loss.path, loss.prediction)
    args = (schedules.cosine(), MU, STD)
    x = jax.random.normal(key, (2,), jnp.float64)
    np.testing.assert_allclose(
        v(0.5, x, args), helpers.gaussian_velocity(0.5, x, args), rtol=1e-10
    )


AFFINE = paths.AffinePath(schedules.cond_ot())
INTERPOLANT = paths.linear_interpolant()


@pytest.mark.parametrize(
    ("path", "prediction", "match"),
    [
        (INTERPOLANT, "x1", r"converts to a velocity only on an AffinePath"),
        (INTERPOLANT, "score", r"prediction='two_field' or 'velocity'\."),
        (AFFINE, "two_field", r"AbstractInterpolant"),
        (paths.ConstantNoisePath(0.1), "epsilon", r"prediction='velocity'\."),
        (AFFINE, "v", r"prediction must be one of"),
    ],
    ids=["x1-interpolant", "score-interpolant", "two-field", "constant-noise", "name"],
)
def test_predictions_without_a_velocity_raise(path, prediction, match):
    with pytest.raises(ValueError, match=match):
        velocity_field(_x1, path, prediction)


def test_bad_arguments_raise():
    path = paths.AffinePath(schedules.cond_ot())
    with pytest.raises(ValueError, match=r"t_eps must be a float in \[0, 0.5\)"):
        velocity_field(_x1, path, "x1", t_eps=0.5)
    with pytest.raises(TypeError, match="path must be a flowlab.paths.AbstractPath"):
        velocity_field(_x1, schedules.cond_ot(), "x1")
    with pytest.raises(TypeError, match="prediction_fn must be a callable"):
        velocity_field(None, path, "x1")


def test_an_equal_field_reuses_the_compiled_solve(key):
    traces = [0]

    def x1_fn(t, x, args):
        traces[0] += 1  # runs only while JAX traces the field
        return _x1(t, x, args)

    schedule = schedules.cond_ot()
    x0 = jax.random.normal(key, (8, 2), jnp.float64)

    def run():
        v = velocity_field(x1_fn, paths.AffinePath(schedule), "x1")  # a new object
        return flowlab.sample_ode(v, x0, (schedule, MU, STD), solver="rk4", steps=4)

    run()
    n_traces = traces[0]
    assert n_traces > 0
    run()
    assert traces[0] == n_traces
