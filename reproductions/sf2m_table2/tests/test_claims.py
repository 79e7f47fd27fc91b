"""Every quoted table of the reproduction is exactly what `table2 --table` writes.

The README beside the records, docs/reproduction.md and the repository README
quote the tables between markers; rebuilding them from the committed records must
change nothing, so no page can state a number the records do not give.
"""

import json

import pytest

from reproductions.sf2m_table2 import report, table2


@pytest.fixture(scope="module")
def tables():
    return report.tables()


@pytest.mark.parametrize("page", report.PAGES, ids=lambda p: p.name)
def test_quoted_tables_are_the_records(page, tables):
    quoted = report.blocks(page.read_text())
    assert quoted, f"{page} quotes no table of the reproduction"
    for name, block in quoted.items():
        if name in tables:
            assert block == tables[name].strip(), (
                f"{page}: block {name!r} differs from the records; run "
                "`python -m reproductions.sf2m_table2.table2 --table`"
            )


def test_every_page_quotes_the_main_result(tables):
    readme, docs, top = (set(report.blocks(p.read_text())) for p in report.PAGES)
    assert {"table2", "torchcfm", "checkpoints", "npe"} <= readme
    assert "table2" in docs
    assert "table2-summary" in top


def test_committed_records_are_complete_and_exact(tables):
    results = report.load_results(table2.DEFAULT_OUT)
    assert len(results) == 75
    assert tables["table2"].splitlines()[0] == "**Complete: 75 of 75 results.**"
    # The published I-CFM N→moons row of Table 2, and the records' five seeds.
    icfm = [r for r in results if (r["task"], r["method"]) == ("normal_moons", "icfm")]
    assert sorted(r["seed"] for r in icfm) == [0, 1, 2, 3, 4]
    assert all(r["sigma"] == 0.1 for r in icfm)
    row = next(
        line
        for line in tables["table2-summary"].splitlines()
        if line.startswith("| I-CFM | N→moons |")
    )
    assert "| 0.289 ± 0.058 | 0.178 ± 0.014 | miss |" in row
    # Every record's W2 came from an exact solver.
    assert {r["w2_backend"] for r in results} <= {"pot", table2.W2_BACKEND}


def test_replace_blocks_round_trips():
    text = "a\n<!-- x:start -->\nold\n<!-- x:end -->\nb <!-- y:start -->\n"
    new = report.replace_blocks(text, {"x": "new | table", "y": "never"})
    assert new == (
        "a\n<!-- x:start -->\nnew | table\n<!-- x:end -->\nb <!-- y:start -->\n"
    )
    assert report.blocks(new) == {"x": "new | table"}


def test_write_tables_leaves_unmarked_pages_alone(tmp_path):
    marked, plain = tmp_path / "marked.md", tmp_path / "plain.md"
    marked.write_text("# t\n<!-- npe:start -->\n<!-- npe:end -->\n")
    plain.write_text("# nothing to fill\n")
    written = report.write_tables(pages=(marked, plain))
    assert report.blocks(marked.read_text()) == {"npe": written["npe"].strip()}
    assert plain.read_text() == "# nothing to fill\n"
    checkpoints = [
        json.loads(f.read_text())
        for f in sorted((report.RESULTS / "checkpoints").glob("*.json"))
    ]
    assert len(checkpoints) == 10  # 5 seeds, with replacement and shuffled
