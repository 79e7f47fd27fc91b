r"""Solver error against NFE, and log-likelihoods, on a flow known in closed form.

For data x1 ~ N(mu, s^2 I), a standard normal source and an affine path, the marginal
velocity field is exact (no training):

    v(t, x) = d_alpha mu + (alpha d_alpha s^2 + sigma d_sigma)
                           / (alpha^2 s^2 + sigma^2) (x - alpha mu),

and its flow maps x0 to x1 = mu + s x0 when alpha_0 = 0, sigma_0 = 1. This example
integrates it with every named solver (and a diffrax solver object) at several step
counts or tolerances, plots the error against the number of field evaluations, and
compares `log_likelihood` with the true Gaussian log-density. Runs in float64.

    python examples/03_gaussian_ground_truth.py --out gaussian_ground_truth.png
"""

import argparse

import diffrax
import jax

jax.config.update("jax_enable_x64", True)  # an example may; library code never does

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import flowlab  # noqa: E402
from flowlab import data, schedules  # noqa: E402


def make_field(schedule):
    """The exact marginal field v(t, x, (mu, s)) of the path to N(mu, s^2 I)."""

    def v(t, x, args):
        mu, s = args
        alpha, sigma, d_alpha, d_sigma = schedule(t)
        gain = (alpha * d_alpha * s**2 + sigma * d_sigma) / (alpha**2 * s**2 + sigma**2)
        return d_alpha * mu + gain * (x - alpha * mu)

    return v


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gaussian_ground_truth.png")
    parser.add_argument("--schedule", default="cosine", help="name in schedules.get")
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--std", type=float, default=0.5, help="data std s")
    parser.add_argument("--n", type=int, default=512, help="batch size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    schedule = schedules.get(args.schedule)
    v = make_field(schedule)  # one function object: compiled solves are reused
    mu = jnp.linspace(-2.0, 2.0, args.dim)
    target = data.Gaussian(dim=args.dim, mean=mu, std=args.std)
    field_args = (mu, jnp.asarray(args.std))
    k_x0, k_x1, k_probe = jax.random.split(jax.random.key(args.seed), 3)
    x0 = jax.random.normal(k_x0, (args.n, args.dim))
    exact = mu + args.std * x0

    fixed = {
        "euler": "euler",
        "midpoint": "midpoint",
        "heun": "heun",
        "ralston (diffrax object)": diffrax.Ralston(),
        "rk4": "rk4",
    }
    curves = {}
    for name, solver in fixed.items():
        points = []
        for steps in (2, 8, 32, 128):  # each new step count compiles anew
            out = flowlab.sample_ode(v, x0, field_args, solver=solver, steps=steps)
            points.append((int(out.nfe), float(jnp.max(jnp.abs(out.x - exact)))))
        curves[name] = points
    for name in ("tsit5", "dopri5", "dopri8"):
        points = []
        for tol in (1e-3, 1e-6, 1e-9, 1e-12):
            out = flowlab.sample_ode(v, x0, field_args, solver=name, rtol=tol, atol=tol)
            points.append((int(out.nfe), float(jnp.max(jnp.abs(out.x - exact)))))
        curves[name + " (adaptive)"] = points

    print(f"schedule {args.schedule}, dim {args.dim}, data N(mu, {args.std}^2 I)")
    print("max |x(1) - (mu + s x0)| at each NFE:")
    for name, points in curves.items():
        row = "  ".join(f"{nfe:4d}:{err:.1e}" for nfe, err in points)
        print(f"  {name:25s} {row}")

    # log p(x1) by integrating the divergence from t = 1 back to t = 0.
    x1 = target.sample(k_x1, args.n)
    true_lp = jax.vmap(target.log_prob)(x1)
    exact_lp = flowlab.log_likelihood(
        v, x1, field_args, method="exact", solver="dopri5", rtol=1e-9, atol=1e-9
    ).log_prob
    hutch_lp = flowlab.log_likelihood(
        v, x1, field_args, method="hutchinson", key=k_probe, solver="dopri5"
    ).log_prob
    for name, lp in (("exact, tol 1e-9", exact_lp), ("hutchinson, tol 1e-5", hutch_lp)):
        err = float(jnp.max(jnp.abs(lp - true_lp)))
        print(f"log_likelihood {name:21s} max |error| {err:.1e}")
    # The Jacobian here is a multiple of I, so a Rademacher probe gives its trace
    # exactly: the Hutchinson error is the solver's, at the default tolerance.

    fig, (ax, ax_lp) = plt.subplots(1, 2, figsize=(12, 4.6))
    for name, points in curves.items():
        nfe, err = zip(*points, strict=True)
        ax.loglog(nfe, err, "o-" if "adaptive" in name else "s--", ms=4, label=name)
    ax.set_xlabel("NFE (vector-field evaluations)")
    ax.set_ylabel("max error at t = 1")
    ax.set_title(f"exact Gaussian flow, {args.schedule} schedule")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax_lp.scatter(true_lp, exact_lp, s=4, label="exact divergence")
    lo, hi = float(true_lp.min()), float(true_lp.max())
    ax_lp.plot([lo, hi], [lo, hi], c="black", lw=0.8, label="y = x")
    ax_lp.set_xlabel("true log N(x1; mu, s^2 I)")
    ax_lp.set_ylabel("flowlab.log_likelihood")
    ax_lp.set_title("log-likelihood through the flow")
    ax_lp.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
