"""`python -m bench.soak --smoke`: the soak still runs end to end and prints its table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(240)
def test_soak_smoke() -> None:
    """A short soak: every API request answered, ingest caught up with nothing lost, and a
    memory row for every process."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in out.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    }
    for path in ("/api/v1/stations", "/api/v1/enterprises", "/map"):
        assert int(rows[path][0]) > 0 and rows[path][1] == "0", rows[path]
    published, stored_, lost = (int(v.replace(",", "")) for v in rows["1 ingestor"][:3])
    assert published > 0 and stored_ == published and lost == 0
    for process in (
        "ingest",
        "api",
        "alerts",
        "mosquitto",
        "postgres, backends' own",
        "postgres, shared memory touched",
    ):
        assert float(rows[process][0]) > 0, process
