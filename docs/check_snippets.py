"""Run every ```python block of the docs, page by page.

The blocks of one page run in order in one fresh interpreter (later blocks may use
names defined by earlier ones), from a temporary working directory. There is no way
to skip a block: every Python snippet in the docs must run. Use ```text or ```bash
for anything that is not runnable Python.

    python docs/check_snippets.py [-v] [PAGE.md ...]
"""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def main() -> int:
    """Run the pages named on the command line (default: all); 1 if any fails."""
    args = sys.argv[1:]
    verbose = "-v" in args
    pages = [Path(p) for p in args if p != "-v"] or sorted(DOCS.rglob("*.md"))
    failed = 0
    out = sys.stdout
    for page in pages:
        blocks = FENCE.findall(page.read_text())
        if not blocks:
            continue
        script = "\n\n".join(blocks)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, "-c", script],
                cwd=tmp,
                capture_output=True,
                text=True,
            )
        status = "ok  " if proc.returncode == 0 else "FAIL"
        elapsed = time.perf_counter() - start
        out.write(f"{status} {page.name}: {len(blocks)} blocks, {elapsed:.1f} s\n")
        if verbose:
            out.write(proc.stdout)
        if proc.returncode:
            failed += 1
            out.write(proc.stdout[-2000:] + "\n" + proc.stderr[-4000:] + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
