"""Upgrading a database left by an earlier release (schema version 5) to the latest schema keeps
every reading, judgement, episode, event, notification, dead letter and token, and the API
serves them. Generic: it keeps passing as migrations are added."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.loader import load_registry
from store.auth import create_token
from store.schema import MIGRATIONS, StorageMode, migrate, storage_mode
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY
from tests.reliability.api_server import filled_database
from tests.servers import PostgresCluster, _pg_bindir

FROM_VERSION = 5
SITE, DEVICE = "lc-tpn-u1", "cems-lc-tpn-u1"
# What the old release stored, and how to read it back in a stable order.
SNAPSHOTS = {
    "readings": "select time, device_key, site_key, pollutant, period::text, value, unit, flag"
    " from readings order by device_key, pollutant, period, time",
    "judgements": "select site_id, pollutant, period, start, verdict, mean, valid_count"
    " from judgements order by 1, 2, 3, 4",
    "episodes": "select id, kind, site_id, pollutant, status, first_start, last_end, hours"
    " from episodes order by id",
    "episode_events": "select id, episode_id, kind, actor from episode_events order by id",
    "notifications": "select id, episode_id, regulator_id, kind, channel, status"
    " from notifications order by id",
    "dead_letters": "select id, topic, reason, payload from dead_letters order by id",
    "regulator_tokens": "select id, regulator_id, secret_sha256 from regulator_tokens order by id",
}


@pytest.fixture
def old_database(pg_cluster: PostgresCluster) -> Iterator[str]:
    name = "upgrade_from_v5"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name}")
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def fill_as_version_5(url: str, start: datetime) -> str:
    """What a version-5 deployment holds: the registry (loaded by its loader), three hours of
    minute readings, judgements, an episode with its audit log and notification, a dead letter
    and a regulator token; the rows go in with the plain SQL of that schema."""
    load_registry(url, EXAMPLE_REGISTRY)
    with psycopg.connect(url) as conn:
        keys = conn.execute(
            "select key, (select key from sites where id = %s) from devices where id = %s",
            (SITE, DEVICE),
        ).fetchone()
        assert keys is not None
        device_key, site_key = keys
        rows = [
            (start + timedelta(minutes=m), device_key, site_key, pol, "minute", value, unit, flag)
            for m in range(180)
            for pol, value, unit, flag in (
                ("so2", 30.0 + (m % 7) * 2.5, "mg/m3", "C" if m % 60 >= 55 else "N"),
                ("o2", 6.0 + (m % 3) * 0.5, "%", "N"),
            )
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "insert into readings (time, device_key, site_key, pollutant, period, value,"
                " unit, flag) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        for h in range(3):
            conn.execute(
                "insert into judgements (site_id, pollutant, period, start, limit_value, unit,"
                " standard, o2_reference, mean, measured_mean, o2_mean, valid_count, total_count,"
                " verdict) values (%s, 'so2', 'hour', %s, 35, 'mg/m3', 'GB 13223-2011', 6,"
                " 38.5, 37.4, 6.5, 55, 60, 'exceedance')",
                (SITE, start + timedelta(hours=h)),
            )
        (episode,) = conn.execute(
            "insert into episodes (kind, site_id, pollutant, period, regulator_id, status,"
            " severity, first_start, last_end, hours, max_mean, limit_value)"
            " values ('exceedance', %s, 'so2', 'hour', 'lc-eeb-dongshan', 'notified', 'minor',"
            " %s, %s, 3, 38.5, 35) returning id",
            (SITE, start, start + timedelta(hours=3)),
        ).fetchone()  # type: ignore[misc]
        for kind in ("opened", "notified"):
            conn.execute(
                "insert into episode_events (episode_id, kind, actor, regulator_id)"
                " values (%s, %s, 'sunlight', 'lc-eeb-dongshan')",
                (episode, kind),
            )
        conn.execute(
            "insert into notifications (episode_id, regulator_id, kind, channel, status,"
            " attempts, sent_at) values (%s, 'lc-eeb-dongshan', 'opened', 'webhook', 'sent',"
            " 1, now())",
            (episode,),
        )
        conn.execute(
            "insert into dead_letters (topic, device_id, reason, detail, payload)"
            " values ('sunlight/v1/devices/cems-lc-tpn-u1/readings', %s, 'bad_json',"
            " 'not JSON', %s)",
            (DEVICE, b"{broken"),
        )
        _, token = create_token(conn, "lc-eeb-dongshan", "issued before the upgrade")
    return token


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in SNAPSHOTS.items()}


@pytest.mark.timeout(120)
def test_upgrade_from_version_5_keeps_everything(old_database: str) -> None:
    """migrate(up_to=5), fill, migrate to the latest: every row is still there, unchanged, and
    the API serves the readings, judgements and episode; the old token still works."""
    url = old_database
    assert migrate(url, up_to=FROM_VERSION) == list(range(1, FROM_VERSION + 1))
    start = (datetime.now(UTC) - timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)
    token = fill_as_version_5(url, start)
    before = snapshot(url)
    applied = migrate(url)
    assert applied == [m.version for m in MIGRATIONS if m.version > FROM_VERSION]
    assert migrate(url) == []  # a second run applies nothing
    after = snapshot(url)
    for name in SNAPSHOTS:
        assert after[name] == before[name], name
    counts = {name: len(rows) for name, rows in after.items()}
    print(f"upgrade {FROM_VERSION} -> {applied[-1] if applied else FROM_VERSION}: kept {counts}")
    settings = Settings(database_url=url, api_rate_limit_per_minute=100_000)
    with TestClient(create_app(settings)) as api:
        span = {"start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()}
        for pollutant in ("so2", "o2"):
            r = api.get(f"/api/v1/sites/{SITE}/readings", params={"pollutant": pollutant, **span})
            assert r.status_code == 200, r.text
            served = [(p["time"], p["value"], p["flag"]) for p in r.json()["data"]]
            stored = [(row[0], row[5], row[7]) for row in before["readings"] if row[3] == pollutant]
            assert len(served) == len(stored) == 180
            assert [v for _, v, _ in served] == [v for _, v, _ in stored]
            assert [f for _, _, f in served] == [f for _, _, f in stored]
        judged = api.get(f"/api/v1/sites/{SITE}/judgements", params={"pollutant": "so2", **span})
        assert judged.status_code == 200, judged.text
        assert len(judged.json()["results"]) == 3
        episodes = api.get("/api/v1/episodes").json()["results"]
        assert [e["id"] for e in episodes] == [row[0] for row in before["episodes"]]
        mine = api.get("/api/v1/regulator/episodes", headers={"Authorization": f"Bearer {token}"})
        assert mine.status_code == 200
        assert [e["id"] for e in mine.json()["results"]] == [row[0] for row in before["episodes"]]


def table_digests(url: str) -> dict[str, tuple[int, str]]:
    """(rows, md5 of every row in order) for every table of the public schema."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select tablename from pg_tables where schemaname = 'public' order by 1"
            )
        ]
        out = {}
        for table in tables:
            row = conn.execute(
                f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), ''))"
                f" from {table} t"
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out


@pytest.mark.timeout(120)
def test_backup_and_restore_round_trip(pg_cluster: PostgresCluster, tmp_path: Path) -> None:
    """The procedure of docs/operations.md: pg_dump --format=custom of a live database,
    pg_restore into an empty one, then `sunlight db migrate`: every table identical, row by
    row, and the restored database is served."""
    with filled_database(pg_cluster) as url:
        with psycopg.connect(url) as conn:
            _, token = create_token(conn, "lc-eeb", "before the backup")
        dump = tmp_path / "sunlight.dump"
        bindir = _pg_bindir()
        subprocess.run(
            [str(bindir / "pg_dump"), "--format=custom", f"--file={dump}", url],
            check=True,
            capture_output=True,
            timeout=60,
        )
        before = table_digests(url)
        with psycopg.connect(url) as conn:
            timescale = storage_mode(conn) is StorageMode.TIMESCALEDB
    restored = pg_cluster.url("restored_from_dump")
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute("drop database if exists restored_from_dump with (force)")
        conn.execute("create database restored_from_dump")
    try:
        if timescale:  # as docs/operations.md says: TimescaleDB's own restore bracket
            with psycopg.connect(restored, autocommit=True) as conn:
                conn.execute("create extension timescaledb")
                conn.execute("select timescaledb_pre_restore()")
        subprocess.run(
            [
                str(bindir / "pg_restore"),
                "--exit-on-error",
                "--no-owner",
                f"--dbname={restored}",
                str(dump),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if timescale:
            with psycopg.connect(restored, autocommit=True) as conn:
                conn.execute("select timescaledb_post_restore()")
        out = subprocess.run(
            [sys.executable, "-m", "sunlight", "db", "migrate"],
            env={**os.environ, "SUNLIGHT_DATABASE_URL": restored},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "up to date" in out.stdout
        after = table_digests(restored)
        assert after == before
        print(
            f"backup/restore: {len(after)} tables, {sum(n for n, _ in after.values())} rows identical"
        )
        with TestClient(create_app(Settings(database_url=restored))) as api:
            mine = api.get(
                "/api/v1/regulator/episodes", headers={"Authorization": f"Bearer {token}"}
            )
            assert mine.status_code == 200
            assert api.get("/api/v1/episodes").json()["results"]
    finally:
        with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
            conn.execute("drop database restored_from_dump with (force)")
