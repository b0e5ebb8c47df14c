"""The readings writer on a real database: idempotent, correcting, rolled up, latest kept."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from domain.readings import Period
from store import readings
from store.readings import StoredReading, write_readings
from store.schema import StorageMode, storage_mode
from store.sites import hourly_series

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def minutes(
    device: dict[str, object], values: list[float], *, start: datetime = T0, flag: str = "N"
) -> list[StoredReading]:
    return [
        StoredReading(
            start + timedelta(minutes=i),
            int(str(device["device_key"])),
            int(str(device["site_key"])),
            "so2",
            Period.MINUTE,
            v,
            "mg/m3",
            flag,
        )
        for i, v in enumerate(values)
    ]


def write(url: str, rows: list[StoredReading]):  # type: ignore[no-untyped-def]
    with psycopg.connect(url) as conn:
        mode = storage_mode(conn)
        assert mode is not None
        with conn.transaction():
            result = write_readings(conn, rows, mode)
        if mode is StorageMode.TIMESCALEDB:
            conn.commit()
            conn.autocommit = True
            conn.execute("call refresh_continuous_aggregate('readings_hourly', null, null)")
        return result


def hourly(url: str, device: dict[str, object]) -> list[dict[str, object]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return hourly_series(
            conn,
            device_keys=[int(device["device_key"])],  # type: ignore[call-overload]
            pollutant="so2",
            start=T0 - timedelta(days=1),
            end=T0 + timedelta(days=1),
            limit=100,
        )


def test_rewrite_is_idempotent(database_url: str, device: dict[str, object]) -> None:
    """Writing the same readings twice stores them once."""
    rows = minutes(device, [10.0] * 60)
    first = write(database_url, rows)
    second = write(database_url, rows + rows)
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (60, 0, 0, 120)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from readings").fetchone() == (60,)


def test_correction_replaces_value_and_flag(database_url: str, device: dict[str, object]) -> None:
    """A resent reading with another value or flag replaces the stored one."""
    write(database_url, minutes(device, [10.0]))
    result = write(database_url, minutes(device, [12.0], flag="C"))
    assert (result.inserted, result.updated) == (0, 1)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select value, flag from readings").fetchone() == (12.0, "C")


def test_hourly_rollup_counts_valid_minutes_and_flags(
    database_url: str, device: dict[str, object]
) -> None:
    """The hourly mean uses only flag-N minutes; coverage and flags travel with it."""
    rows = minutes(device, [10.0] * 40) + minutes(
        device, [100.0] * 5, start=T0 + timedelta(minutes=40), flag="C"
    )
    write(database_url, rows)
    (hour,) = hourly(database_url, device)
    assert hour["time"] == T0
    assert (hour["n"], hour["n_valid"], hour["mean"]) == (45, 40, 10.0)
    assert hour["flags"] == ["N", "C"]


def test_late_data_recomputes_the_hour(database_url: str, device: dict[str, object]) -> None:
    """Readings arriving days later for an old hour update that hour's mean."""
    write(database_url, minutes(device, [10.0] * 30))
    write(database_url, minutes(device, [20.0] * 30, start=T0 + timedelta(minutes=30)))
    (hour,) = hourly(database_url, device)
    assert (hour["n_valid"], hour["mean"]) == (60, 15.0)


def test_latest_keeps_newest(database_url: str, device: dict[str, object]) -> None:
    """Latest values move forward only: an older back-filled reading does not replace them."""
    write(database_url, minutes(device, [10.0, 11.0]))
    write(database_url, minutes(device, [99.0], start=T0 - timedelta(hours=5)))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select value, time from latest_readings").fetchone() == (
            11.0,
            T0 + timedelta(minutes=1),
        )


def _sorted_on(plan: dict[str, Any], column: str) -> bool:
    """Whether what the plan inserts arrives sorted with ``column`` first: a Sort on it is
    reached, going down from the insert, before any hash aggregate (whose order is arbitrary)."""
    node = plan
    while node["Node Type"] not in ("Sort", "Incremental Sort"):
        if node.get("Strategy") == "Hashed" or not node.get("Plans"):
            return False
        node = node["Plans"][0]
    return re.fullmatch(rf"\(*(\w+\.)?{column}\)*", node["Sort Key"][0]) is not None


def test_batch_writes_take_shared_rows_in_key_order(
    database_url: str, device: dict[str, object]
) -> None:
    """Two ingestors on a $share subscription commit batches touching the same rollup hours
    and re-judging rows at once: each statement writing those rows takes them in its key's
    order, so two batches cannot deadlock. Checked with sorting disabled: only an order the
    statement itself asks for keeps a Sort in the plan; a hash aggregate's order would not."""
    late = minutes(device, [10.0, 20.0, 30.0])
    with psycopg.connect(database_url) as conn:
        readings._stage(conn, late)
        conn.execute("set local enable_sort = off")
        conn.execute("analyze readings_in")
        statements: dict[str, tuple[str, Any, str]] = {
            "rejudge": (readings._REJUDGE, None, "site_key")
        }
        if storage_mode(conn) is StorageMode.POSTGRES:  # TimescaleDB: a continuous aggregate
            statements["rollup"] = (readings._ROLLUP_ADD, ([], [], []), "device_key")
            statements["rollup recomputed"] = (
                readings._ROLLUP_RECOMPUTE,
                (
                    [int(str(device["device_key"]))],
                    ["so2"],
                    ["minute"],
                    [T0],
                    T0,
                    T0 + timedelta(hours=1),
                ),
                "device_key",
            )
        for name, (statement, args, column) in statements.items():
            (plan,) = conn.execute("explain (format json) " + statement, args).fetchone()[0]  # type: ignore[index]
            inserted = plan["Plan"]["Plans"][0]
            assert _sorted_on(inserted, column), (name, plan)
