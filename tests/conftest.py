"""Shared test configuration.

- float64 is enabled for the whole run, so identity tests can demand ~1e-10. The
  float32 paths are still exercised: tests that demand the float32 tolerance (1e-5)
  pass float32 arrays and check that the result stays float32 (library code never
  hard-codes a dtype, so float32 inputs give float32 computations even with x64 on).
- `jax_numpy_rank_promotion="raise"`: library code must broadcast explicitly.
- A persistent XLA compilation cache (below) for the workers and subprocesses;
  point `JAX_COMPILATION_CACHE_DIR` elsewhere, or delete the folder, to start cold.
- Tests marked `heavy` (a subprocess suite, a real training run: tens of seconds)
  are scheduled first (`pytest_collection_modifyitems`).
- Hypothesis profiles: `default` (modest, derandomized so that a run is reproducible,
  no deadline because the first call of a JAX function compiles) and `thorough`
  (many random examples); choose with `HYPOTHESIS_PROFILE=thorough pytest tests`.

Test directories have no `__init__.py`: every test module has a unique basename, and
`helpers.py` is importable as `import helpers` because pytest puts this directory on
`sys.path` when it loads this conftest.
"""

import os
import tempfile

# One XLA compilation cache shared by the xdist workers and every subprocess they
# start (CLI runs, resumed runs, the 8-device suite), which inherit the environment:
# a program the suite has compiled once is read back instead of compiled again.
# It only skips XLA's compile step (tracing still runs), so it changes no result.
# Every program is written, however quick its compile (threshold 0 s): most of the
# suite's compiles are small (op-by-op eager code, hypothesis examples, a CLI run's
# array ops) and, summed, they are much of its time; a second worker, a subprocess
# or the next run reads them back (measured on a warm cache: a quarter less CPU
# time than with a 0.2 s threshold). JAX writes no program that has a host callback
# (`equinox.error_if`, `jax.debug.callback`): those are compiled in every process.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"flowlab-tests-xla-cache-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "default",
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config, items):
    """Run the `heavy` tests first, so no worker is left alone with one at the end.

    The order is the same in every xdist worker (a stable sort of the collection),
    as xdist requires; tests still run in collection order within each class.
    """
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture
def key():
    """A fixed PRNG key: every statistical check in the suite is deterministic."""
    return jax.random.key(0)


@pytest.fixture(scope="module")
def float32_runs():
    """Float32 for a whole module (`pytestmark = usefixtures("float32_runs")`).

    The modules that train runs use it: runs are float32, as users run them, while
    this conftest enables x64 for the identity tests.
    """
    with jax.enable_x64(False):
        yield
