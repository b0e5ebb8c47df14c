"""Writing minute readings straight through the store, for tests about what happens after."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from domain.readings import Period
from store.readings import StoredReading, write_readings
from store.registry import list_devices
from store.schema import StorageMode, storage_mode


def write_minutes(
    url: str,
    device_id: str,
    start: datetime,
    values: dict[str, tuple[float, str]],
    minutes: int = 60,
    flag: str = "N",
) -> None:
    """``minutes`` minute readings from ``start`` of each {pollutant: (value, unit)}."""
    with psycopg.connect(url) as conn:
        device = next(d for d in list_devices(conn) if d["id"] == device_id)
        rows = [
            StoredReading(
                start + timedelta(minutes=m),
                device["device_key"],
                device["site_key"],
                pol,
                Period.MINUTE,
                value,
                unit,
                flag,
            )
            for m in range(minutes)
            for pol, (value, unit) in values.items()
        ]
        mode = storage_mode(conn)
        assert mode is not None
        with conn.transaction():
            write_readings(conn, rows, mode)


def refresh_hourly(url: str, start: datetime, end: datetime) -> None:
    """Bring the hourly rollup up to date over [start, end): writes keep it on plain
    PostgreSQL; on TimescaleDB it is a continuous aggregate its policy refreshes later."""
    with psycopg.connect(url, autocommit=True) as conn:
        if storage_mode(conn) is StorageMode.TIMESCALEDB:
            conn.execute(
                "call refresh_continuous_aggregate('readings_hourly', %s, %s)", (start, end)
            )
