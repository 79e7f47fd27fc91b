#!/usr/bin/env bash
# Install the PyTorch peers the benchmarks compare against, into the active env.
#
# Order matters: the exact torch pin comes first so pip takes the CPU wheel; the
# flow-matching libraries then go in with --no-deps so none of them can pull a
# multi-GB CUDA build of torch. POT (optimal transport) is needed by torchcfm.
#
#   bash benchmarks/install_peers.sh
set -euo pipefail

PIP="${PIP:-python -m pip}"

$PIP install "torch==2.13.0"
$PIP install --no-deps flow-matching torchcfm torchdiffeq torchdyn
$PIP install "pot>=0.9"

python - <<'PY'
import importlib

for name in ("torch", "torchdiffeq", "torchcfm", "flow_matching", "torchdyn", "ot"):
    try:
        module = importlib.import_module(name)
        print(f"ok    {name} {getattr(module, '__version__', '')}")
    except Exception as err:  # a peer that does not import is skipped by the benches
        print(f"skip  {name}: {type(err).__name__}: {err}")
PY
