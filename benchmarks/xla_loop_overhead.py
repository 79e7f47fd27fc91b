"""Per-iteration cost of small operations inside a `lax.fori_loop` on the CPU.

The exact OT solver runs hundreds of bidding rounds and thousands of shortest-path
steps, each a few small operations inside `lax.while_loop`s. On a CPU, XLA may
split an operation over its intra-op thread pool, and inside a loop the hand-off
to another core can cost more than the work. Run this once as is and once confined
to one core (`taskset -c 0 python benchmarks/xla_loop_overhead.py`) to see the
difference on a machine:

    python benchmarks/xla_loop_overhead.py [--iters N]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

N = 512


def bodies(a):
    """Loop bodies, each one small operation on a length-N integer vector."""
    return {
        "elementwise": lambda i, x: x * 3 + 1,
        "reduce 512": lambda i, x: x + jnp.max(x),
        "gather 16 rows": lambda i, x: x + a[x[:16] & (N - 1)].max(0),
        "gather 64 rows": lambda i, x: x + a[x[:64] & (N - 1)].max(0),
        "gather 256 rows": lambda i, x: x + a[x[:256] & (N - 1)].max(0),
        "nonzero (size 16)": lambda i, x: (
            x + jnp.nonzero(x > 0, size=16, fill_value=0)[0].sum()
        ),
        "scatter-max 512": lambda i, x: jnp.zeros(N, x.dtype).at[x & (N - 1)].max(x),
        "column max 512²": lambda i, x: x + (a - x[None, :]).max(0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000)
    args = parser.parse_args()
    a = jnp.asarray(np.random.default_rng(0).integers(-(2**20), 0, (N, N)), jnp.int32)
    x0 = jnp.zeros(N, jnp.int32)
    print(f"cores usable: {len(os.sched_getaffinity(0))} of {os.cpu_count()}")
    for name, body in bodies(a).items():
        run = jax.jit(lambda x, body=body: lax.fori_loop(0, args.iters, body, x))
        jax.block_until_ready(run(x0))
        times = []
        for _ in range(7):
            start = time.perf_counter()
            jax.block_until_ready(run(x0))
            times.append(time.perf_counter() - start)
        print(f"{name:>20}: {1e6 * float(np.median(times)) / args.iters:7.2f} µs/iter")


if __name__ == "__main__":
    main()
