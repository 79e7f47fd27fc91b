"""`retain_freed_memory`: freed blocks are reused, not faulted in from the kernel."""

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from flowlab.training import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
    assert retain_freed_memory()  # idempotent
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def cycle():  # 64 MB in 16 blocks of ~4 MB, then freed: XLA's pattern per step
    blocks = [np.ones(2**19 + 1000 * i) for i in range(16)]
    del blocks
cycle()
cycle()
before = faults()
for _ in range(5):
    cycle()
print((faults() - before) / 5)
"""


def _faults_per_cycle(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="mallopt tuning is glibc-specific",
)
def test_freed_memory_is_reused_without_page_faults():
    pages = 64 * 2**20 / 4096
    default = _faults_per_cycle("default")
    retained = _faults_per_cycle("retain")
    assert default > 0.2 * pages  # unmapped or trimmed on free, faulted in anew
    assert retained < 0.01 * pages
