"""Writing readings: COPY into a staging table, idempotent merge, rollup and latest values.

Everything one batch does happens in the caller's transaction, so a batch is either stored
whole (readings, their hourly rollup on the plain path, latest values, dead letters) or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from domain.readings import Period
from store.schema import ROLLUP_SELECT, StorageMode

logger = logging.getLogger(__name__)

_ROLLED_UP = {Period.SAMPLE, Period.MINUTE}
# Inside this window the continuous aggregate's own policy catches late rows; older ones are
# refreshed by the writer (kept equal to the start_offset of the policy in store.schema).
CAGG_POLICY_WINDOW = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A validated reading stamped with the registry keys of its device and site."""

    time: datetime
    device_key: int
    site_key: int
    pollutant: str
    period: Period
    value: float
    unit: str
    flag: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    updated: int
    unchanged: int
    touched_hours: tuple[datetime, datetime] | None  # [first, last] hour bucket rolled up


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _dedupe(rows: Iterable[StoredReading]) -> list[StoredReading]:
    """Keep the last of several rows with one key: a merge may touch a row only once."""
    by_key: dict[tuple[int, str, Period, datetime], StoredReading] = {}
    for r in rows:
        by_key[(r.device_key, r.pollutant, r.period, r.time)] = r
    return list(by_key.values())


def write_readings(
    conn: psycopg.Connection, rows: Sequence[StoredReading], mode: StorageMode
) -> WriteResult:
    """Store a batch idempotently on (device, pollutant, period, time).

    A resent identical reading changes nothing; a resent reading with another value or flag
    replaces the stored one (a device correcting, or validated data replacing preliminary).
    """
    unique = _dedupe(rows)
    if not unique:
        return WriteResult(0, 0, len(rows), None)
    conn.execute(
        "create temp table if not exists readings_in"
        " (like readings including defaults) on commit delete rows"
    )
    with conn.cursor().copy(
        "copy readings_in (time, device_key, site_key, pollutant, period, value, unit, flag)"
        " from stdin"
    ) as copy:
        for r in unique:
            copy.write_row(
                (
                    r.time,
                    r.device_key,
                    r.site_key,
                    r.pollutant,
                    r.period.value,
                    r.value,
                    r.unit,
                    r.flag,
                )
            )
    cur = conn.execute(
        """
        insert into readings as r (time, device_key, site_key, pollutant, period, value, unit, flag)
        select time, device_key, site_key, pollutant, period, value, unit, flag from readings_in
        on conflict (device_key, pollutant, period, time) do update
            set value = excluded.value, flag = excluded.flag, unit = excluded.unit,
                site_key = excluded.site_key
            where (r.value, r.flag, r.unit)
                  is distinct from (excluded.value, excluded.flag, excluded.unit)
        returning (xmax = 0)
        """
    )
    outcomes = [row[0] for row in cur.fetchall()]
    inserted = sum(1 for o in outcomes if o)
    updated = len(outcomes) - inserted
    _update_latest(conn, unique)
    _queue_rejudging(conn, unique)
    rolled = [r for r in unique if r.period in _ROLLED_UP]
    touched = None
    if rolled:
        touched = (min(_hour(r.time) for r in rolled), max(_hour(r.time) for r in rolled))
        if mode is StorageMode.POSTGRES:
            _refresh_plain_rollup(conn, rolled)
    return WriteResult(inserted, updated, len(rows) - inserted - updated, touched)


def _queue_rejudging(conn: psycopg.Connection, rows: Sequence[StoredReading]) -> None:
    """Hours before the current one that this batch changed: the alerts service judges them
    again if it already had (late data must not leave a stale verdict)."""
    current = _hour(datetime.now(UTC))
    stale = sorted({(r.site_key, _hour(r.time)) for r in rows if r.time < current})
    if not stale:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rejudge_queue (site_key, hour) values (%s, %s) on conflict do nothing",
            stale,
        )


def _update_latest(conn: psycopg.Connection, rows: Sequence[StoredReading]) -> None:
    newest: dict[tuple[int, str, Period], StoredReading] = {}
    newest_valid: dict[tuple[int, str, Period], StoredReading] = {}
    for r in rows:
        key = (r.site_key, r.pollutant, r.period)
        if key not in newest or r.time >= newest[key].time:
            newest[key] = r
        if r.flag == "N" and (key not in newest_valid or r.time >= newest_valid[key].time):
            newest_valid[key] = r
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into latest_readings as l
                (site_key, pollutant, period, device_key, time, value, unit, flag)
            values (%s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (site_key, pollutant, period) do update
                set device_key = excluded.device_key, time = excluded.time,
                    value = excluded.value, unit = excluded.unit, flag = excluded.flag
                where excluded.time >= l.time
            """,
            [
                (
                    r.site_key,
                    r.pollutant,
                    r.period.value,
                    r.device_key,
                    r.time,
                    r.value,
                    r.unit,
                    r.flag,
                )
                for r in newest.values()
            ],
        )
        cur.executemany(
            "update latest_readings set valid_received_at = now()"
            " where site_key = %s and pollutant = %s and period = %s",
            [(r.site_key, r.pollutant, r.period.value) for r in newest_valid.values()],
        )


# Constant text assembled once; every value is a bound parameter.
_PLAIN_ROLLUP_UPSERT = (
    "insert into readings_hourly (device_key, site_key, pollutant, period, unit, hour, n,"  # noqa: S608
    " n_valid, mean, min, max, mean_all, flags_mask) "
    + ROLLUP_SELECT.format(bucket="date_trunc('hour', time, 'UTC')")
    + """
      and (device_key, pollutant, period, date_trunc('hour', time, 'UTC')) in (
          select * from unnest(%s::integer[], %s::text[], %s::averaging_period[],
                               %s::timestamptz[]))
      and time >= %s and time < %s
    group by device_key, pollutant, period, date_trunc('hour', time, 'UTC')
    on conflict (device_key, pollutant, period, hour) do update set
        site_key = excluded.site_key, unit = excluded.unit, n = excluded.n,
        n_valid = excluded.n_valid, mean = excluded.mean, min = excluded.min,
        max = excluded.max, mean_all = excluded.mean_all, flags_mask = excluded.flags_mask
    """
)


def _refresh_plain_rollup(conn: psycopg.Connection, rows: Sequence[StoredReading]) -> None:
    """Recompute exactly the hour buckets this batch touched, late data included."""
    keys = sorted({(r.device_key, r.pollutant, r.period.value, _hour(r.time)) for r in rows})
    dev, pol, per, hour = (list(col) for col in zip(*keys, strict=True))
    conn.execute(
        _PLAIN_ROLLUP_UPSERT,
        (dev, pol, per, hour, min(hour), max(hour) + timedelta(hours=1)),
    )


def refresh_late_aggregate(
    url: str, mode: StorageMode, touched: tuple[datetime, datetime], now: datetime
) -> None:
    """On TimescaleDB, refresh the continuous aggregate for late rows its policy won't revisit.

    Must run after the batch commits and outside a transaction (TimescaleDB refuses otherwise).
    """
    if mode is not StorageMode.TIMESCALEDB or touched[0] >= now - CAGG_POLICY_WINDOW:
        return
    start, end = touched[0], min(touched[1], now - CAGG_POLICY_WINDOW) + timedelta(hours=1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("call refresh_continuous_aggregate('readings_hourly', %s, %s)", (start, end))


@dataclass(frozen=True, slots=True)
class UnknownValue:
    """A value under an HJ 212 code Sunlight has no entry for, kept verbatim."""

    time: datetime
    device_key: int
    code: str
    field: str
    value: str
    flag: str | None


def write_unknown_values(conn: psycopg.Connection, values: Sequence[UnknownValue]) -> None:
    if not values:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "insert into unknown_values (time, device_key, code, field, value, flag)"
            " values (%s, %s, %s, %s, %s, %s)"
            " on conflict (device_key, code, field, time) do update"
            " set value = excluded.value, flag = excluded.flag",
            [(v.time, v.device_key, v.code, v.field, v.value, v.flag) for v in values],
        )
