"""Sampling cost: time and NFE to draw 10k samples with every flowlab ODE solver.

The field is torchcfm's 2-D model (3 hidden layers of width 64, SELU, `t` appended),
trained briefly on N(0, I) -> two moons with flowlab so that adaptive solvers see a
realistic field. Each solver in `flowlab.sampling.ODE_SOLVERS` integrates a batch of
10k standard-normal draws from t = 0 to 1 through `flowlab.sample_ode`: fixed-step
solvers with 100 steps, adaptive ones with rtol = atol = 1e-5 (the defaults). The first
call (trace + compile + one solve) is reported apart from the median of the timed
solves. NFE is what `sample_ode` reports; in full mode it is checked against a count
taken by a host callback inside the field.

Beside it, when torchdiffeq imports, `torchdiffeq.odeint` solves the same problem with
the same weights copied into a torch MLP (the same 100-step grid, the same
tolerances), with NFE counted in the field and the largest difference of its samples
from flowlab's.

    python -m benchmarks.bench_sampling [--quick] [--no-torch] [--out DIR]
"""

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import flowlab
from flowlab import data, schedules
from flowlab.models import MLP, init_model
from flowlab.sampling import ADAPTIVE, ODE_SOLVERS
from flowlab.training import init_state, make_optimizer, make_train_step

from . import _common as common

__all__ = ["headline", "main", "markdown", "run"]

DIM = 2
WIDTH = 64
DEPTH = 3
STEPS = 100
TOL = 1e-5

# flowlab solver name -> torchdiffeq method (torchdiffeq has no Tsit5).
TORCHDIFFEQ_METHODS = {
    "euler": "euler",
    "heun": "heun2",
    "midpoint": "midpoint",
    "rk4": "rk4",  # torchdiffeq's rk4 is the 3/8-rule variant: also 4 stages
    "dopri5": "dopri5",
    "dopri8": "dopri8",
}


@dataclass(frozen=True)
class Settings:
    """Samples per solve, timed solves, training steps, extras.

    `reference_steps`: RK4 steps of the reference solution the errors are taken
    against (None: no error columns). `budget_s`: per solver, after 3 rounds no
    new round of interleaved solves starts past this.
    """

    n_samples: int
    reps: int
    train_steps: int
    count_nfe: bool
    reference_steps: int | None
    peer_solvers: tuple[str, ...]
    budget_s: float

    @classmethod
    def make(cls, quick: bool) -> "Settings":
        if quick:
            return cls(2_000, 1, 200, False, None, ("euler", "rk4", "dopri5"), 5.0)
        return cls(10_000, 7, 3000, True, 1000, tuple(TORCHDIFFEQ_METHODS), 20.0)


def trained_field(train_steps: int):
    """`(v, params, final_loss)`: a 3x64 SELU MLP trained on moons with flowlab."""
    module = MLP(width=WIDTH, depth=DEPTH, activation="selu", time_embedding="identity")
    key = jax.random.key(0)
    model_fn, params = init_model(module, key, jnp.zeros(DIM, jnp.float32))
    loss = flowlab.FlowMatchingLoss(flowlab.AffinePath(schedules.cond_ot()))
    optimizer, _ = make_optimizer("adamw", 1e-3, weight_decay=1e-5)
    k = 100
    step = jax.jit(
        make_train_step(
            model_fn,
            loss,
            optimizer,
            source=data.Gaussian(DIM),
            batch_size=256,
            steps_per_call=k,
        ),
        donate_argnums=0,
    )
    state = init_state(key, params, optimizer)
    for _ in range(max(1, train_steps // k)):
        state, metrics = step(state, data.Moons())
    final_loss = float(jnp.mean(metrics["loss"]))

    def v(t, x, params):
        return model_fn(params, t, x, None)

    return v, state.params, final_loss


def _solver_kwargs(name: str) -> dict[str, Any]:
    if name in ADAPTIVE:
        return {"solver": name, "rtol": TOL, "atol": TOL}
    return {"solver": name, "steps": STEPS}


class Solve(NamedTuple):
    """A warmed-up solve: `run()` draws the samples and returns them with the NFE."""

    run: Callable[[], tuple[np.ndarray, int]]
    first_call_s: float
    x: np.ndarray
    nfe: int
    extra: dict[str, Any]


def _warm(run: Callable[[], tuple[np.ndarray, int]], **extra) -> Solve:
    start = time.perf_counter()
    x, nfe = run()
    return Solve(run, time.perf_counter() - start, x, nfe, extra)


def flowlab_solve(v, params, x0, name: str) -> Solve:
    """`flowlab.sample_ode` with solver `name`; the first call compiles."""
    kwargs = _solver_kwargs(name)

    def run():
        out = flowlab.sample_ode(v, x0, params, **kwargs)
        return np.asarray(out.x), int(out.nfe)  # np.asarray blocks

    return _warm(run)


def counted_nfe(v, params, x0, kwargs) -> int:
    """Evaluations of the batched field, counted by a host callback (untimed)."""
    count = [0]

    def tick():
        count[0] += 1

    def counting_v(t, x, args):
        jax.debug.callback(tick)  # unbatched: once per evaluation of the batch
        return v(t, x, args)

    out = flowlab.sample_ode(counting_v, x0, params, **kwargs)
    jax.block_until_ready(out.x)
    jax.effects_barrier()
    return count[0]


def torch_field(torch, params):
    """flowlab's MLP parameters copied into a `torch.nn.Sequential`."""
    layers = []
    for i in range(DEPTH + 1):
        dense = params[f"Dense_{i}"]
        kernel = np.asarray(dense["kernel"])
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(np.asarray(dense["bias"]).copy()))
        layers.append(linear)
        if i < DEPTH:
            layers.append(torch.nn.SELU())
    return torch.nn.Sequential(*layers).eval()


def errors(x: np.ndarray, reference: np.ndarray | None) -> dict[str, float]:
    """Mean and largest absolute difference from the reference samples."""
    if reference is None:
        return {}
    diff = np.abs(x - reference)
    return {"mean_abs_error": float(diff.mean()), "max_abs_error": float(diff.max())}


def torchdiffeq_solve(torch, odeint, net, x0, name: str, threads=None) -> Solve:
    """`torchdiffeq.odeint` with the counterpart of flowlab's solver `name`."""
    method = TORCHDIFFEQ_METHODS[name]
    nfe = [0]

    def func(t, x):
        nfe[0] += 1
        return net(torch.cat([x, t.expand(x.shape[0], 1)], dim=-1))

    ts = torch.tensor([0.0, 1.0])
    y0 = torch.from_numpy(np.asarray(x0).copy())
    if name in ADAPTIVE:
        kwargs = {"rtol": TOL, "atol": TOL}
    else:
        grid = torch.linspace(0.0, 1.0, STEPS + 1)
        kwargs = {"options": {"grid_constructor": lambda f, y, t: grid}}

    def run():
        nfe[0] = 0
        default_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                x = odeint(func, y0, ts, method=method, **kwargs)[-1]
        finally:
            torch.set_num_threads(default_threads)
        return x.numpy(), nfe[0]

    return _warm(run, method=method)


def bench_solver(
    solves: dict[str, Solve], settings: Settings, reference
) -> dict[str, Any]:
    """Time the solves of one solver in interleaved reps; NFE, errors, times."""
    runs = {name: (lambda units, s=solve: s.run()) for name, solve in solves.items()}
    timings = common.time_interleaved(
        runs, dict.fromkeys(solves, 1), settings.reps, budget_s=settings.budget_s
    )
    first_x = next(iter(solves.values())).x
    out = {}
    for name, solve in solves.items():
        out[name] = {
            **solve.extra,
            "first_call_s": solve.first_call_s,
            "seconds": timings[name]["median"],
            "timing": timings[name],
            "nfe": solve.nfe,
            "max_abs_diff_to_flowlab": float(np.max(np.abs(solve.x - first_x))),
            **errors(solve.x, reference),
        }
    return out


def run(quick: bool = False, no_torch: bool = False) -> dict[str, Any]:
    """The whole sampling benchmark; a JSON-ready dict."""
    settings = Settings.make(quick)
    torch, reason = common.optional_torch(no_torch)
    odeint = None
    if torch is not None:
        module, why = common.optional_module("torchdiffeq")
        if module is None:
            reason = f"torchdiffeq not importable ({why})"
        else:
            odeint = module.odeint
    v, params, loss = trained_field(settings.train_steps)
    x0 = data.Gaussian(DIM).sample(jax.random.key(42), settings.n_samples)
    net = None if odeint is None else torch_field(torch, params)
    if net is not None:
        probe = np.asarray(x0[:256])
        with torch.inference_mode():
            ours = jax.vmap(v, in_axes=(None, 0, None))(0.5, probe, params)
            theirs = net(torch.from_numpy(np.c_[probe, np.full(256, 0.5, "f4")]))
        field_diff = float(np.max(np.abs(np.asarray(ours) - theirs.numpy())))
    result: dict[str, Any] = {
        "settings": asdict(settings),
        "steps": STEPS,
        "rtol": TOL,
        "atol": TOL,
        "field": f"MLP {DEPTH}x{WIDTH} SELU, t appended",
        "field_train_loss": loss,
        "torchdiffeq_skipped": reason if odeint is None else None,
        "torch_field_max_abs_diff": None if net is None else field_diff,
        "torch_threads": None if net is None else torch.get_num_threads(),
        "solvers": {},
    }
    reference = None
    if settings.reference_steps is not None:
        steps = settings.reference_steps
        out = flowlab.sample_ode(v, x0, params, solver="rk4", steps=steps)
        reference = np.asarray(out.x)
        result["reference"] = f"flowlab rk4, {steps} steps"
    for name in ODE_SOLVERS:
        solves = {"flowlab": flowlab_solve(v, params, x0, name)}
        if net is not None and name in settings.peer_solvers:
            solves["torchdiffeq"] = torchdiffeq_solve(torch, odeint, net, x0, name)
            if torch.get_num_threads() > 1:
                solves["torchdiffeq_1thread"] = torchdiffeq_solve(
                    torch, odeint, net, x0, name, threads=1
                )
        entry = bench_solver(solves, settings, reference)
        if settings.count_nfe:
            entry["flowlab"]["nfe_counted"] = counted_nfe(
                v, params, x0, _solver_kwargs(name)
            )
        result["solvers"][name] = entry
    return result


def _ms(entry: dict[str, Any]) -> str:
    """Median solve time in ms, with the best rep in brackets."""
    timing = entry["timing"]
    return f"{common.fmt(1e3 * timing['median'])} ({common.fmt(1e3 * timing['best'])})"


def _error(entry: dict[str, Any]) -> str:
    if "mean_abs_error" not in entry:
        return "–"
    return f"{entry['mean_abs_error']:.1e} / {entry['max_abs_error']:.1e}"


def markdown(result: dict[str, Any]) -> str:
    """The sampling table in markdown."""
    has_peer = result["torchdiffeq_skipped"] is None
    counted = result["settings"]["count_nfe"]
    has_error = "reference" in result
    threads = result.get("torch_threads")
    headers = ["solver", "steps", "flowlab NFE"]
    if counted:
        headers += ["NFE counted"]
    headers += ["flowlab first call (s)", "flowlab solve, ms"]
    if has_error:
        headers += ["flowlab error mean / max"]
    peer_cols = []
    if has_peer:
        peer_cols = [f"torchdiffeq ({threads} threads), ms", "(1 thread), ms"]
        headers += ["torchdiffeq NFE", *peer_cols, "faster torchdiffeq / flowlab"]
        if has_error:
            headers += ["torchdiffeq error mean / max"]
    rows = []
    for name, entry in result["solvers"].items():
        ours = entry["flowlab"]
        steps = "adaptive" if name in ADAPTIVE else str(result["steps"])
        row = [name, steps, ours["nfe"]]
        if counted:
            row += [ours["nfe_counted"]]
        row += [f"{ours['first_call_s']:.2f}", _ms(ours)]
        if has_error:
            row += [_error(ours)]
        if has_peer:
            peers = [entry.get(k) for k in ("torchdiffeq", "torchdiffeq_1thread")]
            present = [p for p in peers if p is not None]
            if not present:
                row += ["–"] * (len(peer_cols) + 2 + has_error)
            else:
                fastest = min(p["seconds"] for p in present)
                row += [present[0]["nfe"]]
                row += [_ms(p) if p is not None else "–" for p in peers]
                row += [f"{fastest / ours['seconds']:.2f}×"]
                if has_error:
                    row += [_error(present[0])]
        rows.append(row)
    settings = result["settings"]
    lines = [
        f"**Sampling {settings['n_samples']:,} 2-D points** with a {result['field']} "
        f"field (trained {settings['train_steps']} steps, loss "
        f"{result['field_train_loss']:.3f}); fixed-step solvers take "
        f"{result['steps']} steps, adaptive ones rtol = atol = {result['rtol']:g}. "
        f"Solve times: median (best) of up to {settings['reps']} interleaved "
        "solves; the first call is trace + compile + one solve.",
        "",
        common.markdown_table(headers, rows),
        "",
    ]
    if has_error:
        lines.append(
            f"Errors are absolute differences from a reference ({result['reference']}),"
            " averaged over all coordinates / the largest."
        )
    if has_peer:
        lines.append(
            "torchdiffeq's `rk4` is the 3/8-rule variant; its `heun2` is Heun's "
            "method; it has no Tsit5. The torch copy of the field differs from "
            f"flowlab's by at most {result['torch_field_max_abs_diff']:.1e}."
        )
    else:
        lines.append(f"torchdiffeq columns skipped: {result['torchdiffeq_skipped']}.")
    return "\n".join(lines)


def _tol(x: float) -> str:
    """`1e-5` for 1e-05."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def headline(result: dict[str, Any]) -> list[list[str]]:
    """Summary rows: the adaptive dopri5 solve and the fixed-step solvers' range."""
    n = f"{result['settings']['n_samples']:,}"
    solvers = result["solvers"]
    rows = []

    def ratio(entry):
        peers = [entry.get(k) for k in ("torchdiffeq", "torchdiffeq_1thread")]
        peers = [p for p in peers if p is not None]
        if not peers:
            return None, None
        fastest = min(peers, key=lambda p: p["seconds"])
        return fastest, fastest["seconds"] / entry["flowlab"]["seconds"]

    if "dopri5" in solvers:
        entry = solvers["dopri5"]
        ours = entry["flowlab"]
        peer, r = ratio(entry)
        rows.append(
            [
                f"{n} samples, dopri5 (rtol = atol = {_tol(result['rtol'])})",
                f"{common.fmt(1e3 * ours['seconds'])} ms, NFE {ours['nfe']}",
                "–"
                if peer is None
                else f"torchdiffeq {common.fmt(1e3 * peer['seconds'])} ms, "
                f"NFE {peer['nfe']}",
                "–" if r is None else f"{r:.2f}× faster",
            ]
        )
    fixed = [k for k in solvers if k not in ADAPTIVE]
    ratios = [ratio(solvers[k])[1] for k in fixed]
    ratios = [r for r in ratios if r is not None]
    ms = [1e3 * solvers[k]["flowlab"]["seconds"] for k in fixed]
    if fixed:
        rows.append(
            [
                f"{n} samples, {'/'.join(fixed)}, {result['steps']} steps",
                f"{common.fmt(min(ms))}–{common.fmt(max(ms))} ms",
                "torchdiffeq, same NFE" if ratios else "–",
                f"{min(ratios):.2f}–{max(ratios):.2f}× faster" if ratios else "–",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    return common.runner_main("sampling", __doc__, run, markdown, argv)


if __name__ == "__main__":
    sys.exit(main())
