"""The `flowlab` command line: `train`, `sample`, `eval`, `info`, `bench`.

A thin shell over `flowlab.run`: it parses arguments, prints, and turns errors into a
one-line reason and a non-zero exit status.
"""

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]

_EPILOG_TRAIN = """\
examples:
  flowlab train                         # the embedded default: N(0,I) -> moons
  flowlab train moons --out runs/moons
  flowlab train 8gaussians_to_moons model.width=128 optim.lr=3e-4 --steps 20000
  flowlab train configs/checkerboard.toml batch_size=512 log_every=100
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlab", description="Flow matching in JAX: train, sample, evaluate."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a velocity field. With no CONFIG, run the embedded default.",
        epilog=_EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG] [key=value ...]",
        help="a named config (configs/NAME.toml) or a TOML path, then dotted overrides",
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
        "--no-progress", action="store_true", help="hide the progress bar"
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

    evaluate = sub.add_parser(
        "eval",
        help="recompute a run's metrics",
        description="Recompute W2, MMD and NFE of a run's newest checkpoint.",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR")

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
    config = None
    overrides = []
    for i, item in enumerate(items):
        if "=" in item:
            overrides.append(item)
        elif i == 0:
            config = item
        else:
            raise ValueError(
                f"unexpected argument {item!r}: give CONFIG first, then "
                "key=value overrides."
            )
    return config, overrides


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


def _train(args) -> int:
    from pathlib import Path

    from .config import load_config
    from .run import resume_run, train_run

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
        _start_distributed(load_config(run_config, overrides))
        summary = resume_run(args.resume, overrides, progress=not args.no_progress)
        out = args.resume
    else:
        config = load_config(config_name, overrides)
        _start_distributed(config)
        out = args.out or _fresh_run_dir(config.name, config.seed)
        summary = train_run(config, out, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    print(f"run written to {out}")
    return 0


def _sample(args) -> int:
    import numpy as np

    from .run import sample_run

    if not (Path(args.run_dir) / "config.toml").is_file():
        raise ValueError(f"{args.run_dir!r} is not a run directory (no config.toml).")
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.npy"
    if out.suffix != ".npy":
        raise ValueError(f"--out must be a .npy file, got {str(out)!r}.")
    if not out.parent.is_dir():
        raise ValueError(f"--out directory {str(out.parent)!r} does not exist.")
    x = sample_run(args.run_dir, args.n, args.seed, args.solver, args.steps)
    tmp = out.with_name(f".{out.stem}.tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, out)
    print(f"{x.shape[0]} samples written to {out}")
    return 0


def _eval(args) -> int:
    from .run import evaluate_run, write_atomic

    result = evaluate_run(args.run_dir)
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    handlers = {
        "train": _train,
        "sample": _sample,
        "eval": _eval,
        "info": _info,
        "bench": _bench,
    }
    if args.command in ("train", "sample", "eval"):
        from .training.allocator import retain_freed_memory

        retain_freed_memory()  # XLA's CPU temporaries are malloc'd on every call
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt as err:
        reason = str(err) or "interrupted"
        print(f"flowlab {args.command}: {reason}", file=sys.stderr)
        return 128 + getattr(err, "signum", 2)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as err:
        print(f"flowlab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
