"""The `flowlab` command line: `train`, `sample`, `eval`, `info`, `bench`.

A thin shell over `flowlab.run`: it parses arguments, prints, and turns errors into a
one-line reason and a non-zero exit status.
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from ._interrupts import Interrupts

__all__ = ["main"]

_EPILOG_TRAIN = """\
examples:
  flowlab train                         # the embedded default: N(0,I) -> moons
  flowlab train moons --out runs/moons --steps 3000 checkpoint_every=1000
  flowlab train 8gaussians_to_moons model.width=128 optim.lr=3e-4 --steps 20000
  flowlab train configs/checkerboard.toml batch_size=512 log_every=100
  flowlab train coupling=my_project.couplings:my_ot   # your own code, by import path
"""


def _train_names() -> str:
    """The names `flowlab train` accepts, read when `--help` is printed."""
    from . import registry
    from .config import named_configs

    rows = [("configs", named_configs())]
    rows += [
        (key, registry.names(kind))
        for key, kind in (
            ("data.target", "data"),
            ("path.schedule", "schedule"),
            ("coupling", "coupling"),
            ("sample.solver", "ode_solver"),
            ("model.name", "model"),
        )
    ]
    lines = [f"  {key}: {', '.join(values)}" for key, values in rows]
    return "names (or 'package.module:attribute' for your own):\n" + "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """A parser whose epilog may end with text computed when help is printed."""

    def __init__(self, *args, epilog_fn=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epilog_fn = epilog_fn

    def format_help(self) -> str:
        text = super().format_help()
        return text + "\n" + self.epilog_fn() + "\n" if self.epilog_fn else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlab", description="Flow matching in JAX: train, sample, evaluate."
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    train = sub.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a velocity field. With no CONFIG, run the embedded default."
        " CONFIG and key=value overrides may come before or after the flags.",
        epilog=_EPILOG_TRAIN,
        epilog_fn=_train_names,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG] [key=value ...]",
        help="a named config (configs/NAME.toml) or a TOML path, and dotted overrides",
    )
    train.add_argument(
        "--out", help="run directory (default: the first free runs/NAME-seedS[-k])"
    )
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue RUN_DIR from its newest readable checkpoint",
    )
    train.add_argument("--devices", type=int, help="devices in the mesh (default all)")
    train.add_argument("--steps", type=int, help="number of training steps")
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bar and the evaluation phases",
    )
    train.add_argument(
        "--strict",
        action="store_true",
        help="with --resume: fail if the newest checkpoint does not read back",
    )

    sample = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description="Sample from the EMA parameters of a run's newest checkpoint.",
    )
    sample.add_argument("run_dir", metavar="RUN_DIR")
    sample.add_argument("--n", type=int, default=10_000, help="number of samples")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.add_argument("--solver", help="ODE solver name (default: the run's)")
    sample.add_argument("--steps", type=int, help="fixed number of solver steps")
    sample.add_argument("--out", help="output .npy file (default RUN_DIR/samples.npy)")
    sample.add_argument(
        "--cond",
        help="condition of a conditional run for every sample: a class label "
        "(e.g. 3), or comma-separated floats for a vector condition",
    )
    sample.add_argument(
        "--guidance",
        type=float,
        metavar="W",
        help="classifier-free guidance scale with --cond (1: conditional model, "
        "0: unconditional; default 1)",
    )
    sample.add_argument(
        "--guidance-interval",
        type=float,
        nargs=2,
        metavar=("T_LO", "T_HI"),
        help="apply the guidance scale only for T_LO <= t <= T_HI (1 elsewhere)",
    )
    sample.add_argument(
        "--strict",
        action="store_true",
        help="fail if the newest checkpoint does not read back",
    )

    evaluate = sub.add_parser(
        "eval",
        help="recompute a run's metrics",
        description="Recompute W2, MMD and NFE of a run's newest checkpoint.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument(
        "--strict",
        action="store_true",
        help="fail if the newest checkpoint does not read back",
    )

    info = sub.add_parser(
        "info",
        help="print devices, versions and the mesh a run would use",
        description="Print devices, library versions and the training mesh.",
    )
    info.add_argument("--devices", type=int, help="devices in the mesh (default all)")

    bench = sub.add_parser(
        "bench",
        help="run the speed benchmarks beside the PyTorch peers",
        description="Run the benchmark runners (training, sampling, couplings, "
        "devices), each in its own process, and write benchmarks/runs/NAME/ under "
        "the working directory: RUNNER/results.json and results.md, and summary.md.",
    )
    bench.add_argument("--quick", action="store_true", help="a fast smoke run")
    bench.add_argument(
        "--only", nargs="+", metavar="RUNNER", help="run only these (see --list)"
    )
    bench.add_argument("--list", action="store_true", help="list the runners")
    bench.add_argument("--no-torch", action="store_true", help="skip the peers")
    bench.add_argument("--name", help="the run folder's name (default: jax backend)")
    bench.add_argument(
        "--out", metavar="DIR", help="where run folders go (default benchmarks/runs)"
    )
    return parser


def _split_train_args(items: list[str]) -> tuple[str | None, list[str]]:
    """The one CONFIG among `items` (anywhere) and the `key=value` overrides."""
    names = [item for item in items if "=" not in item]
    if len(names) > 1:
        raise ValueError(
            f"one CONFIG at most, got {names}; overrides are written key=value."
        )
    return (names[0] if names else None), [item for item in items if "=" in item]


def _fresh_run_dir(name: str, seed: int) -> str:
    """`runs/NAME-seedS`, or with `-2`, `-3`, ... when that one is taken."""
    base = os.path.join("runs", f"{name}-seed{seed}")
    out, k = base, 1
    while os.path.exists(out):
        k += 1
        out = f"{base}-{k}"
    return out


def _start_distributed(config) -> None:
    from .training import initialize_distributed

    d = config.distributed
    initialize_distributed(d.coordinator_address, d.num_processes, d.process_id)


def _started(config=None) -> None:
    """Start JAX's backends (and the distributed runtime), then honour interrupts.

    A SIGINT during the imports and the backends' start was recorded
    (`flowlab._interrupts`); the command stops here rather than go on.
    """
    _INTERRUPTS.check()
    if config is not None:
        _start_distributed(config)
    import jax

    jax.devices()
    _INTERRUPTS.check()


def _report(line: str) -> None:
    """The `log_fn` of `flowlab.run`: one line to stderr."""
    print(line, file=sys.stderr, flush=True)


def _train(args) -> int:
    from pathlib import Path

    from .config import load_config

    config_name, overrides = _split_train_args(args.args)
    for flag, key in (
        (args.steps, "steps"),
        (args.seed, "seed"),
        (args.devices, "devices"),
    ):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.resume is not None:
        if config_name is not None or args.out is not None:
            raise ValueError("--resume RUN_DIR takes no CONFIG and no --out.")
        if args.seed is not None:
            raise ValueError("--resume keeps the run's seed; --seed cannot change it.")
        run_config = Path(args.resume) / "config.toml"
        if not run_config.is_file():
            raise ValueError(
                f"{args.resume!r} is not a run directory (no config.toml)."
            )
        config = load_config(run_config, overrides)  # errors before the imports
        from .run import resume_run

        _started(config)
        summary = resume_run(
            args.resume,
            overrides,
            progress=not args.no_progress,
            callbacks=[_INTERRUPTS.stop_training()],
            strict=args.strict,
            log_fn=_report,
        )
        out = args.resume
    else:
        if args.strict:
            raise ValueError("--strict applies to --resume RUN_DIR only.")
        config = load_config(config_name, overrides)  # errors before the imports
        from .run import train_run

        _started(config)
        out = args.out or _fresh_run_dir(config.name, config.seed)
        summary = train_run(
            config,
            out,
            progress=not args.no_progress,
            callbacks=[_INTERRUPTS.stop_training()],
            log_fn=_report,
        )
    print(json.dumps(summary, indent=2))
    print(f"run written to {out}")
    return 0


def _cond_value(text: str | None):
    """`--cond`: an int label, or a list of floats (a vector condition)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--cond must be a class label (e.g. 3) or comma-separated floats "
            f"(e.g. 0.5,-1), got {text!r}."
        ) from None


def _sample(args) -> int:
    import numpy as np

    from .run import sample_run

    _started()
    _INTERRUPTS.immediate()
    if not (Path(args.run_dir) / "config.toml").is_file():
        raise ValueError(f"{args.run_dir!r} is not a run directory (no config.toml).")
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.npy"
    if out.suffix != ".npy":
        raise ValueError(f"--out must be a .npy file, got {str(out)!r}.")
    if not out.parent.is_dir():
        raise ValueError(f"--out directory {str(out.parent)!r} does not exist.")
    x = sample_run(
        args.run_dir,
        args.n,
        args.seed,
        args.solver,
        args.steps,
        cond=_cond_value(args.cond),
        guidance=args.guidance,
        guidance_interval=args.guidance_interval,
        strict=args.strict,
        log_fn=_report,
    )
    tmp = out.with_name(f".{out.stem}.tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, out)
    print(f"{x.shape[0]} samples written to {out}")
    return 0


def _eval(args) -> int:
    from .run import evaluate_run, write_atomic

    _started()
    _INTERRUPTS.immediate()
    result = evaluate_run(args.run_dir, strict=args.strict, log_fn=_report)
    text = json.dumps(result, indent=2)
    write_atomic(Path(args.run_dir) / "eval.json", text + "\n")
    print(text)
    return 0


def _info(args) -> int:
    import importlib.metadata as md
    import platform

    import jax

    from .training import make_mesh

    versions = {}
    for name in (
        "flowlab",
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "diffrax",
        "orbax-checkpoint",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    mesh = make_mesh(args.devices)
    print(f"python {platform.python_version()} on {platform.machine()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"processes: {jax.process_count()} (this is {jax.process_index()})")
    print(f"devices: {jax.device_count()} ({jax.local_device_count()} local)")
    for d in jax.devices():
        print(f"  {d.id}: {d.platform} {d.device_kind}")
    print(f"mesh: {dict(mesh.shape)} over devices {[d.id for d in mesh.devices.flat]}")
    return 0


def _benchmarks():
    """`run_all` of the benchmark runners: the copy a wheel ships, else a checkout's.

    A wheel holds them as `flowlab._benchmarks`; a source checkout (an editable
    install) has `benchmarks/` beside this package.
    """
    import importlib
    import importlib.util

    if importlib.util.find_spec("flowlab._benchmarks") is not None:
        return importlib.import_module("flowlab._benchmarks.run_all")
    root = Path(__file__).resolve().parent.parent
    if (root / "benchmarks" / "run_all.py").is_file():
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return importlib.import_module("benchmarks.run_all")
    raise ValueError(
        "this installation has no benchmark runners (flowlab._benchmarks); "
        "install flowlab from its wheel or a source checkout."
    )


def _bench(args) -> int:
    _INTERRUPTS.immediate()  # each runner is a process of its own
    argv = [
        flag
        for flag in ("--quick", "--list", "--no-torch")
        if getattr(args, flag[2:].replace("-", "_"))
    ]
    if args.only:
        argv += ["--only", *args.only]
    for option in ("name", "out"):
        if getattr(args, option):
            argv += [f"--{option}", getattr(args, option)]
    return _benchmarks().main(argv, prog="flowlab bench")


_INTERRUPTS = Interrupts()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv`; `train` takes CONFIG and overrides before or after its flags."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    flags = [item for item in extra if item.startswith("-")]
    if extra and (args.command != "train" or flags):
        parser.parse_args(argv)  # argparse's own message and exit status 2
    if args.command == "train":
        args.args = [*args.args, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    with _INTERRUPTS.installed():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    if os.getcwd() not in sys.path:  # "package.module:attribute" names in configs
        sys.path.append(os.getcwd())
    command = None
    try:
        args = _parse(argv)
        command = args.command
        handlers = {
            "train": _train,
            "sample": _sample,
            "eval": _eval,
            "info": _info,
            "bench": _bench,
        }
        if command in ("train", "sample", "eval"):
            from ._allocator import retain_freed_memory

            retain_freed_memory()  # XLA's CPU temporaries are malloc'd on every call
        status = handlers[command](args)
        _INTERRUPTS.check()
        return status
    except KeyboardInterrupt as err:
        return _interrupted(command, str(err), getattr(err, "signum", signal.SIGINT))
    except Exception as err:
        if _INTERRUPTS.received is not None:  # e.g. an import failed mid-interrupt
            return _interrupted(command, "", _INTERRUPTS.received)
        if not isinstance(
            err, ValueError | TypeError | FileNotFoundError | FloatingPointError
        ):
            raise
        print(f"flowlab {command}: error: {err}", file=sys.stderr)
        return 2


def _interrupted(command: str | None, reason: str, signum: int) -> int:
    """Report an interrupt in one line; the exit status is 128 + the signal."""
    where = f"flowlab {command}" if command else "flowlab"
    print(f"{where}: {reason or 'interrupted'}", file=sys.stderr)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
