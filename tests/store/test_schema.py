"""Migrations on a real server: recorded, idempotent, and the storage path chosen and recorded."""

from __future__ import annotations

import psycopg
import pytest

from store.schema import MIGRATIONS, StorageMode, migrate, storage_mode, timescaledb_available
from tests.servers import PostgresCluster


def test_rerun_is_noop(database_url: str) -> None:
    """Every migration is recorded once; migrating again applies nothing."""
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("select version from schema_migrations order by 1")]
    assert versions == [m.version for m in MIGRATIONS]


def test_fresh_database_gets_every_table(pg_cluster: PostgresCluster) -> None:
    """A fresh database gets the registry, readings, rollup, latest and dead-letter relations."""
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute("drop database if exists fresh with (force)")
        conn.execute("create database fresh")
    url = pg_cluster.url("fresh")
    assert migrate(url) == [m.version for m in MIGRATIONS]
    with psycopg.connect(url) as conn:
        mode = storage_mode(conn)
        expected = StorageMode.TIMESCALEDB if timescaledb_available(conn) else StorageMode.POSTGRES
        assert mode is expected
        for name in (
            "regulators",
            "districts",
            "enterprises",
            "outlets",
            "permit_limits",
            "stations",
            "devices",
            "sites",
            "readings",
            "readings_hourly",
            "latest_readings",
            "dead_letters",
        ):
            assert conn.execute("select to_regclass(%s)", (name,)).fetchone() != (None,), name


def test_forcing_timescaledb_without_extension_fails_clearly(pg_cluster: PostgresCluster) -> None:
    """Asking for TimescaleDB where it is not installed is a clear error, not a half schema."""
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        if timescaledb_available(conn):
            pytest.skip("the extension is available here")
        conn.execute("drop database if exists forced with (force)")
        conn.execute("create database forced")
    with pytest.raises(RuntimeError, match="extension is not available"):
        migrate(pg_cluster.url("forced"), storage="timescaledb")


@pytest.mark.timescaledb
def test_timescaledb_objects(database_url: str) -> None:
    """With the extension: readings is a hypertable with compression, retention and a cagg."""
    with psycopg.connect(database_url) as conn:
        if storage_mode(conn) is not StorageMode.TIMESCALEDB:
            pytest.skip("timescaledb extension not available on the test server")
        assert conn.execute(
            "select count(*) from timescaledb_information.hypertables where hypertable_name = 'reading_values'"
        ).fetchone() == (1,)
        jobs = {r[0] for r in conn.execute("select proc_name from timescaledb_information.jobs")}
        assert {
            "policy_compression",
            "policy_retention",
            "policy_refresh_continuous_aggregate",
        } <= jobs
        assert conn.execute(
            "select count(*) from timescaledb_information.continuous_aggregates where view_name = 'readings_hourly'"
        ).fetchone() == (1,)


def test_tables_ingest_updates_leave_room_on_their_pages(database_url: str) -> None:
    """The rollup (plain path) and the latest values keep half of each page free, so ingest's
    per-batch row updates stay on their page (heap-only) instead of bloating the tables."""
    with psycopg.connect(database_url) as conn:
        mode = storage_mode(conn)
        options = dict(
            conn.execute(
                "select relname, reloptions from pg_class"
                " where relname in ('latest_readings', 'readings_hourly') and relkind = 'r'"
            ).fetchall()
        )
    assert options["latest_readings"] == ["fillfactor=50"]
    if mode is StorageMode.POSTGRES:
        assert options["readings_hourly"] == ["fillfactor=50"]
