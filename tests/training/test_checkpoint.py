"""Checkpointer.restore: unreadable checkpoints are quarantined, reported or fatal."""

import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

from flowlab.training import (
    CheckpointCorruptError,
    CheckpointCorruptWarning,
    Checkpointer,
    init_state,
    restore_checkpoint,
)


def _state(step: int, **extra):
    params = {"w": jnp.zeros(3), **extra}
    state = init_state(jax.random.key(0), params, optax.sgd(0.1))
    return state._replace(step=jnp.asarray(step))


def _corrupt(directory, step: int) -> None:
    for path in (directory / str(step)).rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage" * 3)


@pytest.fixture
def saved(tmp_path):
    """Steps 1, 2, 3 under `tmp_path/checkpoints`, step 3 corrupted."""
    directory = tmp_path / "checkpoints"
    ckpt = Checkpointer(directory, keep=None)
    for step in (1, 2, 3):
        ckpt.save(_state(step), {"k": step})
        ckpt.wait()
    ckpt.close()
    _corrupt(directory, 3)
    return directory


def test_unreadable_newest_is_quarantined_with_a_one_line_warning(saved):
    ckpt = Checkpointer(saved, keep=None)
    with pytest.warns(CheckpointCorruptWarning) as record:
        restored = ckpt.restore(_state(0))
    (warning,) = record
    line = "checkpoint at step 3 is unreadable: moved to checkpoints/corrupt/3; "
    assert str(warning.message) == line + "using step 2"
    assert restored.step == 2
    assert restored.meta["k"] == 2
    assert restored.path == saved / "2"
    (skipped,) = restored.skipped
    assert skipped.step == 3
    assert skipped.path == saved / "corrupt" / "3"
    assert skipped.reason  # the read error, kept out of the line
    assert (saved / "corrupt" / "3").is_dir()
    assert not (saved / "3").exists()
    # orbax no longer lists it, so a new save of step 3 is not skipped.
    assert ckpt.all_steps() == [1, 2]
    assert ckpt.save(_state(3), {"k": 33})
    ckpt.wait()
    again = ckpt.restore(_state(0))
    assert again.step == 3
    assert again.meta["k"] == 33
    assert again.skipped == ()
    ckpt.close()


def test_a_second_quarantine_of_a_step_keeps_the_first(saved):
    ckpt = Checkpointer(saved, keep=None)
    ckpt.restore(_state(0), on_corrupt="record")
    ckpt.save(_state(3), {"k": 33})
    ckpt.close()
    _corrupt(saved, 3)
    ckpt = Checkpointer(saved, keep=None)
    restored = ckpt.restore(_state(0), on_corrupt="record")
    ckpt.close()
    assert restored.skipped[0].path == saved / "corrupt" / "3-2"
    assert sorted(p.name for p in (saved / "corrupt").iterdir()) == ["3", "3-2"]


def test_record_mode_reports_only_through_restored(saved):
    ckpt = Checkpointer(saved, keep=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = ckpt.restore(_state(0), on_corrupt="record")
    ckpt.close()
    assert restored.step == 2
    assert restored.fallback_lines() == [
        "checkpoint at step 3 is unreadable: moved to checkpoints/corrupt/3; "
        "using step 2"
    ]


def test_raise_mode_is_an_error_and_moves_nothing(saved):
    ckpt = Checkpointer(saved, keep=None)
    with pytest.raises(CheckpointCorruptError, match="step 3") as info:
        ckpt.restore(_state(0), on_corrupt="raise")
    ckpt.close()
    assert (info.value.step, info.value.older) == (3, 2)
    assert (saved / "3").is_dir()
    assert not (saved / "corrupt").exists()


def test_nothing_moves_when_no_checkpoint_reads_back(saved):
    # A state of another structure (e.g. a changed model) reads back from none of
    # them: that is not corruption, so every folder stays.
    ckpt = Checkpointer(saved, keep=None)
    with pytest.raises(FileNotFoundError, match="steps 3, 2, 1"):
        ckpt.restore(_state(0, b=jnp.zeros(2)))
    ckpt.close()
    assert sorted(p.name for p in saved.iterdir()) == ["1", "2", "3"]


def test_restore_checkpoint_warns_and_on_corrupt_is_checked(saved):
    with pytest.warns(CheckpointCorruptWarning, match="using step 2"):
        state = restore_checkpoint(saved, _state(0))
    assert int(state.step) == 2
    ckpt = Checkpointer(saved, keep=None)
    with pytest.raises(ValueError, match="on_corrupt"):
        ckpt.restore(_state(0), on_corrupt="ignore")
    ckpt.close()
