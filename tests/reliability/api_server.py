"""A real API process over a database filled through the public write paths: the example
registry, some hours of readings, the compliance engine's judgements and episodes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from alerts.service import Engine, floor_hour
from registry.loader import load_registry
from sunlight.brokers import free_port, wait_until
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY
from tests.processes import sunlight_process
from tests.readings import write_minutes
from tests.servers import PostgresCluster

_names = itertools.count()


@contextmanager
def filled_database(cluster: PostgresCluster) -> Iterator[str]:
    """A migrated database of its own with the example city and three hours of data."""
    name = f"rel{next(_names)}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"create database {name} template sunlight_template")
    url = cluster.url(name)
    try:
        load_registry(url, EXAMPLE_REGISTRY)
        start = floor_hour(datetime.now(UTC)) - timedelta(hours=3)
        write_minutes(
            url,
            "cems-lc-tpn-u1",
            start,
            {"so2": (80.0, "mg/m3"), "nox": (40.0, "mg/m3"), "o2": (6.0, "%")},
            minutes=180,
        )
        with psycopg.connect(url) as conn:
            stations = [
                r[0]
                for r in conn.execute(
                    "select d.id from devices d join stations s on s.id = d.site_id order by 1"
                ).fetchall()
            ]
        for device in stations[:3]:
            write_minutes(url, device, start, {"pm25": (35.0, "ug/m3")}, minutes=180)
        Engine(Settings(database_url=url, alerts_backfill_hours=4)).run_all()
        yield url
    finally:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"drop database {name} with (force)")


@contextmanager
def api_process(database_url: str, log: Path, **env: str) -> Iterator[str]:
    """``sunlight api`` on a free port; yields its base URL once it answers."""
    port = free_port()
    full_env = {
        "SUNLIGHT_DATABASE_URL": database_url,
        "SUNLIGHT_API_PORT": str(port),
        "SUNLIGHT_API_RATE_LIMIT_PER_MINUTE": "1000000",
        **env,
    }
    base = f"http://127.0.0.1:{port}"
    with sunlight_process(["api"], full_env, log) as proc:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the API to answer")
        yield base
