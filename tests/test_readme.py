"""The README's code runs, and its Quickstart holds exactly two commands."""

import re
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import pytest

from flowlab import data, metrics, sampling

# Runs are float32, as users run them (the root conftest enables x64).
pytestmark = pytest.mark.usefixtures("float32_runs")


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
    scope = {}  # the snippet defines everything it uses
    exec(code, scope)
    # alpha = t^2 = 0.25, sigma = 0.75; d_alpha = 2t = 1, d_sigma = -1.
    assert jnp.allclose(scope["ps"].xt, 0.25)
    assert jnp.allclose(scope["ps"].ut, 1.0)


@pytest.mark.heavy
def test_python_example_runs(capsys):
    """The example trains, samples and scores; what it prints is what it computed.

    The printed NFE is dopri5's count for the steps it took (6 evaluations a step,
    first same as last, plus 1 at the start); the log-likelihood has one finite
    value per scored sample. The samples are finite and near held-out moons: W2
    on 500 points each below 0.6 (measured at these keys: 0.46 after the 5,000
    steps, 0.52 after 500, 0.85 after 50, 1.95 for the noise they start from).
    """
    scope = {}
    exec(_blocks("python")[1], scope)
    printed = capsys.readouterr().out
    assert "(2000, 2)" in printed
    out = scope["out"]
    per_step, once = sampling.evaluations_per_step(diffrax.Dopri5())
    assert (per_step, once) == (6, 1)
    nfe = per_step * int(out.num_steps) + once
    assert printed.split() == ["(2000,", "2)", str(nfe)]
    assert int(out.num_steps) > 0
    log_p = scope["log_p"]
    assert log_p.shape == (100,)
    assert bool(jnp.all(jnp.isfinite(log_p)))
    assert bool(jnp.all(jnp.isfinite(out.x)))
    held_out = data.Moons().sample(jax.random.key(3), 500)
    assert metrics.wasserstein2(out.x[:500], held_out) < 0.6
