"""Benchmarks run in CI only in smoke mode: they must still run and print their figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_storage_benchmark_smoke() -> None:
    """`python -m bench.storage` at a tiny size prints bytes per reading for the path in use."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.storage", "--rows", "5000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    figures = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert figures["storage path"] in ("postgres", "timescaledb")
    assert figures["readings"] == "5,000.0"
    assert 10 < float(figures["bytes_per_reading"].replace(",", "")) < 1000
