"""Few-step sampling with a flow map: `x_{k+1} = X(t_k, t_{k+1}, x_k)`."""

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .. import _checks
from ._maps import AbstractFlowMap

__all__ = ["FlowMapSolution", "flow_map_times", "sample_flow_map"]


class FlowMapSolution(NamedTuple):
    """What `sample_flow_map` returns.

    Attributes:
        x: the batch at the last time.
        ts: the times, `(steps + 1,)`.
        trajectory: `(steps + 1, batch, *event)` with `save_trajectory`, else `None`.
        nfe: network evaluations per sample: one per jump.
    """

    x: Float[Array, "batch *event"]
    ts: Float[Array, " k"]
    trajectory: Float[Array, "k batch *event"] | None
    nfe: int


def flow_map_times(
    steps: int | None = None,
    times: Any = None,
    t0: float = 0.0,
    t1: float = 1.0,
) -> np.ndarray:
    """The checked times of a few-step sample: `times`, or `steps` equal jumps.

    Raises `ValueError` for a time outside `[0, 1]`, fewer than two times, or
    times that are not strictly monotone (increasing samples, decreasing inverts).
    """
    if times is not None and steps is not None:
        raise ValueError("pass steps or times, not both.")
    if times is None:
        steps = 1 if steps is None else _checks.positive_int("steps", steps)
        for name, value in (("t0", t0), ("t1", t1)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}.")
        if t0 == t1:
            raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}.")
        return np.linspace(float(t0), float(t1), steps + 1)
    ts = np.asarray(times, dtype=np.float64)
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError(
            f"times must be a 1-D list of at least two times, got shape {ts.shape}."
        )
    bad = ts[(ts < 0) | (ts > 1) | ~np.isfinite(ts)]
    if bad.size:
        raise ValueError(
            f"times must lie in [0, 1] (0 the source, 1 the data), got {bad[0]!r} "
            f"in {ts.tolist()}."
        )
    gaps = np.diff(ts)
    if not (np.all(gaps > 0) or np.all(gaps < 0)):
        raise ValueError(
            "times must be strictly monotone (increasing to sample, decreasing to "
            f"invert), got {ts.tolist()}."
        )
    return ts


@eqx.filter_jit
def _jumps(flow_map, params, x0, ts, cond, save: bool):
    cond_axis = None if cond is None else 0
    step = jax.vmap(flow_map, in_axes=(None, None, None, 0, cond_axis))

    def body(x, pair):
        x = step(params, pair[0], pair[1], x, cond)
        return x, (x if save else None)

    pairs = jnp.stack([ts[:-1], ts[1:]], axis=1).astype(x0.dtype)
    x, path = jax.lax.scan(body, x0, pairs)
    trajectory = None if not save else jnp.concatenate([x0[None], path])
    return x, trajectory


def sample_flow_map(
    flow_map: AbstractFlowMap,
    params: PyTree,
    x0: Float[Array, "batch *event"],
    *,
    steps: int | None = None,
    times: Any = None,
    t0: float = 0.0,
    t1: float = 1.0,
    cond: Any = None,
    save_trajectory: bool = False,
) -> FlowMapSolution:
    """Jump a batch through a flow map: one evaluation per step.

    Args:
        flow_map: an `AbstractFlowMap` (`AverageVelocityMap` of a trained
            flow-map network, `EulerMap` of a velocity model).
        params: its parameters (e.g. a `TrainState`'s `ema_params`).
        x0: the batch at the first time, batch-first.
        steps: equal jumps from `t0` to `t1` (default 1).
        times: instead of `steps`, the times themselves, strictly monotone in
            `[0, 1]` (e.g. `[0, 0.5, 1]`; decreasing maps data back to noise).
        t0: the first time with `steps`.
        t1: the last time with `steps`.
        cond: `None`, or a condition per row (leading axis the batch).
        save_trajectory: also return the batch at every time.

    Returns:
        A `FlowMapSolution` `(x, ts, trajectory, nfe)`.
    """
    _checks.instance_of(
        "flow_map",
        flow_map,
        AbstractFlowMap,
        "flowlab.flowmaps.AbstractFlowMap",
        "flowmaps.AverageVelocityMap(model_fn)",
    )
    ts = flow_map_times(steps, times, t0, t1)
    x0 = jnp.asarray(x0)
    if x0.ndim < 1:
        raise ValueError(f"x0 must be a batch (batch, *event), got shape {x0.shape}.")
    x, trajectory = _jumps(
        flow_map, params, x0, jnp.asarray(ts), cond, bool(save_trajectory)
    )
    return FlowMapSolution(x, jnp.asarray(ts, x0.dtype), trajectory, len(ts) - 1)
