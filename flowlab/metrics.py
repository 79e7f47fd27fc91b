r"""Sample-quality and transport metrics.

- `wasserstein2`: the exact 2-Wasserstein distance between two equal-size point
  clouds with uniform weights, $W_2 = \big(\min_\pi \tfrac1n\sum_i
  \|x_i - y_{\pi(i)}\|^2\big)^{1/2}$, from an exact assignment (no entropic bias).
- `mmd`: maximum mean discrepancy with a sum of Gaussian kernels.
- `path_energy`: $E\int_0^1 \|v(t, x_t)\|^2 dt$ along the flow of a field, and
  `normalized_path_energy` $= |E\!\int\!\|v\|^2 - W_2^2| / W_2^2$ (Tong et al.'s NPE).
- `straightness`: Liu et al.'s $S = E\int_0^1 \|(x_1 - x_0) - v(t, x_t)\|^2 dt$
  along the flow (0 for straight paths), with the chord-to-arc ratio.
- `nfe_curve`: sample quality against the number of field evaluations, and
  `plot_nfe_curve` to draw several such curves.
- `bits_per_dim`: a log-likelihood in bits per dimension, with the uniform
  dequantisation bound for data on a grid (`flowlab.data.dequantize`).
- `kinetic_energy` / `kinetic_energy_mc`: the kinetic energy $E\int\|u_t\|^2dt$ of a
  Gaussian path on data, by the formula in the data separation $\rho$
  (`data_separation`) and by Monte Carlo on the exact marginal velocity
  (`flowlab.paths.kinetic`).
"""

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int
from scipy.optimize import linear_sum_assignment

from . import _checks
from ._types import VelocityFn
from .manifolds import safe_norm
from .paths.kinetic import (
    DataSeparation,
    KineticEnergy,
    data_separation,
    kinetic_energy,
    kinetic_energy_mc,
)
from .sampling import sample_ode

__all__ = [
    "DataSeparation",
    "KineticEnergy",
    "NFECurve",
    "Straightness",
    "bits_per_dim",
    "data_separation",
    "kinetic_energy",
    "kinetic_energy_mc",
    "mmd",
    "nfe_curve",
    "normalized_path_energy",
    "path_energy",
    "plot_nfe_curve",
    "straightness",
    "wasserstein2",
]


def wasserstein2(x: Float[ArrayLike, "n *d"], y: Float[ArrayLike, "n *d"]) -> float:
    """Exact 2-Wasserstein distance between two sets of `n` points (uniform weights).

    Solves the assignment problem on the squared-Euclidean cost with scipy's
    Jonker-Volgenant solver, in float64 on the host. Cost grows as $O(n^3)$: about
    3 s for n = 2,000 and 4-5 minutes for n = 10,000 on one CPU core.
    """
    x = np.asarray(x, np.float64).reshape(np.shape(x)[0], -1)
    y = np.asarray(y, np.float64).reshape(np.shape(y)[0], -1)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must hold the same number of points of the same size, got "
            f"{x.shape} and {y.shape}."
        )
    cost = np.sum(x**2, axis=1)[:, None] + np.sum(y**2, axis=1)[None, :] - 2 * x @ y.T
    np.maximum(cost, 0.0, out=cost)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def mmd(
    x: Float[ArrayLike, "n *d"],
    y: Float[ArrayLike, "m *d"],
    bandwidths: Sequence[float] = (0.1, 0.5, 1.0, 2.0, 5.0),
) -> Float[Array, ""]:
    r"""Unbiased squared MMD with kernel $\sum_b \exp(-\|x - y\|^2 / (2 b^2))$."""
    x = jnp.asarray(x).reshape(jnp.shape(x)[0], -1)
    y = jnp.asarray(y).reshape(jnp.shape(y)[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same event size, got {x.shape}, {y.shape}."
        )
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("mmd needs at least two points in each set.")

    def kernel(a, b):
        d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
        d2 = jnp.maximum(d2, 0.0)
        return sum(jnp.exp(-d2 / (2 * bw**2)) for bw in bandwidths)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    sum_xx = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    sum_yy = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    return sum_xx + sum_yy - 2 * jnp.mean(kxy)


class _EnergyField(eqx.Module):
    """Dynamics of `(x, kinetic energy so far)` for one sample.

    A module rather than a closure: equal for the same `v`, so repeated calls reuse
    `sample_ode`'s compiled solve instead of retracing `v`.
    """

    v: VelocityFn = eqx.field(static=True)

    def __call__(self, t, state, args):
        x, _ = state
        dx = self.v(t, x, args)
        return dx, jnp.sum(dx**2)


def path_energy(
    v: VelocityFn,
    x0: Float[Array, "batch *event"],
    args: Any = None,
    *,
    solver: str | diffrax.AbstractSolver = "euler",
    steps: int | None = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[Float[Array, "batch *event"], Float[Array, ""]]:
    r"""Samples and the mean kinetic energy $E\int_0^1 \|v(t, x_t)\|^2 dt$.

    The energy is integrated alongside the flow with the same solver and steps, so
    the samples are those `sample_ode` would return.

    Returns:
        `(x1, energy)`: the pushed-forward batch and the batch mean of the energy.
    """
    x0 = jnp.asarray(x0)
    state = (x0, jnp.zeros((x0.shape[0],), x0.dtype))
    out = sample_ode(
        _EnergyField(v), state, args, solver=solver, steps=steps, rtol=rtol, atol=atol
    )
    x1, energy = out.x
    return x1, jnp.mean(energy)


def normalized_path_energy(energy: float, w2: float) -> float:
    r"""Tong et al.'s NPE, $|E\!\int\!\|v\|^2dt - W_2^2| / W_2^2$."""
    if not w2 > 0:
        raise ValueError(f"w2 must be positive, got {w2}.")
    return float(abs(float(energy) - w2**2) / w2**2)


def bits_per_dim(
    log_prob: Float[ArrayLike, "*batch"],
    event_size: int,
    *,
    bin_width: float | None = None,
) -> Float[Array, "*batch"]:
    r"""Negative log-likelihood in bits per dimension, elementwise.

    For continuous data, $-\log p(x) / (D \ln 2)$. For data on a grid of spacing
    $\Delta$ scored at dequantised points $y = x + u$ (`flowlab.data.dequantize`:
    $u$ uniform on the bin centred at $x$), the discrete bound

    $$\mathrm{bpd}(x) = -\frac{\log p(y) + D \log\Delta}{D \ln 2},$$

    whose mean over the data and $u$ bounds the model's discrete bits per
    dimension from above ($\log P(x) \ge \mathbb E_u \log p(x + u) + D \log\Delta$,
    `flowlab.data.dequantize`). A density uniform on $L$ levels per coordinate
    gives exactly $\log_2 L$.

    Args:
        log_prob: $\log p$ in nats, e.g. `log_likelihood(v, y, params).log_prob`
            of dequantised data `y`; any shape (one value per sample).
        event_size: $D$, the number of coordinates of one sample (64 for the
            8x8 digits).
        bin_width: the grid spacing $\Delta$ of discrete data after scaling (the
            digits of `load_digits`: $1/8$), or `None` for continuous data.

    Returns:
        Bits per dimension for each value of `log_prob`; average them for the
        data set's figure.

    Example:
        >>> import math
        >>> # N(0, I) in D = 2 at x = 0: -log p = log(2 pi), in bits per dim.
        >>> round(float(bits_per_dim(-math.log(2 * math.pi), 2)), 4)
        1.3257
    """
    event_size = _checks.positive_int(
        "event_size", event_size, "a positive int (the size of one sample, x[0].size)"
    )
    log_prob = jnp.asarray(log_prob)
    if bin_width is not None:
        if not (_checks.is_number(bin_width) and bin_width > 0):
            raise ValueError(
                "bin_width must be None (continuous data) or a positive float "
                f"(the grid spacing after scaling, e.g. 1 / 8), got {bin_width!r}."
            )
        log_prob = log_prob + event_size * float(np.log(bin_width))
    return -log_prob / (event_size * float(np.log(2.0)))  # weak: keeps dtype


class Straightness(NamedTuple):
    r"""What `straightness` returns (batch means, except `x`).

    Attributes:
        x: the samples at $t = 1$, those `sample_ode` returns with the same solver
            and steps.
        straightness: $S = E\int_0^1 \|(x_1 - x_0) - v(t, x_t)\|^2 dt$.
        energy: $E\int_0^1 \|v(t, x_t)\|^2 dt$ (as `path_energy`).
        displacement: $E\|x_1 - x_0\|^2$, so `straightness = energy - displacement`.
        chord_arc_ratio: $E\big[\|x_1 - x_0\| / \int_0^1 \|v(t, x_t)\| dt\big]$, in
            $(0, 1]$ and 1 for straight paths (a path that does not move counts as
            straight).
    """

    x: Float[Array, "batch *event"]
    straightness: Float[Array, ""]
    energy: Float[Array, ""]
    displacement: Float[Array, ""]
    chord_arc_ratio: Float[Array, ""]


class _StraightnessField(eqx.Module):
    """Dynamics of `(x, energy so far, arc length so far)` for one sample.

    A module, as `_EnergyField`, so repeated calls reuse the compiled solve.
    """

    v: VelocityFn = eqx.field(static=True)

    def __call__(self, t, state, args):
        x, _, _ = state
        dx = self.v(t, x, args)
        return dx, jnp.sum(dx**2), safe_norm(dx)


def straightness(
    v: VelocityFn,
    x0: Float[Array, "batch *event"],
    args: Any = None,
    *,
    solver: str | diffrax.AbstractSolver = "euler",
    steps: int | None = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Straightness:
    r"""Liu et al.'s straightness of the flow of `v` from `x0`, and its arc ratio.

    For the flow $\dot x_t = v(t, x_t)$ started at the batch $x_0$ (Liu, Gong and
    Liu 2022, *Flow straight and fast*),

    $$S(v) = \mathbb E_{x_0}\int_0^1 \big\|(x_1 - x_0) - v(t, x_t)\big\|^2 dt
    = \mathbb E\!\int_0^1\! \|v(t, x_t)\|^2 dt - \mathbb E\|x_1 - x_0\|^2 \ge 0,$$

    the second form because $\int_0^1 v(t, x_t)\,dt = x_1 - x_0$. $S = 0$ exactly
    when every trajectory is a straight line travelled at constant speed, which a
    one-step Euler solve then follows exactly. The chord-to-arc ratio
    $\mathbb E[\|x_1 - x_0\| / \int_0^1\|v\|dt]$ measures the shape alone (speed
    changes along a straight line leave it at 1).

    Both integrals are accumulated alongside the flow with the same solver and
    steps (one solve, as `path_energy`), and $S$ is their difference per sample.
    With a solver's own quadrature the identity holds for the discrete scheme too
    (Euler: $\sum_k h\|\Delta - v_k\|^2 = \sum_k h\|v_k\|^2 - \|\Delta\|^2$ with
    $\Delta = \sum_k h v_k$), so the result is the solver's estimate of $S$; the
    difference loses about `steps` roundings of the energy, so for very straight
    flows in float32 ($S \lesssim 10^{-5} E$) pass float64 points.

    Args:
        v: a per-sample field `v(t, x, args)`.
        x0: the starting batch, batch-first.
        args: passed to `v`.
        solver: a diffrax solver or its name (see `flowlab.sample_ode`).
        steps: fixed steps; `None` for adaptive steps with an adaptive solver.
        rtol: relative tolerance of adaptive steps.
        atol: absolute tolerance of adaptive steps.

    Returns:
        A `Straightness` with the samples and the batch means.

    Example:
        >>> import jax.numpy as jnp
        >>> from flowlab import metrics
        >>> v = lambda t, x, args: jnp.ones_like(x)  # straight lines
        >>> out = metrics.straightness(v, jnp.zeros((4, 2)))
        >>> round(float(out.straightness), 6), round(float(out.chord_arc_ratio), 6)
        (0.0, 1.0)
    """
    _checks.callables(v=v)
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError(
            "x0 must be a batch (batch, *event), got a scalar; pass x0[None] for "
            "one sample."
        )
    zero = jnp.zeros((x0.shape[0],), x0.dtype)
    out = sample_ode(
        _StraightnessField(v),
        (x0, zero, zero),
        args,
        solver=solver,
        steps=steps,
        rtol=rtol,
        atol=atol,
    )
    x1, energy, arc = out.x
    chord_sq = jnp.sum((x1 - x0).reshape(x0.shape[0], -1) ** 2, axis=1)
    chord = jnp.sqrt(chord_sq)
    ratio = jnp.where(arc > 0, chord / jnp.where(arc > 0, arc, 1.0), 1.0)
    return Straightness(
        x=x1,
        straightness=jnp.mean(energy - chord_sq),
        energy=jnp.mean(energy),
        displacement=jnp.mean(chord_sq),
        chord_arc_ratio=jnp.mean(ratio),
    )


class NFECurve(NamedTuple):
    """Sample quality against the number of function evaluations (`nfe_curve`).

    Attributes:
        steps: the step counts, in the order given.
        nfe: the evaluations of the batched field each solve made.
        value: the metric of each solve's samples against the reference.
    """

    steps: Int[np.ndarray, " k"]
    nfe: Int[np.ndarray, " k"]
    value: Float[np.ndarray, " k"]


def nfe_curve(
    v: VelocityFn,
    x0: Float[Array, "batch *event"],
    reference: Float[ArrayLike, "m *event"],
    args: Any = None,
    *,
    solver: str | diffrax.AbstractSolver = "euler",
    steps: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    metric: Callable[[Array, Any], float] = wasserstein2,
) -> NFECurve:
    r"""Sample `x0` with each step count and measure the samples against `reference`.

    For each $k$ in `steps`, `sample_ode(v, x0, args, solver=solver, steps=k)`
    gives samples $\hat x^{(k)}$ after $\mathrm{NFE}_k$ evaluations ($k$ for Euler,
    $2k$ for Heun or midpoint, $4k$ for RK4), and the curve holds
    $\text{metric}(\hat x^{(k)}, \text{reference})$. The default metric is the
    exact $W_2$ (`wasserstein2`, which needs as many reference points as samples);
    any `metric(x, reference) -> float` can stand in, e.g. an MMD, a classifier
    score, or the bits per dimension of the samples under a known density. By the
    triangle inequality a curve of $W_2$ values converges to the $W_2$ of the
    exact flow's samples at the solver's order: $|W_2(\hat x^{(k)}, y) -
    W_2(x_1, y)| \le W_2(\hat x^{(k)}, x_1)$.

    Every step count reuses one compiled solve (the step is traced).

    Args:
        v: a per-sample field `v(t, x, args)`.
        x0: the starting batch, batch-first (the same points for every $k$).
        reference: what `metric` compares the samples with (reference points).
        args: passed to `v`.
        solver: a diffrax solver or its name (see `flowlab.sample_ode`).
        steps: the step counts, positive ints.
        metric: `metric(x, reference)`, a number; lower or higher is better as the
            metric says.

    Returns:
        An `NFECurve` of NumPy arrays.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowlab import metrics
        >>> x0 = jax.random.normal(jax.random.key(0), (64, 2))
        >>> curve = metrics.nfe_curve(lambda t, x, a: x, x0, jnp.e * x0, steps=(1, 8))
        >>> curve.nfe.tolist(), bool(curve.value[1] < curve.value[0])
        ([1, 8], True)
    """
    _checks.callables(v=v)
    if not callable(metric):
        raise TypeError(
            "metric must be a callable metric(x, reference) -> float, e.g. "
            "flowlab.metrics.wasserstein2."
        )
    if isinstance(steps, int) or not isinstance(steps, Sequence) or not steps:
        raise ValueError(
            f"steps must be a non-empty sequence of positive ints, e.g. (1, 2, 4), "
            f"got {steps!r}."
        )
    steps = [_checks.positive_int("steps", k, "positive ints") for k in steps]
    x0 = jnp.asarray(x0)
    if metric is wasserstein2 and np.shape(reference) != x0.shape:
        raise ValueError(
            f"reference must hold as many points of the same shape as x0 for the "
            f"default metric wasserstein2, got reference {np.shape(reference)} and "
            f"x0 {x0.shape}; draw {x0.shape[0]} reference points or pass a metric."
        )
    nfe, value = [], []
    for k in steps:
        out = sample_ode(v, x0, args, solver=solver, steps=k)
        nfe.append(int(out.nfe))
        value.append(float(metric(out.x, reference)))
    return NFECurve(
        steps=np.asarray(steps, np.int64),
        nfe=np.asarray(nfe, np.int64),
        value=np.asarray(value, np.float64),
    )


def plot_nfe_curve(
    curves: Mapping[str, NFECurve],
    path: str | os.PathLike,
    *,
    baselines: Mapping[str, float] | None = None,
    ylabel: str = "$W_2$",
    title: str | None = None,
) -> None:
    """Draw NFE-versus-quality curves, one line per label, on a log-NFE axis.

    Args:
        curves: label to `NFECurve` (e.g. `{"euler": ..., "midpoint": ...}`).
        path: the image file to write; its suffix picks the format (`.png`, ...).
        baselines: label to a value drawn as a dashed horizontal line, e.g. the
            metric of an adaptive solve.
        ylabel: the metric's axis label.
        title: an optional title.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(
            "curves must be a non-empty mapping of label to NFECurve, e.g. "
            "{'euler': metrics.nfe_curve(v, x0, reference)}."
        )
    for label, curve in curves.items():
        if not isinstance(curve, NFECurve):
            raise TypeError(
                f"curves[{label!r}] must be an NFECurve (from metrics.nfe_curve), "
                f"got {type(curve).__name__}."
            )
        if not np.all(np.asarray(curve.nfe) > 0):
            raise ValueError(
                f"curves[{label!r}] has no evaluation count (nfe {curve.nfe}: the "
                "solver's tableau is unknown), so it cannot go on an NFE axis; use "
                "a named solver or build NFECurve(steps, nfe, value) yourself."
            )
    baselines = {} if baselines is None else dict(baselines)
    from matplotlib.figure import Figure  # no pyplot: no global figure state
    from matplotlib.ticker import ScalarFormatter

    fig = Figure(figsize=(5.0, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for label, curve in curves.items():
        ax.plot(curve.nfe, curve.value, marker="o", label=label)
    for i, (label, value) in enumerate(baselines.items()):
        color = f"C{(len(curves) + i) % 10}"
        ax.axhline(float(value), linestyle="--", linewidth=1, color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())  # 1, 2, 4, ... not 2^k
    ax.set_xlabel("NFE")
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(os.fspath(path), dpi=120)
