"""A benchmark's measurement in a fresh interpreter, importing swarm_arena from another source
tree (`--compare DIR`): the A/B the benchmarks run back to back on a machine that is not quiet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def run_in_fresh_interpreter(tree: str | None, statement: str) -> Any:
    """Run `statement` (Python that can import the benchmark modules here; it prints
    `'RESULT' + json.dumps(value)`) with `tree`'s `operator/` first on PYTHONPATH (None: this
    tree), and return the value; raises RuntimeError with the tail of stderr when it fails."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(tree, "operator"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    call = f"import json, sys; sys.path.insert(0, {HERE!r}); {statement}"
    out = subprocess.run([sys.executable, "-c", call], env=env, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    if out.returncode or not lines:
        raise RuntimeError(f"the run on {tree or 'this tree'} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT") :])
