"""Multi-device tests: collected only in a process that has 8 devices.

The main test session has one CPU device; `tests/test_multidevice.py` runs this
folder in a subprocess with `XLA_FLAGS=--xla_force_host_platform_device_count=8`.
Training here runs in float32, as users run it (the root conftest enables x64).
"""

import jax
import pytest

if jax.device_count() < 8:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True, scope="module")
def _float32():
    with jax.enable_x64(False):
        yield
