"""One multimarginal interpolant model transports between three 2-D datasets.

A single network g(alpha, x) -> (g_0, g_1, g_2) learns E[x_k | x(alpha) = x] for
x(alpha) = sum_k alpha_k x_k, alpha on the simplex, marginals N(0, I), eight Gaussians
and two moons (Albergo et al. 2023, "Multimarginal generative modeling with
stochastic interpolants"). Along the edge alpha(t) = (1 - t) e_i + t e_j the field
g_j - g_i carries marginal i to marginal j, so the one model gives all six transports;
each is integrated with `flowlab.sample_ode` and scored by the exact W2 to held-out
data. `flowlab.fit` trains it like any other loss: the batch stacks one draw of each
marginal, shape (batch, K + 1, 2), and there is no separate source.

    python examples/04_multimarginal.py --out multimarginal.png
"""

import argparse
import itertools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import flowlab  # noqa: E402
from flowlab import data, losses, metrics, paths  # noqa: E402

NAMES = ("gaussian", "8gaussians", "moons")


class SimplexMLP(nn.Module):
    """(alpha, x) -> the stacked predictions g_k, shape (K + 1, *x.shape)."""

    width: int = 128
    depth: int = 3

    @nn.compact
    def __call__(self, alpha, x):
        h = jnp.concatenate([x.reshape(-1), alpha])
        for _ in range(self.depth):
            h = nn.silu(nn.Dense(self.width)(h))
        return nn.Dense(alpha.size * x.size)(h).reshape(alpha.size, *x.shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="multimarginal.png", help="plot file")
    parser.add_argument("--steps", type=int, default=6000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--edge-probability", type=float, default=0.5)
    parser.add_argument("--n", type=int, default=1000, help="points for W2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    samplers = [data.get(name) for name in NAMES]
    k_init, k_train, k_eval = jax.random.split(jax.random.key(args.seed), 3)
    mmi = paths.MultimarginalInterpolant(
        len(samplers), edge_probability=args.edge_probability
    )
    loss = losses.MultimarginalLoss(mmi)
    module = SimplexMLP()
    params = module.init(k_init, jnp.ones(3) / 3, jnp.zeros(2))["params"]

    def model_fn(params, alpha, x, cond):
        return module.apply({"params": params}, alpha, x)

    lr = optax.cosine_decay_schedule(2e-3, args.steps, alpha=0.05)
    start = time.perf_counter()
    result = flowlab.fit(
        model_fn,
        params,
        loss,
        source=None,  # every marginal comes from the batch
        target=data.Stacked(*samplers),
        key=k_train,
        steps=args.steps,
        batch_size=args.batch_size,
        optimizer=optax.adam(lr),
        lr_fn=lr,
        steps_per_call=100,
        log_every=500,
        progress=False,
    )
    for record in result.history:
        print(f"step {record['step']:5d}  loss {record['loss']:.4f}")
    params = result.state.params
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.1f} s")

    # Held-out sets: one to transport from, one to compare with.
    keys = jax.random.split(k_eval, 2 * len(samplers))
    source = [s.sample(k, args.n) for s, k in zip(samplers, keys[::2], strict=True)]
    test = [s.sample(k, args.n) for s, k in zip(samplers, keys[1::2], strict=True)]
    for name, a, b in zip(NAMES, source, test, strict=True):
        floor = metrics.wasserstein2(a, b)
        print(f"W2({name}, held-out {name}) = {floor:.3f}  (finite-sample floor)")

    fig, axes = plt.subplots(3, 3, figsize=(11, 11), sharex=True, sharey=True)
    for i, j in itertools.permutations(range(len(samplers)), 2):
        # One field per edge; parameters travel as `args` (see edge_velocity).
        v = mmi.edge_velocity(model_fn, None, i, j)
        out = flowlab.sample_ode(v, source[i], params, solver="dopri5")
        w2 = metrics.wasserstein2(out.x, test[j])
        print(f"{NAMES[i]:>10s} -> {NAMES[j]:10s} NFE {int(out.nfe):4d}  W2 {w2:.3f}")
        ax = axes[i, j]
        ax.scatter(*test[j].T, s=2, c="tab:gray", alpha=0.5)
        ax.scatter(*out.x.T, s=2, c="tab:blue")
        ax.set_title(f"{NAMES[i]} -> {NAMES[j]}: W2 {w2:.2f}", fontsize=9)
    for i in range(len(samplers)):
        axes[i, i].scatter(*source[i].T, s=2, c="black")
        axes[i, i].set_title(f"{NAMES[i]} (data)", fontsize=9)
    axes[0, 0].set_xlim(-7, 7)
    axes[0, 0].set_ylim(-7, 7)
    fig.suptitle("one multimarginal model: row = from, column = to (gray: data)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
