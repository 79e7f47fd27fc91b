"""The README's code runs, and its Quickstart holds exactly two commands."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest


@pytest.fixture(autouse=True, scope="module")
def _float32():
    """Runs are float32, as users run them (the root conftest enables x64)."""
    with jax.enable_x64(False):
        yield


README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quickstart_has_exactly_two_commands():
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    lines = [x for x in blocks[0].splitlines() if x.strip()]
    assert len(lines) == 2
    assert "flowlab train" in lines[0]
    assert "pytest" in lines[1]


def test_three_line_path_runs():
    code = _blocks("python")[0]
    scope = {
        "key": jax.random.key(0),
        "x0": jnp.zeros(3),
        "x1": jnp.ones(3),
        "t": 0.5,
    }
    exec(code, scope)
    # alpha = t^2 = 0.25, sigma = 0.75; d_alpha = 2t = 1, d_sigma = -1.
    assert jnp.allclose(scope["ps"].xt, 0.25)
    assert jnp.allclose(scope["ps"].ut, 1.0)


def test_python_example_runs(capsys):
    exec(_blocks("python")[1], {})
    assert "(2000, 2)" in capsys.readouterr().out
