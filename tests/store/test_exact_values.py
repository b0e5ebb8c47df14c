"""Values come back exactly as written on either path; on TimescaleDB most are stored as integer
millionths (migration 11), and upgrading a database with compressed history keeps every value
and hourly mean."""

from __future__ import annotations

import math
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from store.schema import MIGRATIONS, StorageMode, migrate, storage_mode
from tests.servers import PostgresCluster
from tests.store.test_readings import T0, minutes, write

# Decimal values as devices send them, and doubles no number of millionths can give back.
DECIMAL = [25.13, 0.1, 0.3, -12.5, 0.0, 123.456789, 987654.321, 8999999.999999, 1e-6, 7.0]
NOT_MILLIONTHS = [1e-7, 0.1 + 0.2, math.pi, 5e14, 5e-324, -2.5e13, 123456789.1234567]


def stored(url: str) -> list[tuple[float, int | None]]:
    """Each so2 value as read through ``readings``, with its millionths on TimescaleDB."""
    with psycopg.connect(url) as conn:
        if storage_mode(conn) is StorageMode.TIMESCALEDB:
            query = (
                "select r.value, v.value_micro from readings r join reading_values v"
                " using (device_key, pollutant, period, time) where r.pollutant = 'so2'"
                " order by r.time"
            )
        else:
            query = "select value, null from readings where pollutant = 'so2' order by time"
        return [(row[0], row[1]) for row in conn.execute(query)]


def test_values_read_back_exactly(database_url: str, device: dict[str, object]) -> None:
    values = DECIMAL + NOT_MILLIONTHS
    write(database_url, minutes(device, values))
    back = stored(database_url)
    assert [v for v, _ in back] == values  # the same doubles, bit for bit
    with psycopg.connect(database_url) as conn:
        timescale = storage_mode(conn) is StorageMode.TIMESCALEDB
    if timescale:
        micro = [m for _, m in back]
        assert micro[: len(DECIMAL)] == [round(v * 1_000_000) for v in DECIMAL]
        assert micro[len(DECIMAL) :] == [None] * len(NOT_MILLIONTHS)


def test_correction_between_forms_replaces_the_value(
    database_url: str, device: dict[str, object]
) -> None:
    """A stored millionths value corrected to one that is not (and back) leaves one value."""
    write(database_url, minutes(device, [25.13, math.pi]))
    result = write(database_url, minutes(device, [math.pi, 25.13]))
    assert (result.inserted, result.updated) == (0, 2)
    assert [v for v, _ in stored(database_url)] == [math.pi, 25.13]
    assert write(database_url, minutes(device, [math.pi, 25.13])).unchanged == 2


@pytest.mark.timescaledb
def test_upgrade_keeps_compressed_history(pg_cluster: PostgresCluster) -> None:
    """A version-10 TimescaleDB database with compressed chunks and a materialised aggregate:
    after migration 11 every value and hourly mean reads the same, new values are stored as
    millionths, and the aggregate covers old and new hours."""
    name = "exact_values_upgrade"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name}")
    url = pg_cluster.url(name)
    try:
        migrate(url, up_to=10)
        with psycopg.connect(url, autocommit=True) as conn:
            if storage_mode(conn) is not StorageMode.TIMESCALEDB:
                pytest.skip("timescaledb extension not available on the test server")
            conn.execute(
                "insert into readings (time, device_key, site_key, pollutant, period, value,"
                " unit, flag) select %s + g * interval '1 minute', 1, 1, 'so2', 'minute',"
                " 20 + (g %% 17) * 0.37, 'mg/m3', case when g %% 50 = 0 then 'C' else 'N' end"
                " from generate_series(0, 3 * 1440 - 1) g",
                (T0 - timedelta(days=10),),
            )
            conn.execute("call refresh_continuous_aggregate('readings_hourly', null, null)")
            conn.execute("select compress_chunk(c) from show_chunks('readings') c")
            old_values = conn.execute("select time, value from readings order by time").fetchall()
            old_hours = conn.execute(
                "select hour, n, n_valid, mean, min, max, mean_all, flags_mask"
                " from readings_hourly order by hour"
            ).fetchall()
        assert len(old_hours) == 72

        assert migrate(url) == [m.version for m in MIGRATIONS if m.version > 10]
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("select time, value from readings order by time").fetchall() == (
                old_values
            )
            hours = (
                "select hour, n, n_valid, mean, min, max, mean_all, flags_mask"
                " from readings_hourly order by hour"
            )
            where = conn.execute(
                "select materialization_hypertable_schema, materialization_hypertable_name"
                " from timescaledb_information.continuous_aggregates"
                " where view_name = 'readings_hourly'"
            ).fetchone()
            assert where is not None
            materialised = conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(*where))
            ).fetchone()
            assert materialised == (72,)  # refilled by the migration, not computed per query
            # Equal up to the order of a float sum (the aggregate is recomputed from the
            # compressed chunks, in another order than when it was first materialised).
            new_hours = conn.execute(hours).fetchall()
            assert [r[:3] + r[4:6] + r[7:] for r in new_hours] == [
                r[:3] + r[4:6] + r[7:] for r in old_hours
            ]
            for new, old in zip(new_hours, old_hours, strict=True):
                assert (new[3], new[6]) == pytest.approx((old[3], old[6]), rel=1e-12)
            conn.execute(
                "insert into reading_values (time, device_key, site_key, pollutant, period,"
                " value_micro, value, unit, flag) values (%s, 1, 1, 'so2', 'minute', 21370000,"
                " 'NaN', 'mg/m3', 'N')",
                (T0,),
            )
            conn.execute("call refresh_continuous_aggregate('readings_hourly', null, null)")
            newest = conn.execute(
                "select n, mean from readings_hourly where hour = %s", (T0,)
            ).fetchone()
            assert newest == (1, 21.37)
    finally:
        with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")
