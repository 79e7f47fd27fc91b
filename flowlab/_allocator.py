"""Keep freed host memory in the process, so that CPU training steps do not page-fault.

XLA's CPU backend allocates each step's temporaries with `malloc` on every
execution. With glibc's defaults, blocks above the dynamic mmap threshold are
`mmap`ed and `munmap`ed on free, and a large free top of the heap is trimmed back to
the kernel, so the next step faults every page in again (the training benchmark
records the page faults per step, `benchmarks/latest.md`). Raising the mmap and
trim thresholds keeps that
memory in the heap for reuse, which is what a caching allocator (tcmalloc,
jemalloc, or PyTorch's) does.
"""

import ctypes
import ctypes.util
import platform

__all__ = ["retain_freed_memory"]

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_INT_MAX = 2**31 - 1  # mallopt takes an int
_HEAP_HALF = 32 * 2**20  # the largest mmap threshold some glibc versions accept

_applied = False


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory instead of returning it to the kernel.

    Sets `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` to their largest values and
    `M_ARENA_MAX` to 1 with `mallopt`, for the whole process and for the rest of
    its life: allocations are served from one heap and freed memory is reused, not
    unmapped. The process's resident memory then stays near its peak. It is what
    the environment `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` and
    `MALLOC_ARENA_MAX` do, set from inside Python.

    Call it before the first JAX computation: threads that have already allocated
    keep their own heaps (arenas), which glibc still unmaps when they empty. The
    `flowlab` command calls it first thing; `fit` calls it too, which helps less
    when the script has already run JAX code. It does nothing (and returns
    `False`) where the C library is not glibc.

    Returns:
        Whether the settings are in effect.
    """
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = any(mallopt(_M_MMAP_THRESHOLD, v) == 1 for v in (_INT_MAX, _HEAP_HALF))
    ok = (mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1) and ok
    # one arena: XLA's worker threads would otherwise allocate from per-thread
    # heaps, which glibc unmaps when they empty, whatever the thresholds
    ok = (mallopt(_M_ARENA_MAX, 1) == 1) and ok
    _applied = ok
    return ok
