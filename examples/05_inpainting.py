"""In-painting with a data-dependent coupling: 2-D moons and 8x8 digits.

The base sample is built from the data, x0 = m * x1 + (1 - m) * zeta (mask m: 1 where
observed), and the model sees m (Albergo et al. 2024). `flowlab.fit` trains it with
`coupling=couplings.inpainting(mask_fn)`; sampling starts from `coupling.start` on
held-out observations. `--task moons`: one coordinate missing at random; in-paints y
given x and scores the 1-D W1 distance to the data's y near that x. `--task digits`:
in-paints the bottom half of held-out scikit-learn digits and scores pixel MSE
against the mean image and nearest-neighbour baselines.

    python examples/05_inpainting.py --task moons --out inpainting_moons.png
    python examples/05_inpainting.py --task digits --out inpainting_digits.png
"""

import argparse
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from scipy.stats import wasserstein_distance

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import flowlab as fl  # noqa: E402
from flowlab import couplings, data, models, paths, sampling, schedules  # noqa: E402
from flowlab.training import make_optimizer  # noqa: E402


def train(points, mask_fn, args):
    """Cond-OT flow matching from N(0, I) through the in-painting coupling."""
    dim = points.shape[1]
    coupling = couplings.inpainting(mask_fn)
    example = jnp.zeros(dim, jnp.float32)  # the mask: a float vector like x
    module = models.MLP(256, 3, "silu", time_embedding="sinusoidal")
    model_fn, params = models.init_model(
        module, jax.random.key(args.seed), example, example
    )
    optimizer, _ = make_optimizer(
        "adamw", 2e-3, total_steps=args.steps, schedule="cosine"
    )
    start = time.perf_counter()
    result = fl.fit(
        model_fn,
        params,
        fl.FlowMatchingLoss(paths.AffinePath(schedules.cond_ot())),
        source=data.Gaussian(dim),
        target=data.Empirical(points),
        key=jax.random.key(args.seed + 1),
        steps=args.steps,
        batch_size=256,
        optimizer=optimizer,
        coupling=coupling,
        steps_per_call=100,
        log_every=max(args.steps // 4, 1),
        progress=False,
    )
    for record in result.history:
        print(f"step {record['step']:5d}  loss {record['loss']:.4f}")
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.1f} s")

    def inpaint(key, observed, mask):  # mask: (dim,) or (n, dim), 1 = observed
        zeta = jax.random.normal(key, observed.shape, jnp.float32)
        x0, c = coupling.start(zeta, observed, mask)
        v = sampling.conditioned_field(model_fn)
        out = fl.sample_ode(
            v, (x0, c), result.state.ema_params, solver="euler", steps=50
        )
        return np.asarray(jnp.where(c > 0, observed, out.x[0]))  # keep what was seen

    return inpaint


def moons(args):
    target = data.Moons()
    points = target.sample(jax.random.key(7), 20_000)
    inpaint = train(points, couplings.coordinate_mask(1), args)  # x or y missing
    ref = np.asarray(target.sample(jax.random.key(8), 400_000), np.float64)
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4.3))
    ax.scatter(*ref[::100].T, s=1, c="tab:gray", alpha=0.3, label="data")
    w1s = []
    for i, x_star in enumerate((-1.5, 0.0, 1.0, 2.5, 4.0)):
        observed = jnp.full((args.n, 2), jnp.nan, jnp.float32).at[:, 0].set(x_star)
        y = inpaint(jax.random.key(10 + i), observed, jnp.array([1.0, 0.0]))[:, 1]
        near = ref[np.abs(ref[:, 0] - x_star) < 0.05, 1]  # the data's y | x ~ x_star
        w1, base = wasserstein_distance(y, near), wasserstein_distance(ref[:, 1], near)
        w1s.append((w1, base))
        print(
            f"x = {x_star:5.2f}: W1(in-painted y, data y | x) = {w1:.3f}  "
            f"(marginal y: {base:.3f}; {len(near)} data points)"
        )
        ax.scatter(np.full(300, x_star), y[:300], s=2, label=f"y | x={x_star}")
        hist.hist(near, 60, density=True, histtype="step", color=f"C{i}")
        hist.hist(y, 60, density=True, alpha=0.35, color=f"C{i}")
    w1, base = np.mean(w1s, axis=0)
    print(f"mean W1 {w1:.3f} (marginal-y baseline {base:.3f})")
    ax.set_title("moons: in-painted y given x")
    ax.legend(markerscale=4, fontsize=7)
    hist.set_title("y | x: data (lines) vs in-painted (filled)")
    return fig


def digits(args):
    train_set, test = data.load_digits("train"), data.load_digits("test")
    shape = data.DIGITS_SHAPE
    mask_fn = {
        "bottom": couplings.half_mask("bottom", shape=shape),
        "halves": couplings.half_mask(shape=shape),
        "mixed": couplings.mask_mixture(
            couplings.half_mask(shape=shape), couplings.box_mask(2, 6, shape=shape)
        ),
    }[args.masks]
    inpaint = train(train_set.x, mask_fn, args)
    x_test, x_train, k = test.x, train_set.x, 8
    mask = np.arange(64) < 32  # rows 0-3 observed, the bottom half missing
    observed = np.where(mask, x_test, np.nan)  # the bottom half is not given
    samples = inpaint(jax.random.key(3), jnp.asarray(np.tile(observed, (k, 1))), mask)
    samples = samples.reshape(k, *x_test.shape)

    def mse(pred):
        return ((pred - x_test)[:, ~mask] ** 2).mean()

    dist = ((x_test[:, None, mask] - x_train[None, :, mask]) ** 2).sum(-1)
    order = np.argsort(dist, axis=1)
    for name, pred in (
        ("in-painted, one sample", samples[0]),
        (f"in-painted, mean of {k} samples", samples.mean(0)),
        ("mean training image", np.broadcast_to(x_train.mean(0), x_test.shape)),
        ("nearest training image (top half)", x_train[order[:, 0]]),
        (f"mean of the {k} nearest", x_train[order[:, :k]].mean(1)),
    ):
        print(f"bottom-half pixel MSE, {name:34s} {mse(pred):.3f}")
    rows = [x_test[:12], np.where(mask, x_test[:12], np.nan), *samples[:3, :12]]
    fig, axes = plt.subplots(len(rows), 12, figsize=(12, 1.05 * len(rows)))
    cmap = plt.get_cmap("gray_r").with_extremes(bad="tab:red")
    for r, (row, label) in enumerate(
        zip(rows, ["original", "observed", "in-painted", "", ""], strict=True)
    ):
        for c in range(12):
            axes[r, c].imshow(row[c].reshape(shape), cmap=cmap, vmin=-1, vmax=1)
            axes[r, c].set_axis_off()
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    return fig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("moons", "digits"), default="moons")
    parser.add_argument("--out", default=None, help="plot file")
    parser.add_argument("--steps", type=int, default=6000, help="training steps")
    parser.add_argument(
        "--masks",
        choices=("bottom", "halves", "mixed"),
        default="bottom",
        help="digits: the masks trained on",
    )
    parser.add_argument("--n", type=int, default=2000, help="moons: samples per x")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fig = moons(args) if args.task == "moons" else digits(args)
    fig.tight_layout()
    out = args.out or f"inpainting_{args.task}.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
