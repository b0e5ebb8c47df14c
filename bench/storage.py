"""Storage cost: bytes per stored reading, indexes included, on whichever path the server has.

    python -m bench.storage                 # 1,000,000 readings on a throwaway local cluster
    python -m bench.storage --rows 20000    # smoke size (CI)
    python -m bench.storage --database-url postgresql://…/empty_db
    python -m bench.plot storage            # docs/bench-storage.png from bench/results/storage-*

At the full size the figures are also recorded in ``bench/results/storage-<path>-<values>.json``
(``--output`` elsewhere); smaller runs record nothing unless ``--output`` is given.

Readings are synthetic minute data of the example registry's flue-gas devices (5 pollutants),
written through the same path as ingest (COPY + merge). ``--values noise`` draws every minute
independently (±5 %, two decimals: the worst case for compression); ``--values walk`` lets each
series drift as CEMS minute means do (a random walk of 0.5 % steps at the analyser's reported
resolution of two decimals), which is what TimescaleDB's compression sees in practice.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from domain.readings import Period
from registry.loader import load_registry
from store.readings import StoredReading, write_readings
from store.registry import list_devices
from store.schema import StorageMode, migrate, storage_mode
from sunlight.cli import default_registry_file

RESULTS = Path(__file__).resolve().parent / "results"
FULL_ROWS = 1_000_000

POLLUTANTS = (
    ("so2", "mg/m3", 25.0),
    ("nox", "mg/m3", 40.0),
    ("pm", "mg/m3", 6.0),
    ("o2", "%", 8.0),
    ("flow", "m3/s", 120.0),
)


def run(url: str, rows: int, batch: int = 20_000, values: str = "noise") -> dict[str, float]:
    migrate(url)
    load_registry(url, default_registry_file())
    rng = random.Random(7)
    with psycopg.connect(url) as conn:
        mode = storage_mode(conn)
        assert mode is not None
        devices = [d for d in list_devices(conn) if d["medium"] == "flue_gas"]
        conn.commit()  # each batch below is then a transaction of its own, as in ingest
        minutes = rows // (len(devices) * len(POLLUTANTS)) + 1
        start = datetime(2026, 1, 1, tzinfo=UTC)
        pending: list[StoredReading] = []
        level_now = {(d["device_key"], p): level for d in devices for p, _u, level in POLLUTANTS}
        written, began = 0, time.perf_counter()
        for m in range(minutes):
            t = start + timedelta(minutes=m)
            for d in devices:
                for pol, unit, level in POLLUTANTS:
                    if written + len(pending) >= rows:
                        break
                    if values == "walk":
                        key = (d["device_key"], pol)
                        level_now[key] = max(0.0, level_now[key] * (1 + rng.gauss(0, 0.005)))
                        value = round(level_now[key], 2)
                    else:
                        value = round(level * (1 + rng.gauss(0, 0.05)), 2)
                    flag = "N" if rng.random() > 0.02 else "C"
                    pending.append(
                        StoredReading(
                            t, d["device_key"], d["site_key"], pol, Period.MINUTE, value, unit, flag
                        )
                    )
            if len(pending) >= batch or m == minutes - 1:
                with conn.transaction():
                    write_readings(conn, pending, mode)
                written += len(pending)
                pending = []
        seconds = time.perf_counter() - began
        conn.commit()
        conn.autocommit = True
        conn.execute(
            "vacuum analyze reading_values"
            if mode is StorageMode.TIMESCALEDB
            else "vacuum analyze reading_rows"
        )
        size_sql = (
            "select hypertable_size('reading_values')"
            if mode is StorageMode.TIMESCALEDB
            else "select pg_total_relation_size('reading_rows')"
            " + pg_total_relation_size('reading_codes')"
        )
        total = conn.execute(size_sql).fetchone()[0]  # type: ignore[index]
        table = "reading_values" if mode is StorageMode.TIMESCALEDB else "reading_rows"
        heap = conn.execute("select pg_relation_size(%s)", (table,)).fetchone()[0]  # type: ignore[index]
        rollup = (
            conn.execute("select pg_total_relation_size('readings_hourly')").fetchone()[0]  # type: ignore[index]
            if mode is StorageMode.POSTGRES
            else 0
        )
        count = conn.execute("select count(*) from readings").fetchone()[0]  # type: ignore[index]
        compressed = float("nan")
        if mode is StorageMode.TIMESCALEDB:
            # What the compression policy does to chunks past SUNLIGHT_COMPRESS_AFTER_DAYS.
            conn.execute(
                "select compress_chunk(c, if_not_compressed => true)"
                " from show_chunks('reading_values') c"
            )
            compressed = conn.execute(size_sql).fetchone()[0] / count  # type: ignore[index]
    return {
        "path": 0.0 if mode is StorageMode.POSTGRES else 1.0,
        "readings": count,
        "bytes_per_reading": total / count,
        "heap_bytes_per_reading": heap / count if mode is StorageMode.POSTGRES else float("nan"),
        "compressed_bytes_per_reading": compressed,
        "rollup_bytes_per_reading": rollup / count,
        "write_readings_per_s": count / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--values", choices=("noise", "walk"), default="noise")
    parser.add_argument(
        "--database-url", default=None, help="an empty database (default: a throwaway cluster)"
    )
    parser.add_argument("--output", type=Path, default=None, help="where the JSON results go")
    args = parser.parse_args()
    cluster = None
    url = args.database_url
    if url is None:
        from tests.servers import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("create database bench")
        url = cluster.url("bench")
    try:
        figures = run(url, args.rows, values=args.values)
    finally:
        if cluster is not None:
            cluster.destroy()
    path = "timescaledb" if figures.pop("path") else "postgres"
    print(f"storage path: {path}")
    print(f"values: {args.values}")
    for name, value in figures.items():
        print(f"{name}: {value:,.1f}")
    output = args.output
    if output is None and args.rows == FULL_ROWS:
        output = RESULTS / f"storage-{path}-{args.values}.json"
    if output is not None:
        record = {
            "path": path,
            "values": args.values,
            **figures,
            "command": "python -m bench.storage"
            + (" --values walk" if args.values == "walk" else ""),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg()[0],
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(record, indent=2) + "\n")
        print(f"results: {output}")


if __name__ == "__main__":
    main()
