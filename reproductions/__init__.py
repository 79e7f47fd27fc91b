"""Reproductions of published results with flowlab, one folder each.

Each folder holds the scripts, the per-result JSON records, the tests and a README
with the table, the protocol and the commands. Run them from the repository root
as modules, e.g. `python -m reproductions.sf2m_table2.table2 --table`.
"""
