"""The plain path's write SQL against recomputation: hourly rollup, latest values, re-judging.

The writer keeps running sums per hour, groups pollutants bytewise and takes hours with
``date_bin``; these tests recompute every figure from the stored readings with
``date_trunc('hour', time, 'UTC')`` after batches of new minutes, resends, corrections, split
minutes and late data, from a session whose time zone is not a whole number of hours from UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from domain.readings import Period
from registry.loader import load_registry
from store.readings import StoredReading, write_readings
from store.registry import list_devices
from store.schema import StorageMode, storage_mode
from tests.conftest import EXAMPLE_REGISTRY

T0 = datetime(2026, 11, 20, 8, 50, tzinfo=UTC)
POLLUTANTS = (("so2", "mg/m3"), ("nox", "mg/m3"), ("o2", "%"), ("temperature", "degC"))
FLAGS = "NNNNNCFMN"

_RECOMPUTED = """
    select device_key, pollutant, period::text, date_trunc('hour', time, 'UTC'), count(*),
           count(*) filter (where flag = 'N'), avg(value) filter (where flag = 'N'),
           min(value) filter (where flag = 'N'), max(value) filter (where flag = 'N'),
           avg(value), max(site_key), max(unit)
    from readings where period in ('sample', 'minute')
    group by 1, 2, 3, 4 order by 1, 2, 3, 4
"""
_STORED = """
    select device_key, pollutant, period::text, hour, n, n_valid, mean, min, max, mean_all,
           site_key, unit
    from readings_hourly order by 1, 2, 3, 4
"""


@pytest.fixture
def devices(database_url: str) -> list[tuple[int, int]]:
    """(device key, site key) of the example registry's flue-gas devices."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with psycopg.connect(database_url) as conn:
        if storage_mode(conn) is not StorageMode.POSTGRES:
            pytest.skip("the plain PostgreSQL path's own rollup")
        found = [
            (int(d["device_key"]), int(d["site_key"]))
            for d in list_devices(conn)
            if d["medium"] == "flue_gas"
        ]
    assert len(found) >= 2
    return found[:2]


def batch(
    devices: list[tuple[int, int]],
    start: datetime,
    count: int,
    *,
    step: timedelta = timedelta(minutes=1),
    period: Period = Period.MINUTE,
    offset: float = 0.0,
    pollutants: tuple[tuple[str, str], ...] = POLLUTANTS,
) -> list[StoredReading]:
    """``count`` times from ``start`` for each device and pollutant; values and flags vary."""
    rows = []
    for i in range(count):
        t = start + i * step
        for d, (device_key, site_key) in enumerate(devices):
            for p, (pollutant, unit) in enumerate(pollutants):
                value = offset + 10.0 * (p + 1) + ((i * 7 + d * 3 + p) % 11) / 4
                flag = FLAGS[(i + d + p) % len(FLAGS)]
                rows.append(
                    StoredReading(t, device_key, site_key, pollutant, period, value, unit, flag)
                )
    return rows


def write_all(url: str, batches: list[list[StoredReading]]) -> None:
    # A session in India's time zone (UTC+05:30): an hour taken in the session's zone would
    # fall on the half hour, so only UTC hours pass.
    with psycopg.connect(url, options="-c TimeZone=Asia/Kolkata") as conn:
        for rows in batches:
            with conn.transaction():
                write_readings(conn, rows, StorageMode.POSTGRES)


def assert_rollup_is_recomputation(url: str) -> None:
    with psycopg.connect(url) as conn:
        stored = conn.execute(_STORED).fetchall()
        recomputed = conn.execute(_RECOMPUTED).fetchall()
    assert [r[:6] for r in stored] == [r[:6] for r in recomputed]
    assert [r[10:] for r in stored] == [r[10:] for r in recomputed]
    for got, want in zip(stored, recomputed, strict=True):
        for a, b in zip(got[6:10], want[6:10], strict=True):
            assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-12), (got, want)


def test_rollup_equals_recomputation_over_hours_resends_and_corrections(
    database_url: str, devices: list[tuple[int, int]]
) -> None:
    """New minutes across two hour boundaries, then a resend of some (nothing changes), a
    correction of others (values and flags), the rest of split minutes, late minutes of an
    hour already rolled up, and instantaneous samples: the rollup equals a recomputation."""
    first = batch(devices, T0, 80)  # 08:50 .. 10:09
    write_all(
        database_url,
        [
            first[: len(first) // 2],
            first[len(first) // 2 :],
            first[100:300],  # a resend
            batch(devices, T0 + timedelta(minutes=5), 20, offset=3.5),  # corrections
            batch(devices, T0 + timedelta(minutes=80), 10, pollutants=POLLUTANTS[:2]),
            batch(devices, T0 + timedelta(minutes=80), 10, pollutants=POLLUTANTS[2:]),
            batch(devices, T0 - timedelta(hours=30), 15),  # late, for a day before
            batch(
                devices,
                T0 + timedelta(seconds=30),
                200,
                step=timedelta(seconds=20),
                period=Period.SAMPLE,
            ),
        ],
    )
    assert_rollup_is_recomputation(database_url)
    with psycopg.connect(database_url) as conn:
        hours = conn.execute(
            "select count(distinct hour) from readings_hourly where period = 'minute'"
        ).fetchone()
        assert hours == (5,)  # 08, 09, 10 and the late day's 02 and 03 UTC
        queued = conn.execute("select site_key, hour from rejudge_queue order by 1, 2").fetchall()
        expected = conn.execute(
            "select distinct site_key, date_trunc('hour', time, 'UTC') from readings"
            " where time < date_trunc('hour', now(), 'UTC') order by 1, 2"
        ).fetchall()
        assert queued == expected


def test_latest_values_are_the_newest_stored(
    database_url: str, devices: list[tuple[int, int]]
) -> None:
    """After minutes, samples, a back-fill and a correction of the newest minute, each site's
    latest value per pollutant and period is its newest stored reading."""
    write_all(
        database_url,
        [
            batch(devices, T0, 30),
            batch(devices, T0 - timedelta(hours=3), 30),  # back-fill: older, must not win
            batch(devices, T0 + timedelta(minutes=29), 1, offset=50.0),  # correction
            batch(devices, T0, 40, step=timedelta(seconds=15), period=Period.SAMPLE),
        ],
    )
    with psycopg.connect(database_url) as conn:
        latest = conn.execute(
            "select site_key, pollutant, period::text, device_key, time, value, unit, flag"
            " from latest_readings order by 1, 2, 3"
        ).fetchall()
        newest = conn.execute(
            "select distinct on (site_key, pollutant, period) site_key, pollutant,"
            " period::text, device_key, time, value, unit, flag from readings"
            " order by site_key, pollutant, period, time desc"
        ).fetchall()
    assert latest == newest
    assert len(latest) == len(devices) * len(POLLUTANTS) * 2
