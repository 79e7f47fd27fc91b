"""flowlab's speed benchmarks: training throughput and sampling cost, beside PyTorch.

Run `python benchmarks/run_all.py` (or `python -m benchmarks.run_all`); see
`benchmarks/README.md`.
"""
