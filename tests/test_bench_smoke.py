"""Benchmarks run in CI only in smoke mode: they must still run and print their figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench_module(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository root, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_storage_benchmark_smoke(tmp_path: Path) -> None:
    """`python -m bench.storage` at a tiny size prints bytes per reading for the path in use and
    records them; `python -m bench.plot storage` draws them."""
    out = bench_module(
        [
            *("bench.storage", "--rows", "5000"),
            *("--output", str(tmp_path / "storage-smoke.json")),
        ],
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    figures = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert figures["storage path"] in ("postgres", "timescaledb")
    assert figures["readings"] == "5,000.0"
    assert 10 < float(figures["bytes_per_reading"].replace(",", "")) < 1000
    recorded = json.loads((tmp_path / "storage-smoke.json").read_text())
    assert recorded["readings"] == 5000
    assert recorded["path"] == figures["storage path"]
    plot = tmp_path / "storage.png"
    drawn = bench_module(
        [
            *("bench.plot", "storage"),
            *("--results", str(tmp_path), "--output", str(plot)),
        ],
        timeout=120,
    )
    assert drawn.returncode == 0, drawn.stderr
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_api_benchmark_smoke(tmp_path: Path) -> None:
    """`python -m bench.api --smoke` loads every public endpoint and its do-nothing twin on a
    tiny registry and prints sane throughput, latency and ratio figures, without errors;
    `python -m bench.plot api` draws its results."""
    out = bench_module(
        ["bench.api", "--smoke", "--output", str(tmp_path / "api-1.json")], timeout=300
    )
    assert out.returncode == 0, out.stderr
    figures = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert figures["load_generator"] == "python"
    assert int(figures["readings_hourly_rows"]) > 0
    for name in (
        "baseline_stations",
        "stations",
        "enterprises",
        "enterprises_all",
        "series_year",
        "series_year_uncached",
        "raw_day",
        "map",
        "stations_gzip",
        "map_gzip",
    ):
        assert float(figures[f"{name}_rps"]) > 0, name
        assert figures[f"{name}_errors"] == "0", name
        assert 0 < float(figures[f"{name}_p50_ms"]) <= float(figures[f"{name}_p99_ms"]), name
    assert float(figures["stations_cold_ms"]) > 0
    assert 0 < float(figures["ratio_stations_to_baseline"]) < 10
    assert figures["target_ratio"] in ("met", "not met")
    plot = bench_module(
        [
            *("bench.plot", "api"),
            *("--results", str(tmp_path), "--output", str(tmp_path / "api.png")),
        ],
        timeout=120,
    )
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "api.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rules_benchmark_smoke() -> None:
    """`python -m bench.rules --smoke` judges an hour of 40 outlets through the engine, checks
    every verdict against a recomputation from the minutes, and prints engine and floor times."""
    out = bench_module(["bench.rules", "--smoke"], timeout=300)
    assert out.returncode == 0, out.stderr
    figures = {
        name: float(value.replace(",", ""))
        for name, value in (line.split(": ", 1) for line in out.stdout.splitlines())
    }
    assert figures["outlets"] == 40
    assert figures["rules"] == figures["checked"] == 160  # 4 pollutants each, all verified
    assert figures["readings_in_hour"] == 40 * 5 * 60  # 4 pollutants and O2, every minute
    verdicts = ("exceedances", "invalid", "stopped", "compliant")
    assert sum(figures[v] for v in verdicts) == 160
    assert figures["episodes_opened"] == figures["exceedances"]
    assert figures["engine_s"] > 0
    assert figures["floor_s"] > 0
    assert figures["ratio"] == pytest.approx(figures["engine_s"] / figures["floor_s"], rel=0.05)


def test_ingest_benchmark_smoke(tmp_path: Path) -> None:
    """`python -m bench.ingest --smoke` runs every phase (do-nothing subscriber, storing
    floor, one ingestor, paced with latency probes, two ingestors on a shared subscription)
    through a real Mosquitto and PostgreSQL and stores every published reading exactly once."""
    output = tmp_path / "ingest.json"
    out = bench_module(["bench.ingest", "--smoke", "--output", str(output)], timeout=300)
    assert out.returncode == 0, out.stderr
    figures = json.loads(output.read_text())
    assert figures["ceiling"]["received"] == figures["ceiling"]["messages"]
    assert figures["floor"]["stored"] == figures["floor"]["messages"]
    assert figures["floor_ratio_to_ceiling"] > 0
    for phase in ("ingest", "shared"):
        result = figures[phase]
        assert result["readings_stored"] == result["readings_expected"] > 0, phase
        assert (result["lost"], result["duplicates"], result["dead_letters"]) == (0, 0, 0)
        assert result["readings_per_s"] > 0
    assert figures["paced"]["probes"] > 0
    assert 0 < figures["paced"]["latency_p50_ms"] <= figures["paced"]["latency_p99_ms"]
    assert "ratio ingest / ceiling" in out.stdout
