"""What the benchmark scripts share: one measured run in a fresh process (so that each peak RSS is its own),
and the process's peak memory."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (ru_maxrss, KiB on Linux), in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_child(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m MODULE ARGS`` from the repository root and return the last line of its output that is a
    JSON object (what the child printed as its result). Raises RuntimeError with the end of the child's output
    when it fails or prints no result."""
    proc = subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if proc.returncode or not lines:
        raise RuntimeError(f'{module} {" ".join(args)[:200]}: exit {proc.returncode}\n'
                           f'{proc.stdout[-2000:]}{proc.stderr[-2000:]}')
    return json.loads(lines[-1])
