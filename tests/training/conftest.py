"""Training runs in float32, as users run it (the root conftest enables x64)."""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _float32():
    with jax.enable_x64(False):
        yield
