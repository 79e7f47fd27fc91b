"""Bad input to the flow maps, their sampler and their losses: clear errors, early."""

import gaussian_maps as gm
import jax
import jax.numpy as jnp
import pytest

from flowlab import data, flowmaps, models, training
from flowlab.config import ConfigError, load_config
from flowlab.experiment import build

FMAP = flowmaps.AverageVelocityMap(gm.exact_model_fn)
X0 = jnp.zeros((4, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"times": [0.0, 1.5]}, "times must lie in [0, 1]"),
        ({"times": [-0.1, 1.0]}, "times must lie in [0, 1]"),
        ({"times": [0.0, 0.6, 0.4, 1.0]}, "strictly monotone"),
        ({"times": [0.0, 0.5, 0.5, 1.0]}, "strictly monotone"),
        ({"times": [0.5]}, "at least two times"),
        ({"times": [0.0, 1.0], "steps": 2}, "steps or times, not both"),
        ({"steps": 0}, "steps"),
        ({"steps": 2, "t1": 1.2}, "t1 must lie in [0, 1]"),
        ({"steps": 2, "t0": 0.3, "t1": 0.3}, "must differ"),
    ],
)
def test_sample_flow_map_refuses_bad_times(kwargs, message):
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        flowmaps.sample_flow_map(FMAP, None, X0, **kwargs)


def test_sample_flow_map_needs_a_flow_map():
    with pytest.raises(TypeError, match="flow_map"):
        flowmaps.sample_flow_map(lambda *a: a, None, X0)


@pytest.mark.parametrize(("t", "s"), [(0.2, 1.3), (-0.5, 0.5)])
def test_a_map_called_at_a_time_outside_the_unit_interval_says_which(t, s):
    name = "s" if s > 1 else "t"
    for fmap in (FMAP, flowmaps.EulerMap(lambda p, t, x, c: x)):
        with pytest.raises(ValueError, match=f"^{name} must lie in"):
            fmap(None, t, s, jnp.zeros(2))


def _teacher_2d():
    net = models.MLP(width=8, depth=1)
    v_fn, params = models.init_model(net, jax.random.key(0), jnp.zeros(2))
    return flowmaps.Teacher(lambda t, x, p: v_fn(p, t, x, None), params)


@pytest.mark.parametrize(
    "make",
    [
        flowmaps.LagrangianDistillation,
        flowmaps.EulerianDistillation,
        flowmaps.ConsistencyDistillation,
    ],  # fmt: skip
)
def test_a_teacher_of_another_event_shape_is_refused_before_a_step(make, tmp_path):
    net = models.MLP(width=8, depth=1, time_embedding="identity")
    _, fn, params = flowmaps.init_flow_map(net, jax.random.key(0), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"teacher.*\(3,\)"):
        training.fit(
            fn, params, make(_teacher_2d()), source=data.Gaussian(3),
            target=data.Gaussian(3), key=jax.random.key(0), steps=10, batch_size=8,
            progress=False, out_dir=tmp_path / "run", checkpoint_every=5,
        )  # fmt: skip
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_reflow_pairs_refuse_a_teacher_of_another_event_shape():
    with pytest.raises(ValueError, match=r"teacher.*\(3,\)"):
        flowmaps.reflow_pairs(jax.random.key(0), _teacher_2d(), data.Gaussian(3), 8)


def test_a_teacher_whose_output_has_another_shape_is_refused():
    teacher = flowmaps.Teacher(lambda t, x, a: jnp.zeros(5))
    with pytest.raises(ValueError, match=r"maps samples of shape \(2,\) to \(5,\)"):
        teacher.check("teacher", (2,))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: flowmaps.ShortcutLoss(base_steps=100), "power of two"),
        (lambda: flowmaps.ShortcutLoss(self_consistency=1.5), "self_consistency"),
        (lambda: flowmaps.MeanFlowLoss(diagonal=-0.1), "diagonal"),
        (lambda: flowmaps.MeanFlowLoss(c=0.0), "c > 0"),
        (lambda: flowmaps.ConsistencyTraining(steps=0), "steps"),
        (lambda: flowmaps.ConsistencyTraining(data_end=2.0), "data_end"),
        (lambda: flowmaps.LagrangianDistillation(lambda t, x, a: x), "Teacher"),
    ],
)
def test_loss_settings_are_checked_on_construction(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_reflow_loss_reads_pairs_and_no_source():
    loss = flowmaps.ReflowLoss()
    with pytest.raises(ValueError, match="source=None"):
        loss.marginals(None, data.Gaussian(2), jnp.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match=r"shape \(batch, 2, \*event\)"):
        loss.marginals(None, None, jnp.zeros((4, 2)))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=mean_flow", "data.target=blobs"], "labelled data.target"),
        (["loss=shortcut", "prediction=x1"], "prediction = 'x1'"),
        (["loss=meanflow"], "loss"),
    ],
)
def test_config_refuses_a_flow_map_loss_where_it_does_not_apply(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(load_config(None, overrides))


def test_a_flow_map_config_builds_a_two_time_network():
    exp = build(load_config(None, ["loss=consistency_training", "model.width=16"]))
    assert isinstance(exp.loss, flowmaps.ConsistencyTraining)
    assert isinstance(exp.flow_map, flowmaps.AverageVelocityMap)
    x = jnp.zeros(2)
    assert exp.flow_map(exp.params, 0.0, 1.0, x).shape == (2,)
