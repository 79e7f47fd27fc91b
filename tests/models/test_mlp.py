"""The MLP velocity field and its framework-free (params, t, x, cond) contract."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlab import models

# One xdist worker runs this module (`--dist loadgroup`), so that its tests share the
# programs they compile: each network per width, input shape and dtype; split over two
# workers, each worker compiled them.
pytestmark = pytest.mark.xdist_group("mlp")

# Tolerances.
# float32 network outputs of O(1), compiled (fused) versus op-by-op: a few ulps of
# each of ~100 accumulated products, well within 1e-5.
F32 = 1e-5
# float64 closed-form embedding values.
F64 = 1e-12

EMBEDDINGS = ["identity", "sinusoidal"]


def _init(module, shape, cond=None, dtype=jnp.float32, key=0):
    """`init_model`, with the returned `model_fn` jitted.

    Eager flax is slow to run op by op; `test_jit_vmap_and_eager_agree` checks that
    the jitted function agrees with the eager one.
    """
    x = jnp.zeros(shape, dtype)
    model_fn, params = models.init_model(module, jax.random.key(key), x, cond)
    return jax.jit(model_fn), params


@pytest.mark.parametrize("shape", [(2,), (3, 4)])
@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_output_shape_matches_x(shape, embedding, key):
    module = models.MLP(width=16, depth=2, time_embedding=embedding, time_dim=8)
    model_fn, params = _init(module, shape)
    x = jax.random.normal(key, shape, jnp.float32)
    out = model_fn(params, 0.3, x)
    assert out.shape == shape
    assert out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_layers_and_time_features(embedding):
    module = models.MLP(width=16, depth=3, time_embedding=embedding, time_dim=8)
    _, params = _init(module, (3, 4))
    dense = sorted(name for name in params if name.startswith("Dense"))
    assert len(dense) == 3 + 1  # depth hidden layers and the output layer
    n_time = 1 if embedding == "identity" else 8
    assert params["Dense_0"]["kernel"].shape == (12 + n_time, 16)
    assert params[dense[-1]]["kernel"].shape == (16, 12)


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_output_depends_on_time(embedding, key):
    module = models.MLP(width=16, depth=2, time_embedding=embedding, time_dim=8)
    model_fn, params = _init(module, (2,))
    x = jax.random.normal(key, (2,), jnp.float32)
    assert not np.allclose(model_fn(params, 0.1, x), model_fn(params, 0.9, x))


def test_sinusoidal_embedding_closed_form():
    dim, t = 8, 0.37
    emb = models.sinusoidal_embedding(jnp.float64(t), dim)
    freqs = [math.exp(-math.log(1e4) * k / (dim // 2)) for k in range(dim // 2)]
    angles = [1000.0 * t * f for f in freqs]
    expected = [math.cos(a) for a in angles] + [math.sin(a) for a in angles]
    assert emb.shape == (dim,)
    np.testing.assert_allclose(emb, expected, rtol=F64, atol=F64)
    at_zero = models.sinusoidal_embedding(0.0, dim)
    np.testing.assert_array_equal(at_zero, [1.0] * 4 + [0.0] * 4)


def test_odd_embedding_dimension_raises():
    with pytest.raises(ValueError, match="embedding dimension must be even"):
        models.sinusoidal_embedding(0.5, 7)


def test_class_label_conditioning(key):
    module = models.MLP(width=16, depth=2, num_classes=5, time_dim=8)
    model_fn, params = _init(module, (2,), cond=jnp.array(0))
    assert params["Embed_0"]["embedding"].shape == (5, 8)
    assert params["Dense_0"]["kernel"].shape == (2 + 1 + 8, 16)
    x = jax.random.normal(key, (2,), jnp.float32)
    outs = [model_fn(params, 0.5, x, jnp.array(label)) for label in range(5)]
    for a in range(5):
        for b in range(a):
            assert not np.allclose(outs[a], outs[b])
    # A label of shape (1,) is the same label.
    np.testing.assert_allclose(
        model_fn(params, 0.5, x, jnp.array([3])), outs[3], rtol=F32, atol=F32
    )


def test_float_conditioning(key):
    module = models.MLP(width=16, depth=2)
    model_fn, params = _init(module, (2,), cond=jnp.zeros(3))
    assert params["Dense_0"]["kernel"].shape == (2 + 1 + 3, 16)
    x = jax.random.normal(key, (2,), jnp.float32)
    a = model_fn(params, 0.5, x, jnp.zeros(3))
    b = model_fn(params, 0.5, x, jnp.array([1.0, 0.0, -1.0]))
    assert a.shape == (2,)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_jit_vmap_and_eager_agree(embedding, key):
    module = models.MLP(width=32, depth=3, time_embedding=embedding, num_classes=3)
    model_fn, params = models.init_model(
        module, jax.random.key(0), jnp.zeros((3, 4), jnp.float32), jnp.array(0)
    )
    kx, kt = jax.random.split(key)
    x = jax.random.normal(kx, (3, 3, 4), jnp.float32)
    t = jax.random.uniform(kt, (3,), jnp.float32)
    cond = jnp.arange(3)
    eager = jnp.stack([model_fn(params, t[i], x[i], cond[i]) for i in range(3)])
    jitted = jax.jit(model_fn)(params, t[0], x[0], cond[0])
    batched = jax.jit(jax.vmap(model_fn, in_axes=(None, 0, 0, 0)))(params, t, x, cond)
    np.testing.assert_allclose(jitted, eager[0], rtol=F32, atol=F32)
    np.testing.assert_allclose(batched, eager, rtol=F32, atol=F32)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_parameters_follow_the_input_dtype(dtype, key):
    model_fn, params = _init(models.MLP(width=8, depth=1), (2,), dtype=dtype)
    assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(params))
    assert model_fn(params, 0.5, jnp.ones(2, dtype)).dtype == dtype


# The activations in closed form, typed in again (flax's gelu is the tanh form).
_SELU_A, _SELU_L = 1.6732632423543772, 1.0507009873554805
CLOSED_FORMS = {
    "selu": lambda h: _SELU_L * np.where(h > 0, h, _SELU_A * np.expm1(h)),
    "silu": lambda h: h / (1 + np.exp(-h)),
    "gelu": lambda h: (
        0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    ),
    "relu": lambda h: np.maximum(h, 0),
    "tanh": np.tanh,
    "elu": lambda h: np.where(h > 0, h, np.expm1(h)),
}


def _forward(params, t, x, act):
    """The MLP by hand, in float64: `[x, t]` through Dense_0 .. Dense_depth."""
    h = np.concatenate([np.asarray(x, np.float64), [t]])
    layers = sorted(params, key=lambda name: int(name.split("_")[1]))
    for name in layers:
        h = h @ np.asarray(params[name]["kernel"], np.float64) + np.asarray(
            params[name]["bias"], np.float64
        )
        if name != layers[-1]:
            h = act(h)
    return h


def test_closed_forms_cover_every_activation():
    assert set(CLOSED_FORMS) == set(models.ACTIVATIONS)


@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_every_activation(activation, key):
    """The output is the hand-written forward pass with this activation.

    The same key gives every activation the same parameters. Tolerance F32
    (float32 network against a float64 reference). Each other activation's
    forward pass differs from this one by more than 100 F32, so an MLP that used
    another activation than the one named fails.
    """
    model_fn, params = _init(models.MLP(width=8, depth=2, activation=activation), (2,))
    x = 2.0 * jax.random.normal(key, (2,), jnp.float32)  # pre-activations of O(1)
    out = model_fn(params, 0.5, x)
    assert out.shape == (2,)
    assert bool(jnp.all(jnp.isfinite(out)))
    want = _forward(params, 0.5, x, CLOSED_FORMS[activation])
    np.testing.assert_allclose(out, want, rtol=F32, atol=F32)
    for other, act in CLOSED_FORMS.items():
        if other != activation:
            gap = np.max(np.abs(_forward(params, 0.5, x, act) - want))
            assert gap > 100 * F32, other


def test_gradients_are_finite(key):
    model_fn, params = _init(models.MLP(width=8, depth=2), (2,))
    x = jax.random.normal(key, (2,), jnp.float32)
    grads = jax.grad(lambda p: jnp.sum(model_fn(p, 0.5, x) ** 2))(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(bool(jnp.any(g != 0)) for g in leaves)


def test_bad_activation_raises():
    with pytest.raises(ValueError, match="activation must be one of"):
        _init(models.MLP(activation="swish"), (2,))


def test_bad_time_embedding_raises():
    with pytest.raises(ValueError, match="time_embedding must be"):
        _init(models.MLP(time_embedding="fourier"), (2,))


def test_non_scalar_time_raises():
    model_fn, params = _init(models.MLP(width=8, depth=1), (2,))
    with pytest.raises(ValueError, match="t must be a scalar"):
        model_fn(params, jnp.zeros((2, 2)), jnp.zeros(2, jnp.float32))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_selu_matches_jax_and_has_finite_gradients(dtype):
    """flowlab's exp-based SELU equals `jax.nn.selu`, gradients too, even at 1e4."""
    x = jnp.concatenate(
        [jnp.linspace(-30, 30, 2001, dtype=dtype), jnp.asarray([1e4, -1e4], dtype)]
    )
    tol = 2 * float(jnp.finfo(dtype).eps)  # absolute: exp(x) - 1 near 0
    np.testing.assert_allclose(models.selu(x), jax.nn.selu(x), rtol=tol, atol=tol)
    grad = jax.vmap(jax.grad(models.selu))(x)
    # jax's expm1 derivative is expm1(x) + 1, which rounds; exp(x) is exact-er
    want = jax.vmap(jax.grad(jax.nn.selu))(x)
    np.testing.assert_allclose(grad, want, rtol=tol, atol=2 * tol)
    assert bool(jnp.all(jnp.isfinite(grad)))
