"""Fake [SF]²M Table 2 result records, for the table builders' tests."""

from reproductions.sf2m_table2 import table2


def fake_result(task: str, method: str, seed: int, w2: float, npe: float = 0.05):
    """A full-protocol result of `table2.run_one`'s shape, on today's data."""
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "w2": w2,
        "npe": npe,
        "steps": table2.PROTOCOL["steps"],
        "n_eval": table2.PROTOCOL["n_eval"],
        "train_seconds": 10.0,
        "coupling_share": 0.5,
        "eval_seconds": 30.0,
        "skipped_steps": 0,
        "w2_backend": "pot",
        "machine": {"cpu": "test cpu"},
        "git": {"commit": "abcdef0123456789"},
        "protocol": table2.PROTOCOL,
    }
