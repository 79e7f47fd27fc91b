"""Training throughput: flowlab's jitted train step beside a PyTorch eager loop.

Two cases, both the Cond-OT flow-matching regression from N(0, I) to two moons with
AdamW (lr 1e-3, weight decay 1e-5) and an MLP that takes `t` as an extra input:

- `small`: torchcfm's 2-D model, 3 hidden layers of width 64, SELU, batch 256;
- `large`: 4 hidden layers of width 512, SELU, batch 4096.

flowlab runs the library path of `flowlab.training.fit`: `make_train_step` with a
sampler batch (`data.Moons()`, drawn on device), jitted with `donate_argnums=0`, at
`steps_per_call` K = 1 and a fused K (a `lax.scan` of K steps per call). PyTorch runs
the same model, loss and optimiser as an eager loop at its default thread count.
Timed repetitions of the contenders are interleaved so that they share the load of
the machine; steps/s are medians. The first call (trace + compile + one call) is
reported on its own.

The large model's achieved FLOP/s (analytic `6 B sum(in * out)` per step: forward
`2 B sum(in * out)`, backward twice that) is compared with a jitted square float32
matmul, and a breakdown (the same step's matmuls alone, forward + backward only)
shows where the rest of the time goes.

    python -m benchmarks.bench_train [--quick] [--no-torch] [--out DIR]
"""

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import flowlab
from flowlab import data, schedules
from flowlab.models import MLP, init_model
from flowlab.training import init_state, make_optimizer, make_train_step

from . import _common as common
from ._bench_train_report import headline, markdown

__all__ = ["headline", "main", "markdown", "run"]

DIM = 2
LR = 1e-3
WEIGHT_DECAY = 1e-5
BREAKDOWN = ("matmuls_only", "loss_grad", "loss_grad_relu")
SMALL_RATIO_TARGET = 3.0
LARGE_MATMUL_TARGET = 0.75


@dataclass(frozen=True)
class Case:
    """One model size: hidden `width` and `depth`, `batch` rows, fused `k`."""

    name: str
    width: int
    depth: int
    batch: int
    fused_k: int

    def dense_shapes(self) -> list[tuple[int, int]]:
        """`(in, out)` of each dense layer; the input is `x` with `t` appended."""
        hidden = [(self.width, self.width)] * (self.depth - 1)
        return [(DIM + 1, self.width), *hidden, (self.width, DIM)]

    def flops_per_step(self) -> float:
        """Analytic matmul FLOPs of one step: forward 2 B sum(in*out), backward 2x."""
        return 6.0 * self.batch * sum(i * o for i, o in self.dense_shapes())


SMALL = Case("small", width=64, depth=3, batch=256, fused_k=100)
LARGE = Case("large", width=512, depth=4, batch=4096, fused_k=10)


@dataclass(frozen=True)
class Settings:
    """How long to measure: seconds per timed rep, reps, matmul size, extras.

    `budget_s`: after 3 rounds no new round of interleaved reps starts past this.
    """

    target_s: float
    reps: int
    matmul_sizes: tuple[int, ...]
    matmul_reps: int

    large_fused_k: int
    breakdown: bool
    budget_s: float

    @classmethod
    def make(cls, quick: bool) -> "Settings":
        if quick:
            return cls(0.1, 2, (1024,), 3, 2, breakdown=False, budget_s=5.0)
        sizes = (1024, 2048, 4096)
        return cls(1.0, 9, sizes, 9, LARGE.fused_k, breakdown=True, budget_s=60.0)


class Contender(NamedTuple):
    """A warmed-up training loop: `run(calls)` runs and blocks; K steps per call."""

    steps_per_call: int
    first_call_s: float
    run: Callable[[int], Any]
    last_loss: Callable[[], float]


def _warm(steps_per_call: int, run: Callable[[int], Any], last_loss) -> Contender:
    start = time.perf_counter()
    run(1)
    return Contender(steps_per_call, time.perf_counter() - start, run, last_loss)


# --------------------------------------------------------------------------- flowlab


def _flowlab_step(case: Case, k: int):
    module = MLP(
        width=case.width,
        depth=case.depth,
        activation="selu",
        time_embedding="identity",
    )
    key = jax.random.key(0)
    model_fn, params = init_model(module, key, jnp.zeros(DIM, jnp.float32))
    loss = flowlab.FlowMatchingLoss(flowlab.AffinePath(schedules.cond_ot()))
    optimizer, _ = make_optimizer("adamw", LR, weight_decay=WEIGHT_DECAY)
    step_fn = make_train_step(
        model_fn,
        loss,
        optimizer,
        source=data.Gaussian(DIM),
        batch_size=case.batch,
        steps_per_call=k,
    )
    step = jax.jit(step_fn, donate_argnums=0)
    return step, init_state(key, params, optimizer), data.Moons()


def flowlab_contender(case: Case, k: int) -> Contender:
    """flowlab's jitted, donated step at `steps_per_call=k`, moons drawn on device."""
    step, state, target = _flowlab_step(case, k)
    box = {"state": state, "metrics": None}

    def run(calls: int) -> None:
        state = box["state"]
        for _ in range(calls):
            state, metrics = step(state, target)
        jax.block_until_ready(state)
        box.update(state=state, metrics=metrics)

    def last_loss() -> float:
        return float(jnp.ravel(box["metrics"]["loss"])[-1])

    return _warm(k, run, last_loss)


def xla_flops_per_step(case: Case) -> float | None:
    """FLOPs of one compiled K=1 step by XLA's `cost_analysis` (None if absent)."""
    step, state, target = _flowlab_step(case, 1)
    analysis = step.lower(state, target).compile().cost_analysis()
    if isinstance(analysis, list):  # older jax: one dict per computation
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return None if flops is None else float(flops)


# --------------------------------------------------------------------------- torch


def torch_moons(torch, n: int, noise: float = 0.2):
    """The moons of `flowlab.data.Moons` (torchdyn's `generate_moons`, 3x - 1)."""
    n_out = n // 2
    n_in = n - n_out
    a_out = torch.linspace(0, torch.pi, n_out)
    a_in = torch.linspace(0, torch.pi, n_in)
    outer = torch.stack([torch.cos(a_out), torch.sin(a_out)], dim=-1)
    inner = torch.stack([1 - torch.cos(a_in), 0.5 - torch.sin(a_in)], dim=-1)
    x = torch.cat([outer, inner]) + noise * torch.rand(n, 1)
    return 3 * x - 1


def torch_mlp(torch, case: Case):
    """`Linear(3, w), SELU, ..., Linear(w, 2)`: flowlab's MLP in torch."""
    layers = []
    for i, (n_in, n_out) in enumerate(case.dense_shapes()):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < case.depth:
            layers.append(torch.nn.SELU())
    return torch.nn.Sequential(*layers)


def torch_contender(
    torch, case: Case, flavour: str = "torch", threads: int | None = None
) -> Contender:
    """An eager PyTorch loop at `threads` intra-op threads (None: torch's default).

    `flavour="torchcfm"` uses torchcfm's `MLP` and `ConditionalFlowMatcher` (its
    README's loop) instead of the hand-written model and interpolation.
    """
    torch.manual_seed(0)
    batch = case.batch
    if flavour == "torchcfm":
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
        from torchcfm.models import MLP as CfmMLP

        model = CfmMLP(dim=DIM, w=case.width, time_varying=True)
        matcher = ConditionalFlowMatcher(sigma=0.0)

        def pairs(x0, x1):
            t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
            return t[:, None], xt, ut

    else:
        model = torch_mlp(torch, case)

        def pairs(x0, x1):
            t = torch.rand(batch, 1)
            return t, t * x1 + (1 - t) * x0, x1 - x0

    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    box = {"loss": None}

    def run(steps: int) -> None:
        default_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            for _ in range(steps):
                x0 = torch.randn(batch, DIM)
                x1 = torch_moons(torch, batch)
                t, xt, ut = pairs(x0, x1)
                loss = ((model(torch.cat([xt, t], dim=-1)) - ut) ** 2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        finally:
            torch.set_num_threads(default_threads)
        box["loss"] = loss.detach()

    return _warm(1, run, lambda: float(box["loss"]))


# --------------------------------------------------------------------------- breakdown


def _dense_weights(case: Case):
    keys = jax.random.split(jax.random.key(1), len(case.dense_shapes()) + 1)
    weights = [
        jax.random.normal(k, shape, jnp.float32) / shape[0] ** 0.5
        for k, shape in zip(keys[1:], case.dense_shapes(), strict=True)
    ]
    h0 = jax.random.normal(keys[0], (case.batch, DIM + 1), jnp.float32)
    return weights, h0


def _matmuls_only(weights, h0):
    """The matmuls of one step and nothing else: h W forward; h^T g and g W^T back."""
    hs, h = [], h0
    for w in weights:
        hs.append(h)
        h = h @ w
    g, grads = h, []
    for w, h_in in zip(reversed(weights), reversed(hs), strict=True):
        grads.append(h_in.T @ g)
        g = g @ w.T
    return grads


def _loss_grad(case: Case, activation: str):
    """flowlab's jitted loss `value_and_grad` on one fixed batch, and the params."""
    module = MLP(width=case.width, depth=case.depth, activation=activation)
    key = jax.random.key(0)
    model_fn, params = init_model(module, key, jnp.zeros(DIM, jnp.float32))
    loss = flowlab.FlowMatchingLoss(flowlab.AffinePath(schedules.cond_ot()))
    x0 = data.Gaussian(DIM).sample(jax.random.key(2), case.batch)
    x1 = data.Moons().sample(jax.random.key(3), case.batch)
    grad = jax.jit(jax.value_and_grad(lambda p: loss(model_fn, p, key, x0, x1)[0]))
    return grad, params


def breakdown_runs(case: Case) -> dict[str, Callable[[int], Any]]:
    """Where a step's time goes: its matmuls alone; the loss gradient, SELU / ReLU.

    Each is a warmed-up `run(units)` of one call per unit, one step's worth of
    work; the ReLU variant exposes the cost of SELU's exponential.
    """
    weights, h0 = _dense_weights(case)

    def runner(fn, *args):
        jax.block_until_ready(fn(*args))

        def run(units):
            for _ in range(units):
                out = fn(*args)
            jax.block_until_ready(out)

        return run

    runs = {
        "matmuls_only": runner(jax.jit(_matmuls_only), weights, h0),
        "loss_grad": runner(*_loss_grad(case, "selu")),
        "loss_grad_relu": runner(*_loss_grad(case, "relu")),
    }
    assert tuple(runs) == BREAKDOWN
    return runs


# --------------------------------------------------------------------------- driver


def bench_case(
    case: Case,
    torch,
    settings: Settings,
    torchcfm_ok: bool,
    extras: dict[str, tuple[Callable[[int], Any], float]] | None = None,
) -> dict:
    """Time every contender on `case`, interleaved; steps/s, ratios, FLOP/s.

    `extras` maps names to `(run, flops_per_unit)`, work timed in the same
    interleaved rounds (the matmul reference, the breakdown) so that it shares the
    contenders' noise.
    """
    extras = extras or {}
    contenders = {
        "flowlab_k1": flowlab_contender(case, 1),
        "flowlab_fused": flowlab_contender(case, case.fused_k),
    }
    if torch is not None:
        contenders["torch"] = torch_contender(torch, case)
        if torch.get_num_threads() > 1:
            contenders["torch_1thread"] = torch_contender(torch, case, threads=1)
        if torchcfm_ok and case.depth == 3:  # torchcfm's MLP has 3 hidden layers
            contenders["torchcfm"] = torch_contender(torch, case, "torchcfm")
    runs = {name: c.run for name, c in contenders.items()}
    runs.update({name: run for name, (run, _) in extras.items()})
    units = {
        name: common.calibrate(run, settings.target_s, 100_000)
        for name, run in runs.items()
    }
    timings = common.time_interleaved(
        runs, units, settings.reps, budget_s=settings.budget_s
    )

    flops = case.flops_per_step()
    out: dict[str, Any] = {"case": asdict(case), "flops_per_step": flops}
    for name, c in contenders.items():
        timing = timings[name]
        out[name] = {
            "steps_per_call": c.steps_per_call,
            "first_call_s": c.first_call_s,
            "steps_per_s": c.steps_per_call / timing["median"],
            "best_steps_per_s": c.steps_per_call / timing["best"],
            **_per_step(timing, c.steps_per_call, flops),
            "last_loss": c.last_loss(),
            "timing_per_call": timing,
        }
    for name, (_, unit_flops) in extras.items():
        out[name] = {"timing": timings[name], **_per_step(timings[name], 1, unit_flops)}
    if "torch" in out:
        torch_rate = out["torch"]["steps_per_s"]
        peers = [out[name] for name in ("torch", "torch_1thread") if name in out]
        best_rate = max(peer["steps_per_s"] for peer in peers)
        for name in ("flowlab_k1", "flowlab_fused"):
            out[name]["ratio_to_torch"] = out[name]["steps_per_s"] / torch_rate
            out[name]["ratio_to_best_torch"] = out[name]["steps_per_s"] / best_rate
    return out


def run(quick: bool = False, no_torch: bool = False) -> dict[str, Any]:
    """The whole training benchmark; a JSON-ready dict."""
    settings = Settings.make(quick)
    torch, torch_reason = common.optional_torch(no_torch)
    torchcfm_reason = None
    if torch is not None:
        _, torchcfm_reason = common.optional_module("torchcfm.models")
    result: dict[str, Any] = {
        "settings": asdict(settings),
        "torch_skipped": torch_reason,
        "torchcfm_skipped": torchcfm_reason,
        "torch_threads": None if torch is None else torch.get_num_threads(),
    }
    cfm_ok = torch is not None and torchcfm_reason is None
    # The sweep picks the fastest size; that size is then timed again beside the
    # large model, in the same interleaved rounds, as the reference of its ratios.
    sweep = common.matmul_reference(settings.matmul_sizes, settings.matmul_reps)
    result["matmul_sweep"] = sweep
    large = replace(LARGE, fused_k=settings.large_fused_k)
    result["cases"] = [asdict(SMALL), asdict(large)]
    result["small"] = bench_case(SMALL, torch, settings, cfm_ok)
    result["small"]["load_average_after"] = common.load_average()

    n = sweep["n"]
    extras = {"matmul": (common.matmul_run(n), 2.0 * n**3)}
    if settings.breakdown:
        flops = large.flops_per_step()
        extras.update(
            {name: (run, flops) for name, run in breakdown_runs(large).items()}
        )
    result["large"] = bench_case(large, torch, settings, cfm_ok, extras)
    result["large"]["load_average_after"] = common.load_average()
    matmul = result["large"].pop("matmul")
    # FLOPs per CPU second barely move with the load, so the most efficient matmul
    # of the sweep and the interleaved runs is the conservative reference for them.
    best_cpu = max(m["flops_per_cpu_s"] for m in [*sweep["sizes"], matmul])
    result["matmul"] = {
        "n": n,
        "dtype": "float32",
        **matmul,
        "reference_flops_per_cpu_s": best_cpu,
    }
    if settings.breakdown:
        result["large"]["xla_flops_per_step"] = xla_flops_per_step(large)
        result["large"]["breakdown"] = {
            name: result["large"].pop(name) for name in BREAKDOWN
        }
    for case in (SMALL, large):
        for name in ("flowlab_k1", "flowlab_fused", "torch", "torch_1thread"):
            entry = result[case.name].get(name)
            if entry is not None:
                _fractions(entry, result["matmul"])
    for part in result["large"].get("breakdown", {}).values():
        _fractions(part, result["matmul"])
    result["targets"] = targets(result)
    return result


def _per_step(timing: common.Timing, k: int, flops: float) -> dict[str, float]:
    """FLOP/s (median, best rep, per CPU second) and CPU costs per step."""
    return {
        "flops_per_s": flops * k / timing["median"],
        "best_flops_per_s": flops * k / timing["best"],
        "flops_per_cpu_s": flops * k / timing["cpu_s_per_unit"],
        "cpu_s_per_step": timing["cpu_s_per_unit"] / k,
        "sys_s_per_step": timing["sys_s_per_unit"] / k,
        "minor_faults_per_step": timing["minor_faults_per_unit"] / k,
    }


def _fractions(entry: dict[str, Any], matmul: dict[str, Any]) -> None:
    """FLOP/s as fractions of the matmul's: median to median, best rep to best,
    and FLOPs per CPU second to the matmul's."""
    entry["fraction_of_matmul"] = entry["flops_per_s"] / matmul["flops_per_s"]
    entry["best_fraction_of_matmul"] = (
        entry["best_flops_per_s"] / matmul["best_flops_per_s"]
    )
    entry["cpu_fraction_of_matmul"] = (
        entry["flops_per_cpu_s"] / matmul["reference_flops_per_cpu_s"]
    )


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, met or not (None when torch was not measured)."""
    small = result["small"]
    ratio = small["flowlab_fused"].get("ratio_to_torch")
    fraction = max(
        result["large"]["flowlab_k1"]["fraction_of_matmul"],
        result["large"]["flowlab_fused"]["fraction_of_matmul"],
    )
    return {
        "small_vs_torch": {
            "target": SMALL_RATIO_TARGET,
            "measured_fused": ratio,
            "measured_k1": small["flowlab_k1"].get("ratio_to_torch"),
            "measured_fused_vs_best_torch": small["flowlab_fused"].get(
                "ratio_to_best_torch"
            ),
            "met": None if ratio is None else ratio >= SMALL_RATIO_TARGET,
        },
        "large_vs_matmul": {
            "target": LARGE_MATMUL_TARGET,
            "measured": fraction,
            "measured_best_rep": max(
                result["large"]["flowlab_k1"]["best_fraction_of_matmul"],
                result["large"]["flowlab_fused"]["best_fraction_of_matmul"],
            ),
            "measured_cpu_time": max(
                result["large"]["flowlab_k1"]["cpu_fraction_of_matmul"],
                result["large"]["flowlab_fused"]["cpu_fraction_of_matmul"],
            ),
            "met": fraction >= LARGE_MATMUL_TARGET,
        },
    }


def main(argv: list[str] | None = None) -> int:
    return common.runner_main("train", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
