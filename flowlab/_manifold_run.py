"""What a run on a manifold reports and draws: a test NLL, an MMD, a map of samples.

`flowlab.run` calls these for an `Experiment` whose data lie on a manifold
(`exp.manifold` set): W2 on Euclidean coordinates means little there, while the
likelihood of held-out points is exact (`log_likelihood(manifold=...)`, Riemannian
divergence, the source's own density as the base).
"""

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import metrics
from .sampling import log_likelihood


def evaluate(exp, params, test, out, sample_seconds: float, velocity, report) -> dict:
    r"""The summary metrics of a manifold run from its samples `out` and `test` set.

    - `test_nll`: $-\frac1n\sum \log p(x)$ in nats over the first
      `sample.n_likelihood` held-out points, with its standard error
      `test_nll_se`, by `log_likelihood` with the run's solver;
    - `target_nll`, `source_nll`: the same average under the target's own density
      (where the data set has one: the ideal model's cross-entropy) and under the
      source's (what an untrained flow scores);
    - `mmd2_unbiased`: MMD between the samples and the test points, on the
      manifold's `features` (ambient coordinates; cos/sin of the torus' angles);
    - `off_manifold`: the largest distance of a sample from the manifold.
    """
    m = exp.manifold
    s = exp.config.sample
    scored = test[: s.n_likelihood]
    report(
        f"computing the test NLL of {len(scored):,} points with {s.solver} on {m!r} ..."
    )
    t0 = time.perf_counter()
    ll = log_likelihood(
        velocity,
        scored,
        params,
        manifold=m,
        base_log_prob=exp.source.log_prob,
        solver=s.solver,
        steps=s.steps,
        rtol=s.rtol,
        atol=s.atol,
    ).log_prob
    ll = np.asarray(jax.block_until_ready(ll), np.float64)
    nll_seconds = time.perf_counter() - t0
    x = out.x
    gap = jax.vmap(lambda p: jnp.linalg.norm(m.projx(p) - p))(x)
    summary: dict[str, Any] = {
        "manifold": repr(m),
        "test_nll": float(-ll.mean()),
        "test_nll_se": float(ll.std(ddof=1) / np.sqrt(len(ll))),
        "n_nll": len(ll),
        "source_nll": float(-np.mean(jax.vmap(exp.source.log_prob)(scored))),
    }
    own = getattr(exp.target, "log_prob", None)  # a data set's exact density
    if own is not None:
        summary["target_nll"] = float(-np.mean(jax.vmap(own)(scored)))
    features = jax.vmap(m.features)
    summary.update(
        mmd2_unbiased=float(metrics.mmd(features(x), features(test))),
        off_manifold=float(jnp.max(gap)),
        nfe=int(out.nfe),
        solver=s.solver,
        n_eval=int(x.shape[0]),
        n_test=int(test.shape[0]),
        sample_seconds=sample_seconds,
        nll_seconds=nll_seconds,
    )
    return summary


def plot(exp, test, out, path, title: str) -> None:
    """Data and samples side by side on the manifold's 2-D map, with trajectories."""
    import matplotlib.pyplot as plt

    m = exp.manifold
    to_map = jax.vmap(m.map2d)
    data_xy = np.array(to_map(test))
    x_xy = np.array(to_map(out.x))
    traj = np.array(jax.vmap(to_map)(out.trajectory))  # (time, n, 2)
    xlabel = m.map_labels[0]
    if m.map_projection is not None:  # a map centred on the data's mean longitude
        lon0 = float(np.angle(np.mean(np.exp(1j * data_xy[:, 0]))))
        for a in (data_xy, x_xy, traj):
            a[..., 0] = (a[..., 0] - lon0 + np.pi) % (2 * np.pi) - np.pi
        xlabel = f"{xlabel} (centred on {np.degrees(lon0):.0f}°)"
    flat = m.map_projection is None  # then both panels share their axes
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(12, 4.5),
        sharex=flat,
        sharey=flat,
        subplot_kw={"projection": m.map_projection},
    )
    axes[0].scatter(data_xy[:, 0], data_xy[:, 1], s=3, alpha=0.6, color="tab:blue")
    axes[0].set_title(f"data: {exp.config.data.target} (held out)")
    axes[1].scatter(x_xy[:, 0], x_xy[:, 1], s=2, alpha=0.5, color="tab:orange")
    for i in range(min(24, traj.shape[1])):
        seg = traj[:, i]
        # a path across the map's edge (longitude +-pi, an angle 2pi) is cut there
        jumps = np.flatnonzero(np.abs(np.diff(seg, axis=0)).max(axis=1) > np.pi)
        for part in np.split(seg, jumps + 1):
            axes[1].plot(part[:, 0], part[:, 1], lw=0.7, color="k", alpha=0.6)
    axes[1].scatter(traj[0, :24, 0], traj[0, :24, 1], s=8, color="k")
    axes[1].set_title(title)
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(m.map_labels[1])
        if m.map_projection is not None:
            ax.grid(True, alpha=0.3)
        else:
            ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
