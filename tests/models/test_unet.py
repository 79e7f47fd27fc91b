"""The U-Net velocity field: per-sample shapes, dtypes, conditioning and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlab import models, registry

# One xdist worker runs this module, so that its tests share compiled networks.
pytestmark = pytest.mark.xdist_group("unet")

# Tolerances.
# float64 networks, compiled (fused) versus op-by-op or vmapped versus one sample:
# O(1) outputs from ~10^3-term sums each rounded at 1e-16; 1e-10 leaves a wide
# margin and still fails on any real difference (a wrong axis, a lost skip).
F64 = 1e-10
# float32 outputs of O(1) under vmap versus one at a time: a few ulps, within 1e-5.
F32 = 1e-5
# A dependence on t or on the label that is real moves outputs of O(1) by far more
# than this; an ignored input moves them by exactly 0.
MOVES = 1e-3


def _init(module, shape=(64,), cond=None, dtype=jnp.float64, key=0):
    x = jnp.zeros(shape, dtype)
    model_fn, params = models.init_model(module, jax.random.key(key), x, cond)
    return model_fn, params


def _x(key, shape=(64,), dtype=jnp.float64):
    return jax.random.normal(key, shape, dtype)


@pytest.mark.parametrize("shape", [(64,), (8, 8), (8, 8, 1)])
def test_output_has_the_shape_and_dtype_of_x(shape, key):
    model_fn, params = _init(models.UNet(width=8), shape)
    out = jax.jit(model_fn)(params, 0.3, _x(key, shape))
    assert out.shape == shape
    assert out.dtype == jnp.float64
    assert bool(jnp.all(jnp.isfinite(out)))
    leaves = jax.tree.leaves(params)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype(jnp.float64)}


def test_float32_inputs_give_float32_parameters_and_outputs(key):
    model_fn, params = _init(models.UNet(width=8), dtype=jnp.float32)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    assert jax.jit(model_fn)(params, 0.3, _x(key, dtype=jnp.float32)).dtype == (
        jnp.float32
    )


def test_jit_and_eager_agree(key):
    model_fn, params = _init(models.UNet(width=8, num_classes=3))
    x = _x(key)
    eager = model_fn(params, 0.7, x, 2)
    compiled = jax.jit(model_fn)(params, 0.7, x, 2)
    np.testing.assert_allclose(compiled, eager, rtol=F64, atol=F64)


def test_the_default_is_a_small_three_level_network():
    module = models.UNet()
    _, params = _init(module)
    n = sum(leaf.size for leaf in jax.tree.leaves(params))
    assert n < 300_000  # trains on a laptop CPU
    # 8x8 -> 4x4 -> 2x2: two strided convolutions between the three levels.
    assert module.channel_mult == (1, 2, 2)
    assert registry.build("model", "unet", width=16) == models.UNet(width=16)


def test_output_depends_on_time_and_label(key):
    model_fn, params = _init(models.UNet(width=8, num_classes=11))
    f = jax.jit(model_fn)
    x = _x(key)
    assert float(jnp.max(jnp.abs(f(params, 0.1, x, 3) - f(params, 0.9, x, 3)))) > MOVES
    assert float(jnp.max(jnp.abs(f(params, 0.5, x, 3) - f(params, 0.5, x, 5)))) > MOVES
    # One row per label (ten digits and the null one); cond=None adds none of
    # them: it is the label whose row is zero, to the last bit.
    table = params["label_embedding"]
    assert table.shape == (11, 4 * 8)
    zeroed = {**params, "label_embedding": table.at[10].set(0.0)}
    np.testing.assert_array_equal(f(zeroed, 0.5, x, None), f(zeroed, 0.5, x, 10))


def test_a_float_condition_is_embedded_by_a_dense_layer(key):
    model_fn, params = _init(models.UNet(width=8), cond=jnp.zeros(3))
    f = jax.jit(model_fn)
    x, c = _x(key), jnp.array([1.0, -2.0, 0.5])
    assert float(jnp.max(jnp.abs(f(params, 0.5, x, c) - f(params, 0.5, x, -c)))) > (
        MOVES
    )


@settings(max_examples=4, deadline=None)  # each example compiles a new U-Net
@given(
    batch=st.integers(1, 4),
    layout=st.sampled_from(
        [((8, 8, 1), (1, 2, 2)), ((4, 4, 2), (1, 2)), ((8, 4, 3), (1,))]
    ),
    t=st.floats(0.0, 1.0),
)
def test_vmap_over_a_batch_equals_one_sample_at_a_time(batch, layout, t):
    image_shape, mult = layout
    module = models.UNet(image_shape=image_shape, width=8, channel_mult=mult)
    d = math.prod(image_shape)
    model_fn, params = _init(module, (d,))
    x = jax.random.normal(jax.random.key(batch), (batch, d), jnp.float64)
    batched = jax.jit(jax.vmap(model_fn, (None, None, 0)))(params, t, x)
    one = jax.jit(model_fn)
    each = jnp.stack([one(params, t, row) for row in x])
    assert batched.shape == (batch, d)
    np.testing.assert_allclose(batched, each, rtol=F64, atol=F64)


def test_float32_vmap_matches_per_sample(key):
    model_fn, params = _init(models.UNet(width=8), dtype=jnp.float32)
    x = jax.random.normal(key, (3, 64), jnp.float32)
    batched = jax.jit(jax.vmap(model_fn, (None, None, 0)))(params, 0.2, x)
    each = jnp.stack([jax.jit(model_fn)(params, 0.2, row) for row in x])
    np.testing.assert_allclose(batched, each, rtol=F32, atol=F32)


@pytest.mark.parametrize(
    ("module", "shape", "t", "cond", "error", "match"),
    [
        (models.UNet(width=8), (2, 64), 0.5, None, ValueError, "one image"),
        (models.UNet(width=8), (63,), 0.5, None, ValueError, "image_shape"),
        (
            models.UNet(width=8),
            (64,),
            jnp.ones((2, 2)),
            None,
            ValueError,
            "t must be a",
        ),
        (models.UNet(width=12), (64,), 0.5, None, ValueError, "groups=8"),
        (
            models.UNet(image_shape=(6, 6, 1), width=8),
            (36,),
            0.5,
            None,
            ValueError,
            "divisible by 4",
        ),
        (models.UNet(image_shape=(8, 8)), (64,), 0.5, None, ValueError, "height"),
        (models.UNet(activation="swish"), (64,), 0.5, None, ValueError, "activation"),
        (
            models.UNet(width=8, num_classes=10),
            (64,),
            0.5,
            0.5,
            TypeError,
            "one integer label",
        ),
        (
            models.UNet(width=8, num_classes=10),
            (64,),
            0.5,
            jnp.array([1, 2]),
            TypeError,
            "one integer",
        ),
    ],
)
def test_bad_calls_are_clear_errors(module, shape, t, cond, error, match):
    with pytest.raises(error, match=match):
        module.init(jax.random.key(0), jnp.asarray(t), jnp.zeros(shape), cond)
