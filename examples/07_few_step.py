"""One-step sampling: a flow-matching teacher, reflowed and distilled into a flow map.

Trains a teacher by Cond-OT flow matching on two moons (standard normal source),
then makes three one-step students from it: one round of reflow (`flowmaps.reflow`,
flow matching on the teacher's own ODE pairs, sampled by Euler jumps of the new
field), Eulerian map distillation (`flowmaps.EulerianDistillation`, a flow map
`X(t, s, x)` trained to be constant along the teacher's trajectories) and
trajectory distillation (`flowmaps.TrajectoryDistillation`, a flow map regressed on
the jumps between the teacher's 100-step Euler trajectories saved at k / 8,
started from the teacher's weights). Prints the
exact W2 between 2,000 samples and 2,000 held-out points for the teacher at 100
Euler steps (and at 1) and for each student at 1 and 4 steps, and writes a figure
of the one-step samples beside the data.

    python examples/07_few_step.py --steps 10000 --out few_step.png
"""

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import flowlab  # noqa: E402
from flowlab import data, flowmaps, metrics, models, paths, schedules  # noqa: E402

SOURCE, TARGET = data.Gaussian(dim=2), data.Moons()


def _net(width, depth):
    # The flow-map losses differentiate the network in time (jax.jvp): the identity
    # time embedding keeps those derivatives of order one.
    return models.MLP(width=width, depth=depth, time_embedding="identity")


def _fit(model_fn, params, loss, key, steps, source=SOURCE, target=TARGET):
    result = flowlab.fit(
        model_fn, params, loss, source=source, target=target, key=key, steps=steps,
        batch_size=256, optimizer=optax.adam(1e-3), ema_decay=0.99,
        steps_per_call=50, log_every=steps, progress=False, handle_signals=False,
    )  # fmt: skip
    return result.state.ema_params


def train_teacher(key, steps, width=64, depth=3):
    """`(teacher, model_fn)`: Cond-OT flow matching on moons for `steps` steps."""
    k_init, k_fit = jax.random.split(key)
    model_fn, params = models.init_model(_net(width, depth), k_init, jnp.zeros(2))
    loss = flowlab.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot()))
    params = _fit(model_fn, params, loss, k_fit, steps)
    # The velocity model as a field v(t, x, params), in sample_ode's signature.
    v = flowmaps.EulerMap(model_fn).velocity_field()
    return flowmaps.Teacher(v, params), model_fn


def reflow_once(key, teacher, model_fn, steps, pairs=10_000):
    """One round of reflow from the teacher: the student's `EulerMap` and params."""
    (round_1,) = flowmaps.reflow(
        key, model_fn, teacher.args, teacher, source=SOURCE, rounds=1, pairs=pairs,
        steps=steps, batch_size=256, optimizer=optax.adam(1e-3), ema_decay=0.99,
        steps_per_call=50, log_every=steps, progress=False, handle_signals=False,
    )  # fmt: skip
    return flowmaps.EulerMap(model_fn), round_1.params


def distil_eulerian(key, teacher, steps, width=64, depth=3):
    """A flow map trained by Eulerian distillation of the teacher: map and params."""
    k_init, k_fit = jax.random.split(key)
    fmap, model_fn, params = flowmaps.init_flow_map(
        _net(width, depth), k_init, jnp.zeros(2)
    )
    loss = flowmaps.EulerianDistillation(teacher)
    return fmap, _fit(model_fn, params, loss, k_fit, steps)


def distil_trajectories(key, teacher, steps, width=64, depth=3, n=20_000):
    """A flow map regressed on `n` teacher trajectories (100 Euler steps, grid k / 8).

    The map starts from the teacher's weights (the same network: `width`, `depth`),
    so before training it is one Euler step of the teacher.
    """
    k_paths, k_init, k_fit = jax.random.split(key, 3)
    paths = flowmaps.teacher_trajectories(
        k_paths, teacher, SOURCE, n, grid=8, solver="euler", steps=100
    )
    fmap, model_fn, params = flowmaps.init_flow_map(
        _net(width, depth), k_init, jnp.zeros(2), velocity_params=teacher.args
    )
    loss = flowmaps.TrajectoryDistillation()
    trained = _fit(
        model_fn, params, loss, k_fit, steps, source=None, target=data.Empirical(paths)
    )
    return fmap, trained


def w2_euler(teacher, x0, test, steps):
    """W2 to `test` of the teacher's samples from `x0` at `steps` Euler steps."""
    out = flowlab.sample_ode(teacher.v, x0, teacher.args, solver="euler", steps=steps)
    return metrics.wasserstein2(out.x, test), out.x


def w2_jumps(fmap, params, x0, test, steps):
    """W2 to `test` of a flow map's samples from `x0` in `steps` equal jumps."""
    out = flowmaps.sample_flow_map(fmap, params, x0, steps=steps)
    return metrics.wasserstein2(out.x, test), out.x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="few_step.png", help="plot file")
    parser.add_argument(
        "--steps", type=int, default=10_000, help="training steps of each model"
    )
    parser.add_argument("--n", type=int, default=2000, help="points for W2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keys = jax.random.split(jax.random.key(args.seed), 6)
    k_teacher, k_reflow, k_distil, k_x0, k_test, k_traj = keys
    x0 = SOURCE.sample(k_x0, args.n)
    test = TARGET.sample(k_test, args.n)

    start = time.perf_counter()
    teacher, model_fn = train_teacher(k_teacher, args.steps)
    seconds = time.perf_counter() - start
    print(f"teacher: {args.steps} flow-matching steps, {seconds:.0f} s")
    w2_100, _ = w2_euler(teacher, x0, test, 100)
    w2_1, x_teacher_1 = w2_euler(teacher, x0, test, 1)
    print(f"teacher        100 Euler steps  W2 {w2_100:.3f}")
    print(f"teacher          1 Euler step   W2 {w2_1:.3f}")

    start = time.perf_counter()
    students = {
        "reflow (1 round)": reflow_once(k_reflow, teacher, model_fn, args.steps),
    }
    print(f"reflow: pairs + {args.steps} steps, {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    students["Eulerian distillation"] = distil_eulerian(k_distil, teacher, args.steps)
    print(f"eulerian: {args.steps} steps, {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    students["trajectory distillation"] = distil_trajectories(
        k_traj, teacher, args.steps
    )
    print(f"trajectory: trajectories + {args.steps} steps, "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip

    one_step = {"teacher, 1 Euler step": (x_teacher_1, w2_1)}
    for name, (fmap, params) in students.items():
        for k in (1, 4):
            w2, x = w2_jumps(fmap, params, x0, test, k)
            print(f"{name:24s} {k} step{'s' * (k > 1):1s}  W2 {w2:.3f}")
            if k == 1:
                one_step[f"{name}, 1 step"] = (x, w2)

    fig, axes = plt.subplots(1, 5, figsize=(20, 4.2), sharex=True, sharey=True)
    axes[0].scatter(*test.T, s=2, c="tab:gray")
    axes[0].set_title(f"held-out data (n={args.n})")
    for ax, (name, (x, w2)) in zip(axes[1:], one_step.items(), strict=True):
        ax.scatter(*x.T, s=2, c="tab:blue")
        ax.set_title(f"{name}: W2 {w2:.3f}")
    for ax in axes:
        ax.set_aspect("equal")
    axes[0].set_xlim(-5, 7)
    axes[0].set_ylim(-4, 4)
    fig.suptitle(
        f"N(0, I) -> moons in one network evaluation ({args.steps} steps each)"
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
