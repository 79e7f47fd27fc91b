r"""Losses that train a flow map `X(t, s, x) = x + (s - t) u(t, s, x)` through `fit`.

Each is an `AbstractLoss` (`marginals`, `prepare`, `regress`), so `fit` and
`make_train_step` run them as they run flow matching; the `model_fn` they are given
is the network of an `AverageVelocityMap`, `model_fn(params, (t, s - t), x, cond)`
(`init_flow_map`). Time runs from the source (0) to the data (1); `t` is the start
of a jump and `s >= t` its end.

- `MeanFlowLoss` (Geng et al. 2025): $u(t, s, x_t) \approx \mathrm{sg}[v_t + (s - t)
  (\partial_t u + \nabla_x u\, v_t)]$;
- `ShortcutLoss` (Frans et al. 2024): $u(t, t, x_t) \approx v_t$ and
  $u(t, t + 2d, x_t) \approx \mathrm{sg}[\tfrac12(u(t, t + d, x_t) +
  u(t + d, t + 2d, x'))]$;
- `ConsistencyTraining` (Song et al. 2023): $X(t, s, x_t) \approx
  \mathrm{sg}\,X(t + \Delta, s, x_{t + \Delta})$ on the row's own pair;
- `ConsistencyDistillation` (Song et al. 2023): the same with
  $x_{t + \Delta} = x_t + \Delta\, v^{teacher}(t, x_t)$;
- `LagrangianDistillation` (Boffi et al. 2024): $\partial_s X(t, s, x_t) \approx
  v^{teacher}(s, X(t, s, x_t))$;
- `EulerianDistillation` (Boffi et al. 2024): $\partial_t X(t, s, x_t) +
  \nabla_x X(t, s, x_t)\, v^{teacher}(t, x_t) \approx 0$.

$v_t$ is the path's conditional velocity and `sg` a stop-gradient; derivatives are
`jax.jvp`s. The targets are computed with the current parameters under
`stop_gradient` (the trainer's EMA parameters are for sampling), as improved
consistency training (Song & Dhariwal 2023) recommends.
"""

import abc
import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..losses import AbstractLoss, LossAux, WeightFn, draw_source
from ..losses._base import Regression
from ..paths import AbstractPath, AffinePath, PathSample
from ..schedules import cond_ot
from ..time_samplers import LogitNormalTime, TimeSampler, UniformTime
from ._maps import AverageVelocityMap, Teacher

__all__ = [
    "AbstractFlowMapLoss",
    "AbstractPathFlowMapLoss",
    "ConsistencyDistillation",
    "ConsistencyTraining",
    "EulerianDistillation",
    "FlowMapTimes",
    "LagrangianDistillation",
    "MeanFlowLoss",
    "ShortcutLoss",
]


def _cond_ot_path() -> AffinePath:
    return AffinePath(cond_ot())


class FlowMapTimes(NamedTuple):
    r"""The times of a batch of jumps: start `t`, end `s`, and a midpoint `m`.

    `m` is the consistency losses' $t + \Delta$ and the shortcut loss's $t + d$
    (else equal to `t`).
    """

    t: Float[Array, " batch"]
    s: Float[Array, " batch"]
    m: Float[Array, " batch"]


def _share(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}.")
    return float(value)


def _rows(fn, params, times: FlowMapTimes, xt, target, cond):
    """`fn(params, t, s, m, x, target, cond)` on every row: per-sample errors."""
    cond_axis = None if cond is None else 0
    return jax.vmap(fn, in_axes=(None, 0, 0, 0, 0, 0, cond_axis))(
        params, times.t, times.s, times.m, xt, target, cond
    )


def _mse(a: Array, b: Array) -> Float[Array, ""]:
    return jnp.mean((a - b.astype(a.dtype)) ** 2)


class AbstractFlowMapLoss(AbstractLoss):
    """A regression of a flow map: a batch of jumps `X(t, s, x)` and their targets.

    Subclasses draw `FlowMapTimes`, start points and targets in `prepare` and give
    the error of one row in `error(fmap, params, t, s, m, x, target, cond)`.
    """

    @abc.abstractmethod
    def error(
        self, fmap: AverageVelocityMap, params, t, s, m, x, target, cond
    ) -> Float[Array, ""]:
        """The squared error of one row."""

    def regress(self, model_fn, params, t, xt, target, cond=None) -> Regression:
        """The mean error over the rows of the flow map of `model_fn`."""
        fmap = AverageVelocityMap(model_fn)

        def one(params, t_, s_, m_, x_, target_, cond_):
            return self.error(fmap, params, t_, s_, m_, x_, target_, cond_)

        per_sample = _rows(one, params, t, xt, target, cond)
        if self.weight_fn is not None:
            per_sample = per_sample * jax.vmap(self.weight_fn)(t.t)
        return jnp.mean(per_sample), LossAux(t.t, per_sample)


class AbstractPathFlowMapLoss(AbstractFlowMapLoss):
    """A flow-map loss on pairs `(x0, x1)`, `x0 ~ source`, starting on `path`."""

    path: eqx.AbstractVar[AbstractPath]

    def marginals(self, key: PRNGKeyArray, source: Any, x1: Array):
        """`(x0, x1)` with `x0 ~ source`, as for flow matching."""
        return draw_source(key, source, x1)

    def _path_samples(self, key, x0, x1, t) -> PathSample:
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape, got {x0.shape} and {x1.shape}."
            )
        keys = jax.random.split(key, x1.shape[0])
        return jax.vmap(self.path.sample)(keys, x0, x1, t.astype(x1.dtype))

    def __call__(self, model_fn, params, key, x0, x1, cond=None) -> Regression:
        """The loss on a batch of pairs: `prepare`, then `regress`."""
        t, ps, target = self.prepare(key, x0, x1)
        return self.regress(model_fn, params, t, ps.xt, target, cond)


def _ordered(key, sampler, n, dtype):
    """Two times per row from `sampler`, as `(start, end)` with start <= end."""
    k1, k2 = jax.random.split(key)
    a, b = sampler(k1, n).astype(dtype), sampler(k2, n).astype(dtype)
    return jnp.minimum(a, b), jnp.maximum(a, b)


class MeanFlowLoss(AbstractPathFlowMapLoss):
    r"""MeanFlow (Geng et al. 2025): regress the average velocity by its identity.

    Along a trajectory, $(s - t)\,u(t, s, x_t) = \int_t^s v$, so differentiating in
    the start time gives $u = v + (s - t)\,\frac{d}{dt}u$, with
    $\frac{d}{dt} u = \partial_t u + \nabla_x u\, v$: one `jax.jvp` of the network
    along $(1, v_t)$. The target uses the conditional velocity $v_t$ of the path
    (unbiased, as flow matching's), under a stop-gradient.

    Attributes:
        path: the path (default Cond-OT, the paper's).
        time_sampler: law of the two times of a row (sorted into `t <= s`); the
            paper's logit-normal(-0.4, 1) in its reversed time is
            logit-normal(0.4, 1) here.
        diagonal: the share of rows with `s = t` (plain flow matching); the
            paper's best one-step setting is 0.75.
        power: adaptive weight $\mathrm{sg}(1 / (\|\Delta\|^2 + c)^p)$ of each
            row's error, with $\|\Delta\|^2$ the mean over the event. The default
            0 is the plain squared error, unbiased for the conditional-velocity
            target; the paper's $p = 1$ (best on ImageNet) regresses something
            nearer a median, and on moons it was worse (one-step W2 0.71 against
            0.54 after 3,000 steps, seed 0).
        c: the weight's offset.
        weight_fn: optional weight $w(t)$ of each row.
    """

    path: AbstractPath = eqx.field(default_factory=_cond_ot_path)
    time_sampler: TimeSampler = eqx.field(
        static=True, default=LogitNormalTime(0.4, 1.0)
    )
    diagonal: float = eqx.field(static=True, default=0.75)
    power: float = eqx.field(static=True, default=0.0)
    c: float = eqx.field(static=True, default=1e-3)
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _share("diagonal", self.diagonal)
        if not self.power >= 0 or not self.c > 0:
            raise ValueError(
                f"power must be >= 0 and c > 0, got power={self.power}, c={self.c}."
            )

    def prepare(self, key, x0, x1):
        """Times `(t, s)` (a `diagonal` share with `s = t`), `x_t` and `v_t`."""
        n = x1.shape[0]
        k_t, k_d, k_path = jax.random.split(key, 3)
        t, s = _ordered(k_t, self.time_sampler, n, x1.dtype)
        s = jnp.where(jax.random.uniform(k_d, (n,)) < self.diagonal, t, s)
        ps = self._path_samples(k_path, x0, x1, t)
        return FlowMapTimes(t, s, t), ps, ps.ut

    def error(self, fmap, params, t, s, m, x, target, cond):
        del m

        def u(t_, x_):
            return fmap.average_velocity(params, t_, s, x_, cond)

        v = target.astype(x.dtype)
        pred, du_dt = jax.jvp(u, (t, x), (jnp.ones_like(t), v))
        goal = jax.lax.stop_gradient(v + (s - t) * du_dt)
        err = _mse(pred, goal)
        if self.power == 0:
            return err
        weight = jax.lax.stop_gradient(1.0 / (err + self.c) ** self.power)
        return weight * err


class ShortcutLoss(AbstractPathFlowMapLoss):
    r"""Shortcut models (Frans et al. 2024): self-consistency across step sizes.

    A share `1 - self_consistency` of the rows is flow matching on the diagonal,
    $u(t, t, x_t) \approx v_t$; the rest train a jump of $2d$ on two jumps of $d$,
    $u(t, t + 2d, x_t) \approx \mathrm{sg}[\tfrac12(u(t, t + d, x_t) +
    u(t + d, t + 2d, x'))]$, $x' = x_t + d\,u(t, t + d, x_t)$, with
    $d \in \{1, 2, 4, \dots, M/2\}/M$ uniform and $t$ a multiple of $2d$ in
    $[0, 1 - 2d]$. The queries of the smallest step $1/M$ read the instantaneous
    velocity (gap 0), which anchors the recursion on flow matching.

    Attributes:
        path: the path (default Cond-OT).
        base_steps: $M$, the finest number of steps, a power of two (the
            paper's 128).
        self_consistency: the share of rows trained for self-consistency (the
            paper's 1/4).
        time_sampler: law of the flow-matching rows' times.
        weight_fn: optional weight $w(t)$ of each row.
    """

    path: AbstractPath = eqx.field(default_factory=_cond_ot_path)
    base_steps: int = eqx.field(static=True, default=128)
    self_consistency: float = eqx.field(static=True, default=0.25)
    time_sampler: TimeSampler = eqx.field(static=True, default=UniformTime())
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        m = self.base_steps
        if isinstance(m, bool) or not isinstance(m, int) or m < 2 or m & (m - 1):
            raise ValueError(
                f"base_steps must be a power of two >= 2, got {self.base_steps!r}."
            )
        _share("self_consistency", self.self_consistency)

    def prepare(self, key, x0, x1):
        """Flow-matching rows `(t, t)` and self-consistency rows `(t, t + 2d)`."""
        n, dtype = x1.shape[0], x1.dtype
        k_t, k_d, k_grid, k_row, k_path = jax.random.split(key, 5)
        levels = int(math.log2(self.base_steps))  # d = 2^k / M, k < levels
        k = jax.random.randint(k_d, (n,), 0, levels)
        d = (2.0**k / self.base_steps).astype(dtype)
        slots = (self.base_steps // 2 ** (k + 1)).astype(jnp.int32)  # 1 / (2d)
        t_sc = (jax.random.randint(k_grid, (n,), 0, 1 << 30) % slots) * 2 * d
        consistency = jax.random.uniform(k_row, (n,)) < self.self_consistency
        t = jnp.where(consistency, t_sc, self.time_sampler(k_t, n).astype(dtype))
        s = jnp.where(consistency, t + 2 * d, t)
        m = jnp.where(consistency, t + d, t)
        ps = self._path_samples(k_path, x0, x1, t)
        return FlowMapTimes(t, s, m), ps, ps.ut

    def error(self, fmap, params, t, s, m, x, target, cond):
        d = m - t
        query = jnp.where(d * self.base_steps <= 1.5, 0.0, d)  # the smallest: gap 0
        sg = jax.lax.stop_gradient

        def u(t_, s_, x_):
            return fmap.average_velocity(sg(params), t_, s_, x_, cond)

        u1 = u(t, t + query, x)
        u2 = u(m, m + query, x + d * u1)
        goal = jnp.where(s > t, (u1 + u2) / 2, target.astype(x.dtype))
        return _mse(fmap.average_velocity(params, t, s, x, cond), goal)


def _consistency_times(key, n, dtype, steps: int, data_end: float) -> FlowMapTimes:
    """The consistency losses' times: grid start `t`, `m = t + 1/N`, end `s`."""
    k_n, k_s, k_end = jax.random.split(key, 3)
    i = jax.random.randint(k_n, (n,), 0, steps)
    t = (i / steps).astype(dtype)
    m = ((i + 1) / steps).astype(dtype)
    s = m + (1 - m) * jax.random.uniform(k_s, (n,), dtype)
    s = jnp.where(jax.random.uniform(k_end, (n,)) < data_end, 1.0, s)
    return FlowMapTimes(t, s.astype(dtype), m)


def _check_consistency(steps: int, data_end: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    _share("data_end", data_end)


class AbstractConsistencyLoss(AbstractPathFlowMapLoss):
    r"""Consistency: $X(t, s, x_t) \approx \mathrm{sg}\,X(t + \Delta, s, \hat x)$.

    Times: $t = i / N$ with $i$ uniform in $0, \dots, N - 1$, $\Delta = 1 / N$,
    the end $s = 1$ (the data: the paper's consistency function) for a share
    `data_end` of the rows and uniform on $[t + \Delta, 1]$ otherwise, so that the
    map also jumps to intermediate times and samples in several deterministic
    steps. A row with $s = t + \Delta$ regresses $X(t, t + \Delta, x_t)$ on
    $\hat x_{t + \Delta}$ itself, which anchors the map on the velocity.
    Subclasses give $\hat x_{t + \Delta}$.
    """

    steps: eqx.AbstractVar[int]
    data_end: eqx.AbstractVar[float]

    @abc.abstractmethod
    def next_point(self, key, ps: PathSample, m: Array) -> Array:
        r"""$\hat x_{t + \Delta}$ for the batch of path samples `ps` at times `m`."""

    def prepare(self, key, x0, x1):
        """Grid times, `x_t` and the next point of each row."""
        k_t, k_path, k_next = jax.random.split(key, 3)
        times = _consistency_times(
            k_t, x1.shape[0], x1.dtype, self.steps, self.data_end
        )
        ps = self._path_samples(k_path, x0, x1, times.t)
        return times, ps, self.next_point(k_next, ps, times.m)

    def error(self, fmap, params, t, s, m, x, target, cond):
        goal = fmap(jax.lax.stop_gradient(params), m, s, target, cond)
        return _mse(fmap(params, t, s, x, cond), goal)


class ConsistencyTraining(AbstractConsistencyLoss):
    r"""Consistency training (Song et al. 2023): the next point on the same path.

    $\hat x_{t + \Delta}$ is the conditional path's point at $t + \Delta$ for the
    row's own pair $(x_0, x_1)$: no teacher, and an unbiased estimate of the
    teacher's step as $\Delta \to 0$ (so `steps` should be large; the paper grows
    it during training, here it is fixed).

    Attributes:
        path: the path (default Cond-OT).
        steps: $N$, the grid of start times.
        data_end: the share of rows that jump to the data, $s = 1$.
        weight_fn: optional weight $w(t)$ of each row.
    """

    path: AbstractPath = eqx.field(default_factory=_cond_ot_path)
    steps: int = eqx.field(static=True, default=64)
    data_end: float = eqx.field(static=True, default=0.5)
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _check_consistency(self.steps, self.data_end)

    def next_point(self, key, ps, m):
        keys = jax.random.split(key, m.shape[0])
        return jax.vmap(self.path.sample)(keys, ps.x0, ps.x1, m.astype(ps.xt.dtype)).xt


class ConsistencyDistillation(AbstractConsistencyLoss):
    r"""Consistency distillation (Song et al. 2023): the teacher's Euler step.

    $\hat x_{t + \Delta} = x_t + \Delta\, v^{teacher}(t, x_t)$.

    Attributes:
        teacher: the `Teacher` velocity to distil.
        path: the path the start points are drawn on (default Cond-OT).
        steps: $N$, the grid of start times.
        data_end: the share of rows that jump to the data, $s = 1$.
        weight_fn: optional weight $w(t)$ of each row.
    """

    teacher: Teacher
    path: AbstractPath = eqx.field(default_factory=_cond_ot_path)
    steps: int = eqx.field(static=True, default=64)
    data_end: float = eqx.field(static=True, default=0.5)
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _check_teacher(self.teacher)
        _check_consistency(self.steps, self.data_end)

    def check_event_shape(self, event_shape):
        """The teacher must map samples of the data's `event_shape`."""
        self.teacher.check("teacher", event_shape)

    def marginals(self, key, source, x1):
        """`(x0, x1)`; the teacher is checked against the data's event shape."""
        self.check_event_shape(x1.shape[1:])
        return draw_source(key, source, x1)

    def next_point(self, key, ps, m):
        del key
        v = jax.vmap(self.teacher)(ps.t, ps.xt)
        return ps.xt + (m - ps.t).reshape(-1, *(1,) * (ps.xt.ndim - 1)) * v


def _check_teacher(teacher) -> None:
    if not isinstance(teacher, Teacher):
        raise TypeError(
            "teacher must be a flowlab.flowmaps.Teacher(v, args) (a velocity field "
            f"v(t, x, args) and its parameters), got {type(teacher).__name__}."
        )


class AbstractMapDistillation(AbstractPathFlowMapLoss):
    """A distillation of a `Teacher` velocity on ordered time pairs `t <= s`."""

    teacher: eqx.AbstractVar[Teacher]
    time_sampler: eqx.AbstractVar[TimeSampler]

    def __check_init__(self):
        _check_teacher(self.teacher)

    def check_event_shape(self, event_shape):
        """The teacher must map samples of the data's `event_shape`."""
        self.teacher.check("teacher", event_shape)

    def marginals(self, key, source, x1):
        """`(x0, x1)`; the teacher is checked against the data's event shape."""
        self.check_event_shape(x1.shape[1:])
        return draw_source(key, source, x1)

    def start_target(self, t, xt) -> Array | None:
        """What `error` reads of the teacher at the start points (default nothing)."""
        del t, xt

    def prepare(self, key, x0, x1):
        """Ordered times `t <= s`, `x_t` on the path, and `start_target`."""
        k_t, k_path = jax.random.split(key)
        t, s = _ordered(k_t, self.time_sampler, x1.shape[0], x1.dtype)
        ps = self._path_samples(k_path, x0, x1, t)
        return FlowMapTimes(t, s, t), ps, self.start_target(t, ps.xt)


class LagrangianDistillation(AbstractMapDistillation):
    r"""Lagrangian map distillation (Boffi et al. 2024): the map's end moves with $v$.

    $\partial_s X(t, s, x_t) = v^{teacher}(s, X(t, s, x_t))$, the derivative by
    one `jax.jvp` in $s$; the gradient flows through both sides.

    Attributes:
        teacher: the `Teacher` velocity to distil.
        path: the path the start points are drawn on (default Cond-OT).
        time_sampler: law of the two times of a row (sorted into `t <= s`).
        weight_fn: optional weight $w(t)$ of each row.
    """

    teacher: Teacher
    path: AbstractPath = eqx.field(default_factory=_cond_ot_path)
    time_sampler: TimeSampler = eqx.field(static=True, default=UniformTime())
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def error(self, fmap, params, t, s, m, x, target, cond):
        del m, target
        end, d_end = jax.jvp(
            lambda s_: fmap(params, t, s_, x, cond), (s,), (jnp.ones_like(s),)
        )
        return _mse(d_end, self.teacher(s, end))


class EulerianDistillation(AbstractMapDistillation):
    r"""Eulerian map distillation (Boffi et al. 2024): the map is constant along $v$.

    $\partial_t X(t, s, x_t) + \nabla_x X(t, s, x_t)\, v^{teacher}(t, x_t) = 0$:
    one `jax.jvp` of the map in $(t, x)$ along $(1, v^{teacher})$.

    Attributes:
        teacher: the `Teacher` velocity to distil.
        path: the path the start points are drawn on (default Cond-OT).
        time_sampler: law of the two times of a row (sorted into `t <= s`).
        weight_fn: optional weight $w(t)$ of each row.
    """

    teacher: Teacher
    path: AbstractPath = eqx.field(default_factory=_cond_ot_path)
    time_sampler: TimeSampler = eqx.field(static=True, default=UniformTime())
    weight_fn: WeightFn | None = eqx.field(static=True, default=None)

    def start_target(self, t, xt):
        """The teacher's velocity at the start points, $v^{teacher}(t, x_t)$."""
        return jax.vmap(self.teacher)(t, xt)

    def error(self, fmap, params, t, s, m, x, target, cond):
        del m
        v = target.astype(x.dtype)
        _, d_along = jax.jvp(
            lambda t_, x_: fmap(params, t_, s, x_, cond), (t, x), (jnp.ones_like(t), v)
        )
        return jnp.mean(d_along**2)
