r"""What a run on images reports and draws: test bits per dimension, image grids.

`flowlab.run` calls these for an `Experiment` whose target is a
`flowlab.data.AbstractImageSampler` (flat, dequantised images such as the 8×8
digits): a 2-D scatter means nothing there, while the likelihood of the held-out
images gives the standard figure of image models, bits per dimension.

The test images are dequantised once with the run's `test` key (each pixel spread
uniformly over its bin of width $w$) and scored by `log_likelihood` with the run's
solver and `sample.divergence` (exact, or Hutchinson with one Rademacher probe per
image); their bits per dimension,

$$\mathrm{bpd} = -\frac{\log p(\tilde x) + D \log w}{D \log 2},$$

bound those of the discrete images from above in expectation. A density uniform
on the $L$ pixel levels scores $\log_2 L$.
"""

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import data, metrics
from .sampling import guided_field, log_likelihood, sample_ode


def is_image_run(exp) -> bool:
    """Whether the run's target is images (`flowlab.data.AbstractImageSampler`)."""
    return isinstance(exp.target, data.AbstractImageSampler)


def evaluate(
    exp, params, test, out, sample_seconds: float, velocity, report, key
) -> dict[str, Any]:
    r"""The summary metrics of an image run from its samples `out` and `test` set.

    - `test_bpd`: bits per dimension of the first `sample.n_likelihood` held-out
      images, dequantised with `key` (module docstring), with its standard error
      `test_bpd_se` over the images, the divergence used (`bpd_divergence`), the
      NFE of the likelihood solve (`bpd_nfe`) and its time;
    - `uniform_bpd`: $\log_2 L$, what a density uniform on the $L$ pixel levels
      scores (an untrained flow does worse);
    - `mmd2_unbiased`: MMD between the samples and the test images, and the
      sampling `nfe`.
    """
    target = exp.target
    s = exp.config.sample
    scored = jnp.asarray(test[: s.n_likelihood])
    k_deq, k_probe = jax.random.split(key)
    x = data.dequantize(k_deq, scored, target.bin_width)
    method = s.divergence
    report(
        f"computing the test bpd of {len(scored):,} images with {s.solver} and the "
        f"{method} divergence ..."
    )
    t0 = time.perf_counter()
    ll = log_likelihood(
        velocity,
        x,
        params,
        base_log_prob=getattr(exp.source, "log_prob", None),
        method=method,
        key=k_probe if method == "hutchinson" else None,
        solver=s.solver,
        steps=s.steps,
        rtol=s.rtol,
        atol=s.atol,
    )
    log_prob = np.asarray(jax.block_until_ready(ll.log_prob), np.float64)
    bpd_seconds = time.perf_counter() - t0
    event_size = math.prod(target.event_shape)
    bpd = np.asarray(
        metrics.bits_per_dim(log_prob, event_size, bin_width=target.bin_width)
    )
    lo, hi = target.value_range
    levels = round((hi - lo) / target.bin_width) + 1
    return {
        "test_bpd": float(bpd.mean()),
        "test_bpd_se": float(bpd.std(ddof=1) / np.sqrt(len(bpd))),
        "n_bpd": len(bpd),
        "bpd_divergence": method,
        "bpd_nfe": int(ll.nfe),
        "bpd_seconds": bpd_seconds,
        "uniform_bpd": math.log2(levels),
        "mmd2_unbiased": float(metrics.mmd(out.x, test)),
        "nfe": int(out.nfe),
        "solver": s.solver,
        "n_eval": int(out.x.shape[0]),
        "n_test": int(test.shape[0]),
        "sample_seconds": sample_seconds,
    }


def _mosaic(images, rows: int, cols: int, image_shape, gap: float) -> np.ndarray:
    """`rows * cols` images (flat) tiled into one 2-D array, `gap`-valued gutters."""
    h, w, _ = image_shape
    tiles = np.asarray(images, np.float64)[: rows * cols, : h * w]
    tiles = tiles.reshape(-1, h, w)
    canvas = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), gap)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tile
    return canvas


def _show(ax, images, rows, cols, target, title: str) -> None:
    lo, hi = target.value_range
    canvas = _mosaic(np.clip(images, lo, hi), rows, cols, target.image_shape, lo)
    ax.imshow(canvas, cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def plot(exp, test, samples, path, title: str) -> None:
    """64 held-out images beside 64 samples, each as an 8×8 grid of images."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    _show(axes[0], test, 8, 8, exp.target, f"data: {exp.config.data.target} (test)")
    _show(axes[1], samples, 8, 8, exp.target, title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def guided_samples(exp, params, key, scale: float, per_class: int) -> np.ndarray:
    """`per_class` samples of each class, class by class, at guidance `scale`.

    Returns:
        The samples, `(num_classes * per_class, D)`.
    """
    condition = exp.condition
    s = exp.config.sample
    v = guided_field(
        exp.model_fn,
        condition,
        scale,
        path=exp.loss.path,
        prediction=exp.loss.prediction,
    )
    k = condition.num_classes
    labels = jnp.repeat(jnp.arange(k), per_class)
    x0 = exp.source.sample(key, k * per_class)
    out = sample_ode(
        v,
        v.state(x0, labels),
        params,
        solver=s.solver,
        steps=s.steps,
        rtol=s.rtol,
        atol=s.atol,
    )
    return np.asarray(out.x[0])


def plot_guided(exp, params, key, path, scales=(1.0, 3.0), per_class: int = 10) -> None:
    """One panel per guidance scale: a row of `per_class` samples per class.

    The same source draws (from `key`) at every scale, so the panels differ only
    by the guidance.
    """
    import matplotlib.pyplot as plt

    k = exp.condition.num_classes
    fig, axes = plt.subplots(
        1, len(scales), figsize=(4.2 * len(scales), 4.6), squeeze=False
    )
    for ax, scale in zip(axes[0], scales, strict=True):
        x = guided_samples(exp, params, key, scale, per_class)
        _show(ax, x, k, per_class, exp.target, f"guidance w = {scale:g}")
        ax.set_yticks(
            [r * (exp.target.image_shape[0] + 1) + 3.5 for r in range(k)],
            [str(r) for r in range(k)],
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
