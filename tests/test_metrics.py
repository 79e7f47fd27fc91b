"""Metrics: exact W2, MMD, path energy and NPE, straightness, NFE curves."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import metrics, sample_ode

# Tolerances.
# W2 of identical sets: the squared-distance expansion |x|^2 + |y|^2 - 2 x.y leaves
# O(eps |x|^2) ~ 1e-15 on the diagonal, whose square root is ~3e-8.
W2_ZERO = 1e-7
# W2 against an exact reference, away from zero: float64 rounding only.
F64 = 1e-10


def test_w2_of_a_shuffled_copy_is_zero(key):
    x = jax.random.normal(key, (64, 3))
    perm = jax.random.permutation(jax.random.key(1), 64)
    assert metrics.wasserstein2(x, x[perm]) == pytest.approx(0.0, abs=W2_ZERO)


@pytest.mark.parametrize("shape", [(40, 2), (40, 2, 3)])
def test_w2_of_a_translation_is_its_length(shape, key):
    # Translation: sum |x_i - x_s(i) - c|^2 = sum |x_i - x_s(i)|^2 + n|c|^2, minimal
    # for the identity pairing, so W2 = |c| exactly.
    x = jax.random.normal(key, shape)
    c = jax.random.normal(jax.random.key(1), shape[1:])
    w2 = metrics.wasserstein2(x, x + c[None])
    assert w2 == pytest.approx(float(jnp.linalg.norm(c)), rel=F64)


def test_w2_matches_brute_force_on_six_points():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2)) + 0.5
    best = min(
        np.mean(np.sum((x - y[list(p)]) ** 2, axis=1))
        for p in itertools.permutations(range(6))
    )
    assert metrics.wasserstein2(x, y) == pytest.approx(math.sqrt(best), rel=F64)


def test_w2_shape_mismatch_raises():
    with pytest.raises(ValueError, match="x and y must hold the same number"):
        metrics.wasserstein2(np.zeros((4, 2)), np.zeros((5, 2)))


def test_mmd_same_and_shifted(key):
    k1, k2 = jax.random.split(key)
    n = 500
    x = jax.random.normal(k1, (n, 2))
    y = jax.random.normal(k2, (n, 2))
    # Same distribution: the unbiased estimator has mean 0; its standard deviation
    # at n = 500, measured over 30 seeds, is 0.003. Allow 0.02 (~7 sd, fixed key).
    same = float(metrics.mmd(x, y))
    assert abs(same) < 0.02
    # Shifted by 1 in each coordinate: MMD^2 is ~0.46 here.
    shifted = float(metrics.mmd(x, y + 1.0))
    assert shifted > 0.3
    assert shifted > 10 * abs(same)


def test_mmd_is_symmetric_jittable_and_flattens_events(key):
    x = jax.random.normal(key, (30, 2, 2))
    y = jax.random.normal(jax.random.key(1), (20, 2, 2)) + 0.5
    mmd = jax.jit(metrics.mmd)
    np.testing.assert_allclose(mmd(x, y), mmd(y, x), rtol=F64)
    np.testing.assert_allclose(
        mmd(x, y), mmd(x.reshape(30, 4), y.reshape(20, 4)), rtol=F64
    )


def test_mmd_errors():
    with pytest.raises(ValueError, match="same event size"):
        metrics.mmd(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least two points"):
        metrics.mmd(np.zeros((1, 2)), np.zeros((4, 2)))


_TRACES = [0]


def _constant_field(t, x, args):
    _TRACES[0] += 1  # runs only while JAX traces the field
    return jnp.broadcast_to(args, x.shape)


@pytest.mark.parametrize("solver", ["euler", "dopri5"])
def test_path_energy_of_a_constant_field(solver, key):
    c = jnp.array([0.5, -2.0, 1.0])
    x0 = jax.random.normal(key, (8, 3))
    steps = 100 if solver == "euler" else None
    x1, energy = metrics.path_energy(_constant_field, x0, c, solver=solver, steps=steps)
    # Exact for any consistent solver: the field and the energy rate are constant.
    np.testing.assert_allclose(x1, x0 + c[None], rtol=F64, atol=F64)
    np.testing.assert_allclose(energy, jnp.sum(c**2), rtol=F64)


def test_path_energy_second_call_does_not_retrace(key):
    x0 = jax.random.normal(key, (8, 3))
    metrics.path_energy(_constant_field, x0, jnp.ones(3))
    n_traces = _TRACES[0]
    _, energy = metrics.path_energy(_constant_field, 2.0 * x0, 2.0 * jnp.ones(3))
    assert _TRACES[0] == n_traces
    np.testing.assert_allclose(energy, 12.0, rtol=F64)


def test_straight_flow_has_zero_npe(key):
    # A translation flow's energy equals W2^2 between its start and end.
    x0 = jax.random.normal(key, (8, 3))
    x1, energy = metrics.path_energy(_constant_field, x0, jnp.array([1.0, 2.0, 0.0]))
    w2 = metrics.wasserstein2(x0, x1)
    assert metrics.normalized_path_energy(energy, w2) == pytest.approx(0.0, abs=1e-9)


def test_normalized_path_energy_arithmetic():
    assert metrics.normalized_path_energy(5.0, 2.0) == pytest.approx(0.25)
    assert metrics.normalized_path_energy(3.0, 2.0) == pytest.approx(0.25)
    assert metrics.normalized_path_energy(4.0, 2.0) == 0.0
    assert metrics.normalized_path_energy(jnp.asarray(9.0), 1.5) == pytest.approx(3.0)


@pytest.mark.parametrize("w2", [0.0, -1.0])
def test_normalized_path_energy_needs_positive_w2(w2):
    with pytest.raises(ValueError, match="w2 must be positive"):
        metrics.normalized_path_energy(1.0, w2)


# ---------------------------------------------------------------------------------
# Straightness (Liu et al.) and NFE-versus-quality curves.
# ---------------------------------------------------------------------------------

# Tolerances.
# A constant field is integrated exactly by any consistent solver; the straightness
# is then the difference energy - |x1 - x0|^2 of two equal sums of ~100 float64
# roundings of values ~5: ~1e-13, so 1e-11.
STRAIGHT_ZERO = 1e-11
# dopri5 at rtol = atol = 1e-10 on a rotation over at most 1.9 pi: the global error
# of x and of the accumulated integrals is ~1e-10 relative (measured 2e-10 at most
# over the three angles below), so the closed forms are asked to 1e-8.
ADAPTIVE = 1e-8


def _rotation(t, x, args):
    # v = omega J (x - c), J the quarter turn: x_t = c + R(omega t)(x0 - c), so the
    # speed is omega |x0 - c| throughout and every trajectory is an arc of a circle.
    omega, c = args
    return omega * jnp.stack([-(x[1] - c[1]), x[0] - c[0]])


def _rotate(x, omega, c):
    co, si = jnp.cos(omega), jnp.sin(omega)
    y = x - c[None]
    return c[None] + jnp.stack(
        [co * y[:, 0] - si * y[:, 1], si * y[:, 0] + co * y[:, 1]], 1
    )


@pytest.mark.parametrize("solver", ["euler", "dopri5"])
def test_straightness_of_a_constant_field_is_zero(solver, key):
    c = jnp.array([0.5, -2.0, 1.0])
    x0 = jax.random.normal(key, (8, 3))
    steps = 100 if solver == "euler" else None
    out = metrics.straightness(_constant_field, x0, c, solver=solver, steps=steps)
    np.testing.assert_allclose(out.x, x0 + c[None], rtol=F64, atol=F64)
    assert abs(float(out.straightness)) < STRAIGHT_ZERO
    np.testing.assert_allclose(out.energy, jnp.sum(c**2), rtol=F64)
    np.testing.assert_allclose(out.displacement, jnp.sum(c**2), rtol=F64)
    np.testing.assert_allclose(out.chord_arc_ratio, 1.0, rtol=F64)


@pytest.mark.parametrize("omega", [0.5 * math.pi, math.pi, 1.9 * math.pi])
def test_straightness_of_a_rotation_matches_the_closed_form(omega, key):
    # x_t = R(omega t) x0: E int |v|^2 = omega^2 E|x0|^2, |x1 - x0|^2 =
    # 2 (1 - cos omega) |x0|^2, so S = E|x0|^2 (omega^2 - 2 + 2 cos omega); the
    # arc is omega |x0| and the chord 2 sin(omega / 2) |x0|.
    x0 = jax.random.normal(key, (16, 2))
    args = (jnp.asarray(omega), jnp.zeros(2))
    out = metrics.straightness(
        _rotation, x0, args, solver="dopri5", steps=None, rtol=1e-10, atol=1e-10
    )
    r2 = float(jnp.mean(jnp.sum(x0**2, axis=1)))
    np.testing.assert_allclose(out.x, _rotate(x0, omega, args[1]), atol=ADAPTIVE)
    np.testing.assert_allclose(
        out.straightness, r2 * (omega**2 - 2 + 2 * math.cos(omega)), rtol=ADAPTIVE
    )
    np.testing.assert_allclose(out.energy, omega**2 * r2, rtol=ADAPTIVE)
    np.testing.assert_allclose(
        out.displacement, 2 * (1 - math.cos(omega)) * r2, rtol=ADAPTIVE
    )
    np.testing.assert_allclose(
        out.chord_arc_ratio, 2 * math.sin(omega / 2) / omega, rtol=ADAPTIVE
    )


def test_straightness_is_liu_et_al_s_sum_along_euler_steps(key):
    # Independent: Euler's trajectory by hand, then the definition itself,
    # sum_k h |(x_K - x_0) - v(t_k, x_k)|^2 and sum_k h |v(t_k, x_k)|, with no
    # energy-minus-displacement identity. float64 sums of 50 terms ~10: 1e-10.
    def v(t, x, args):
        return jnp.sin(3 * t) * jnp.tanh(x) + jnp.stack([x[1] ** 2, -x[0]])

    x0 = 0.7 * jax.random.normal(key, (12, 2))
    n_steps, h = 50, 1.0 / 50
    batched = jax.jit(jax.vmap(v, in_axes=(None, 0, None)))  # one compile for all t
    xs, vs = [x0], []
    for k in range(n_steps):
        vk = batched(jnp.asarray(k * h), xs[-1], None)
        vs.append(vk)
        xs.append(xs[-1] + h * vk)
    delta = xs[-1] - x0
    s_ref = np.mean(sum(h * np.sum((delta - vk) ** 2, axis=1) for vk in vs))
    arc = sum(h * np.linalg.norm(vk, axis=1) for vk in vs)
    ratio_ref = np.mean(np.linalg.norm(delta, axis=1) / arc)
    out = metrics.straightness(v, x0, solver="euler", steps=n_steps)
    np.testing.assert_allclose(out.x, xs[-1], rtol=F64, atol=F64)
    np.testing.assert_allclose(out.straightness, s_ref, rtol=F64)
    np.testing.assert_allclose(out.chord_arc_ratio, ratio_ref, rtol=F64)
    assert float(out.straightness) > 0.1  # the field is far from straight here
    # A non-moving batch counts as straight.
    still = metrics.straightness(lambda t, x, a: jnp.zeros_like(x), x0, steps=4)
    assert float(still.chord_arc_ratio) == 1.0


def test_nfe_curve_converges_to_the_exact_flow_s_w2(key):
    # A rotation about c moves the source, and Euler's curved-path error is first
    # order. Every curve value is within W2(euler_k, exact) <= rms|euler_k - exact|
    # of the exact flow's W2 to the reference (the triangle inequality), and the
    # dopri5 (rtol 1e-8) sample's W2 is the exact one up to ~1e-7.
    k0, k1 = jax.random.split(key)
    omega, c = 0.5 * math.pi, jnp.array([2.0, 0.0])
    args = (jnp.asarray(omega), c)
    x0 = jax.random.normal(k0, (256, 2))
    reference = _rotate(jax.random.normal(k1, (256, 2)), omega, c)  # exact law
    steps = (1, 2, 4, 8, 16, 32, 64, 128)
    curve = metrics.nfe_curve(_rotation, x0, reference, args, steps=steps)
    assert curve.steps.tolist() == list(steps)
    assert curve.nfe.tolist() == list(steps)  # Euler: one evaluation per step
    exact = _rotate(x0, omega, c)
    w2_exact = metrics.wasserstein2(exact, reference)
    dopri = sample_ode(_rotation, x0, args, solver="dopri5", rtol=1e-8, atol=1e-8)
    w2_dopri = metrics.wasserstein2(dopri.x, reference)
    assert w2_dopri == pytest.approx(w2_exact, abs=1e-6)
    errors = []
    for k, value in zip(steps, curve.value, strict=True):
        x_k = sample_ode(_rotation, x0, args, solver="euler", steps=k).x
        rms = float(jnp.sqrt(jnp.mean(jnp.sum((x_k - exact) ** 2, axis=1))))
        assert abs(value - w2_exact) <= rms + 1e-9
        errors.append(abs(value - w2_dopri))
    # Far from the floor at one step (measured 2.66 against 0.376), monotone down
    # to it (2.66, 1.63, 0.84, 0.48, 0.37; then within the first-order error of
    # it, from either side), and at 128 steps within 0.02 (measured 0.006).
    assert curve.value[0] > 5 * w2_dopri
    assert np.all(np.diff(curve.value[:5]) < 0)
    assert errors[-1] < 0.02
    assert errors[-1] < errors[0] / 50


def test_nfe_curve_counts_stages_and_takes_a_metric(key):
    x0 = jax.random.normal(key, (8, 2))
    calls = []

    def mean_norm(x, reference):
        calls.append(reference)
        return float(jnp.mean(jnp.linalg.norm(x, axis=1)))

    for solver, per_step in (("midpoint", 2), ("rk4", 4)):
        curve = metrics.nfe_curve(
            lambda t, x, a: -x, x0, None, solver=solver, steps=(3, 5), metric=mean_norm
        )
        assert curve.nfe.tolist() == [3 * per_step, 5 * per_step]
        # dx/dt = -x: |x1| = e^-1 |x0|, to the method's order at 5 steps (rk4:
        # ~1e-6 relative, midpoint ~3e-3).
        expected = math.exp(-1) * float(jnp.mean(jnp.linalg.norm(x0, axis=1)))
        assert curve.value[-1] == pytest.approx(expected, rel=1e-2)
    assert calls == [None] * 4


_FIELD_CALLS = [0]


def _counted_field(t, x, args):
    _FIELD_CALLS[0] += 1  # runs while JAX traces the field
    return x


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": ()}, ValueError, "steps must be a non-empty sequence"),
        ({"steps": 8}, ValueError, "steps must be a non-empty sequence"),
        ({"steps": (4, 0)}, ValueError, "steps must be positive ints"),
        ({"metric": "w2"}, TypeError, "metric must be a callable"),
        ({"reference": np.zeros((5, 2))}, ValueError, "reference must hold"),
    ],
)
def test_nfe_curve_bad_arguments_raise_before_any_solve(kwargs, error, match):
    x0 = np.zeros((4, 2))
    kwargs = {"reference": x0, **kwargs}
    before = _FIELD_CALLS[0]
    with pytest.raises(error, match=match):
        metrics.nfe_curve(_counted_field, x0, **kwargs)
    assert _FIELD_CALLS[0] == before


def test_plot_nfe_curve_writes_a_png(tmp_path):
    import matplotlib.image

    curves = {
        "euler": metrics.NFECurve(
            np.array([1, 2, 4]), np.array([1, 2, 4]), np.array([1.0, 0.5, 0.3])
        ),
        "midpoint": metrics.NFECurve(
            np.array([1, 2]), np.array([2, 4]), np.array([0.4, 0.25])
        ),
    }
    file = tmp_path / "nfe.png"
    assert (
        metrics.plot_nfe_curve(curves, file, baselines={"dopri5": 0.2}, title="t")
        is None
    )
    assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(file).shape[:2] == (
        420,
        600,
    )  # 5 x 3.5 in at 120 dpi


def test_plot_nfe_curve_errors(tmp_path):
    good = metrics.NFECurve(np.array([1]), np.array([1]), np.array([1.0]))
    with pytest.raises(ValueError, match="non-empty mapping"):
        metrics.plot_nfe_curve({}, tmp_path / "a.png")
    with pytest.raises(TypeError, match=r"curves\['x'\] must be an NFECurve"):
        metrics.plot_nfe_curve({"x": (1, 2, 3)}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="no evaluation count"):
        metrics.plot_nfe_curve(
            {"ok": good, "x": good._replace(nfe=np.array([-1]))}, tmp_path / "a.png"
        )
    assert not (tmp_path / "a.png").exists()
