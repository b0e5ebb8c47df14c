"""Writing readings: COPY into a staging table, idempotent merge, rollup and latest values.

Everything one batch does happens in the caller's transaction, so a batch is either stored
whole (readings, their hourly rollup on the plain path, latest values, dead letters) or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import psycopg
from psycopg.rows import tuple_row

from domain.readings import Period
from store.schema import StorageMode

logger = logging.getLogger(__name__)

_ROLLED_UP = {Period.SAMPLE, Period.MINUTE}
_PERIOD_TEXT = {p: p.value for p in Period}  # a dict lookup beats the enum's value property
_COPY_TYPES = ["timestamptz", "int4", "int4", "text", "text", "float8", "text", "text"]
# Inside this window the continuous aggregate's own policy catches late rows; older ones are
# refreshed by the writer (kept equal to the start_offset of the policy in store.schema).
CAGG_POLICY_WINDOW = timedelta(days=3)


class StoredReading(NamedTuple):
    """A validated reading stamped with the registry keys of its device and site.

    A named tuple, not a frozen dataclass: ingest builds tens of thousands a second, and a
    tuple is several times cheaper to construct.
    """

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


def _dedupe(rows: Sequence[StoredReading]) -> Sequence[StoredReading]:
    """Keep the last of several rows with one key: a merge may touch a row only once."""
    # r[1], r[3], r[4], r[0]: device_key, pollutant, period, time (index, not attribute, per row)
    by_key = {(r[1], r[3], r[4], r[0]): r for r in rows}
    return rows if len(by_key) == len(rows) else list(by_key.values())


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
    _stage(conn, unique)
    if mode is StorageMode.POSTGRES:
        inserted, updated = _merge_wide(conn, unique)
    else:
        inserted, updated = _merge_narrow(conn)
    _update_latest(conn)
    _queue_rejudging(conn)
    rolled = [r[0] for r in unique if r[4] in _ROLLED_UP]  # time, period
    touched = (_hour(min(rolled)), _hour(max(rolled))) if rolled else None
    return WriteResult(inserted, updated, len(rows) - inserted - updated, touched)


def _stage(conn: psycopg.Connection, rows: Sequence[StoredReading]) -> None:
    """The batch into ``readings_in``, the transaction's staging table every statement of the
    write reads from."""
    conn.execute(
        "create temp table if not exists readings_in (time timestamptz, device_key integer,"
        " site_key integer, pollutant text, period averaging_period, value double precision,"
        " unit text, flag char(1)) on commit delete rows"
    )
    # Empty already, unless the caller writes several batches in one transaction (savepoints).
    conn.execute("truncate readings_in")
    with conn.cursor().copy(
        "copy readings_in (time, device_key, site_key, pollutant, period, value, unit, flag)"
        " from stdin (format binary)"
    ) as copy:
        copy.set_types(_COPY_TYPES)
        # A StoredReading is the COPY row as it is: its fields are the columns in order, and
        # Period and Flag are str enums, dumped as their text.
        write_row = copy.write_row
        for r in rows:
            write_row(r)


def _merge_narrow(conn: psycopg.Connection) -> tuple[int, int]:
    """TimescaleDB: one row per value; the continuous aggregate follows by itself.

    A value goes in as exact integer millionths where it is one (store.schema, migration 11:
    what compression shrinks best; the double column then holds NaN), else as the double.
    """
    cur = conn.execute(
        """
        insert into reading_values as r
            (time, device_key, site_key, pollutant, period, value_micro, value, unit, flag)
        select time, device_key, site_key, pollutant, period, m.micro,
               case when m.micro is null then value else 'NaN' end, unit, flag
        from readings_in, lateral (select micro_units(value) as micro) m
        on conflict (device_key, pollutant, period, time) do update
            set value_micro = excluded.value_micro, value = excluded.value,
                flag = excluded.flag, unit = excluded.unit, site_key = excluded.site_key
            where (r.value_micro, r.value, r.flag, r.unit)
                  is distinct from (excluded.value_micro, excluded.value, excluded.flag,
                                    excluded.unit)
        returning (xmax = 0)
        """
    )
    outcomes = [row[0] for row in cur.fetchall()]
    inserted = sum(1 for o in outcomes if o)
    return inserted, len(outcomes) - inserted


# The batch grouped into one row per device, period and minute (codes ascending).
_GROUPED_IN = """
    select i.time, i.device_key, max(i.site_key) as site_key, i.period,
           array_agg(c.id order by c.id) as codes, array_agg(i.value order by c.id) as vals,
           string_agg(i.flag, '' order by c.id) as flags
    from readings_in i join reading_codes c using (pollutant, unit)
"""

# Constant text assembled once; every value is a bound parameter.
# Inserts the minutes new to the table and returns the keys of those already stored.
_INSERT_FRESH = (
    "with g as (" + _GROUPED_IN + " group by i.device_key, i.period, i.time),"  # noqa: S608
    " fresh as (insert into reading_rows (time, device_key, site_key, period, codes, vals, flags)"
    " select * from g on conflict (device_key, period, time) do nothing"
    " returning device_key, period, time)"
    " select device_key, period::text, time from g"
    " except all select device_key, period::text, time from fresh"
)
_MERGE_STORED = (
    "insert into reading_rows as r (time, device_key, site_key, period, codes, vals, flags)"  # noqa: S608
    + _GROUPED_IN
    + " where (i.device_key, i.period, i.time) in (select * from unnest("
    "%s::integer[], %s::averaging_period[], %s::timestamptz[]))"
    " group by i.device_key, i.period, i.time"
    " on conflict (device_key, period, time) do update"
    " set (codes, vals, flags) = (select * from reading_rows_merge("
    "r.codes, r.vals, r.flags, excluded.codes, excluded.vals, excluded.flags)),"
    " site_key = excluded.site_key"
)

_RowKey = tuple[int, str, datetime]  # (device key, period, time)


def _merge_wide(conn: psycopg.Connection, rows: Sequence[StoredReading]) -> tuple[int, int]:
    """Plain PostgreSQL: minutes new to the table go in whole and add to their hours' sums; a
    minute already stored (a resend, a correction, the rest of a split minute) is merged
    value by value, and the hours it changed are recomputed from the stored readings."""
    conn.execute(
        "insert into reading_codes (pollutant, unit)"
        " select distinct pollutant, unit from readings_in i where not exists"
        " (select 1 from reading_codes c where c.pollutant = i.pollutant and c.unit = i.unit)"
        " on conflict do nothing"
    )
    cur = conn.cursor(row_factory=tuple_row)
    conflicts: list[_RowKey] = sorted(cur.execute(_INSERT_FRESH).fetchall())
    if any(r.period in _ROLLED_UP for r in rows):
        _add_to_rollup(conn, conflicts)
    if not conflicts:
        return len(rows), 0
    stored = set(conflicts)
    stored_before = [r for r in rows if (r.device_key, _PERIOD_TEXT[r.period], r.time) in stored]
    inserted = len(rows) - len(stored_before)
    dev, per, times = (list(c) for c in zip(*conflicts, strict=True))
    old = {
        (d, pol, p, t): (v, u, f)
        for d, pol, p, t, v, u, f in cur.execute(
            "select device_key, pollutant, period::text, time, value, unit, flag::text"
            " from readings where (device_key, period, time) in (select * from unnest("
            "%s::integer[], %s::averaging_period[], %s::timestamptz[]))",
            (dev, per, times),
        )
    }
    changed, updated = [], 0
    for r in stored_before:
        before = old.get((r.device_key, r.pollutant, r.period.value, r.time))
        if before is None:
            inserted += 1
            changed.append(r)
        elif before != (r.value, r.unit, r.flag):
            updated += 1
            changed.append(r)
    if changed:
        conn.execute(_MERGE_STORED, (dev, per, times))
        _recompute_rollup(conn, [r for r in changed if r.period in _ROLLED_UP])
    return inserted, updated


_ROLLUP_COLUMNS = (
    "device_key, site_key, pollutant, period, unit, hour, n, n_valid, mean, min, max, mean_all,"
    " flags_mask, sum_valid, sum_all"
)
_FLAG_BITS = (
    "bit_or(case flag when 'N' then 1 when 'F' then 2 when 'M' then 4 when 'S' then 8"
    " when 'D' then 16 when 'C' then 32 when 'T' then 64 when 'B' then 128 else 0 end)"
)
# A reading's UTC hour: equal to date_trunc('hour', time, 'UTC') (the rollup tests compare
# them) at a fraction of the cost, since date_trunc looks the time zone up for every row.
_HOUR = "date_bin('1 hour', time, '2000-01-01 00:00+00')"
# Pollutants grouped and sorted bytewise: the database's collation (often not "C") gives the
# same groups, but compares through the C library's locale rules on every comparison.
_POLLUTANT_C = 'pollutant collate "C"'
# The same figures as store.schema's rollup, plus the running sums the plain path keeps.
_ROLLUP_AGGREGATES = f"""
    device_key, max(site_key), {_POLLUTANT_C}, period, max(unit), {_HOUR},
    count(*), count(*) filter (where flag = 'N'),
    avg(value) filter (where flag = 'N'), min(value) filter (where flag = 'N'),
    max(value) filter (where flag = 'N'), avg(value), {_FLAG_BITS},
    coalesce(sum(value) filter (where flag = 'N'), 0), sum(value)
"""
# Grouped, and written in the order of the rollup's key: two ingestors (a $share subscription)
# whose batches touch the same hours then lock those rows in one order and cannot deadlock,
# whatever order a hash aggregate would have emitted them in.
_ROLLUP_GROUP = (
    f" group by device_key, {_POLLUTANT_C}, period, {_HOUR}"
    f" order by device_key, {_POLLUTANT_C}, period, {_HOUR}"
)

# Constant text assembled once; every value is a bound parameter.
_ROLLUP_ADD = (
    f"insert into readings_hourly as h ({_ROLLUP_COLUMNS}) select {_ROLLUP_AGGREGATES}"  # noqa: S608
    " from readings_in i where period in ('sample', 'minute')"
    " and (device_key, period, time) not in (select * from unnest("
    "%s::integer[], %s::averaging_period[], %s::timestamptz[]))"
    + _ROLLUP_GROUP
    + """
    on conflict (device_key, pollutant, period, hour) do update set
        site_key = excluded.site_key, unit = excluded.unit,
        n = h.n + excluded.n, n_valid = h.n_valid + excluded.n_valid,
        sum_valid = h.sum_valid + excluded.sum_valid, sum_all = h.sum_all + excluded.sum_all,
        mean = case when h.n_valid + excluded.n_valid > 0
                    then (h.sum_valid + excluded.sum_valid) / (h.n_valid + excluded.n_valid) end,
        mean_all = (h.sum_all + excluded.sum_all) / (h.n + excluded.n),
        min = least(h.min, excluded.min), max = greatest(h.max, excluded.max),
        flags_mask = h.flags_mask | excluded.flags_mask
    """
)

_ROLLUP_RECOMPUTE = (
    f"insert into readings_hourly ({_ROLLUP_COLUMNS}) select {_ROLLUP_AGGREGATES}"  # noqa: S608
    f""" from readings
    where period in ('sample', 'minute')
      and (device_key, pollutant, period, {_HOUR}) in (
          select * from unnest(%s::integer[], %s::text[], %s::averaging_period[],
                               %s::timestamptz[]))
      and time >= %s and time < %s"""
    + _ROLLUP_GROUP
    + """
    on conflict (device_key, pollutant, period, hour) do update set
        site_key = excluded.site_key, unit = excluded.unit, n = excluded.n,
        n_valid = excluded.n_valid, mean = excluded.mean, min = excluded.min,
        max = excluded.max, mean_all = excluded.mean_all, flags_mask = excluded.flags_mask,
        sum_valid = excluded.sum_valid, sum_all = excluded.sum_all
    """
)


def _add_to_rollup(conn: psycopg.Connection, skip: Sequence[_RowKey]) -> None:
    """Add the batch's new minutes to their hours (minutes in ``skip`` are recomputed)."""
    dev, per, times = (list(c) for c in zip(*skip, strict=True)) if skip else ([], [], [])
    conn.execute(_ROLLUP_ADD, (dev, per, times))


def _recompute_rollup(conn: psycopg.Connection, rows: Sequence[StoredReading]) -> None:
    """Recompute exactly the hour buckets whose stored readings changed."""
    if not rows:
        return
    keys = sorted({(r.device_key, r.pollutant, r.period.value, _hour(r.time)) for r in rows})
    dev, pol, per, hour = (list(col) for col in zip(*keys, strict=True))
    conn.execute(
        _ROLLUP_RECOMPUTE,
        (dev, pol, per, hour, min(hour), max(hour) + timedelta(hours=1)),
    )


def _queue_rejudging(conn: psycopg.Connection) -> None:
    """Hours before the current one that this batch changed: the alerts service judges them
    again if it already had (late data must not leave a stale verdict)."""
    conn.execute(_REJUDGE)


# Constant text assembled once.
_REJUDGE = (
    "insert into rejudge_queue (site_key, hour)"  # noqa: S608
    f" select distinct site_key, {_HOUR} as hour from readings_in"
    " where time < date_trunc('hour', now(), 'UTC') order by site_key, hour"  # as the rollup
    " on conflict do nothing"
)


def _update_latest(conn: psycopg.Connection) -> None:
    """Newest value per site, pollutant and period, straight from the staged batch.

    ``valid_received_at`` moves whenever the batch has a flag-N value for the key, even an
    older one: a back-fill shows the device is sending.
    """
    conn.execute(
        """
        insert into latest_readings as l
            (site_key, pollutant, period, device_key, time, value, unit, flag, valid_received_at)
        select site_key, pollutant, period, device_key, time, value, unit, flag,
               case when any_valid then now() end
        from (
            select distinct on (site_key, pollutant collate "C", period) *,
                   bool_or(flag = 'N')
                       over (partition by site_key, pollutant collate "C", period) as any_valid
            from readings_in
            order by site_key, pollutant collate "C", period, time desc
        ) newest
        on conflict (site_key, pollutant, period) do update set
            device_key = case when excluded.time >= l.time
                              then excluded.device_key else l.device_key end,
            value = case when excluded.time >= l.time then excluded.value else l.value end,
            unit = case when excluded.time >= l.time then excluded.unit else l.unit end,
            flag = case when excluded.time >= l.time then excluded.flag else l.flag end,
            time = greatest(excluded.time, l.time),
            valid_received_at = coalesce(excluded.valid_received_at, l.valid_received_at)
        """
    )


def newest_reading_time(conn: psycopg.Connection) -> datetime | None:
    """The time of the newest value stored for any site: how far ingest has got."""
    row = conn.execute("select max(time) from latest_readings").fetchone()
    return row[0] if row else None


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
