"""Reads and writes of the compliance engine: what to judge, the values to judge, verdicts,
watermarks and the re-judge queue."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from store.schema import StorageMode, storage_mode


class Rule(NamedTuple):
    """One limit to judge at one site: a permit limit of an outlet, or a station's GB 3095 limit.

    Immutable like a frozen dataclass, and built several times faster: an hour of a city makes
    tens of thousands (as do ``MinuteCounts`` and ``alerts.judge.Outcome``)."""

    site_id: str
    site_kind: str  # gas | water | station
    pollutant: str
    period: str  # hour | day
    limit: float
    unit: str
    standard: str
    o2_reference: float | None  # set when the permit judges O2-corrected values
    regulator_id: str
    zone: int | None = None


def permit_rules(conn: psycopg.Connection) -> list[Rule]:
    rows = conn.cursor(row_factory=tuple_row).execute(
        """
        select pl.outlet_id, o.kind, pl.pollutant, pl.period, pl.value, pl.unit, pl.standard,
               case when pl.o2_corrected then o.reference_o2 end as o2_reference,
               di.regulator_id
        from permit_limits pl
        join outlets o on o.id = pl.outlet_id
        join enterprises e on e.id = o.enterprise_id
        join districts di on di.id = e.district_id
        order by pl.outlet_id, pl.pollutant, pl.period
        """
    )
    return [Rule(*r) for r in rows]


def stations(conn: psycopg.Connection) -> list[tuple[str, int, str]]:
    """(station id, zone class, regulator id) of every station."""
    cur = conn.cursor(row_factory=tuple_row)
    return cur.execute(
        "select s.id, s.zone, d.regulator_id from stations s"
        " join districts d on d.id = s.district_id order by s.id"
    ).fetchall()


Key = tuple[str, str]  # (site id, pollutant)


class MinuteCounts(NamedTuple):
    """One site's pollutant over one hour, aggregated in SQL: what HJ 75 judging needs of the
    minutes without fetching them. "Valid" is flag N; "valid with O2" also needs the device's
    O2 of the same minute valid (flag N) and correctable (below ``max_o2``)."""

    total: int
    stopped: int  # flag F
    valid: int
    valid_sum: float | None
    valid_with_o2: int
    valid_with_o2_sum: float | None
    o2_sum: float | None  # of the O2 values paired with the valid-with-O2 minutes


# Plain PostgreSQL (one row per device and minute): each value meets its device's O2 in the
# same row. Device by device through the primary key (device, period, time), so an hour costs
# the same whatever the history stored: the key leads with the device, and a scan by time alone
# would read every stored row. Each device's minutes are first grouped whole, by their codes,
# their flags and whether the O2 is correctable, summing the values position by position
# ({sums}: one sum per position an array can have): a device's hour is a handful of such groups
# (mostly every flag N), so no value is unnested and no aggregate filtered per value. The outer
# query then reads each wanted pollutant's flag and sum off its position in the group.
_MINUTE_COUNTS_WIDE = """
    select d.site_id, c.pollutant, sum(g.n)::integer,
           coalesce(sum(g.n) filter (where x.flag = 'F'), 0)::integer,
           coalesce(sum(g.n) filter (where x.flag = 'N'), 0)::integer,
           sum(x.value_sum) filter (where x.flag = 'N'),
           coalesce(sum(g.n) filter (where x.flag = 'N' and x.o2_ok), 0)::integer,
           sum(x.value_sum) filter (where x.flag = 'N' and x.o2_ok),
           sum(x.o2_sum) filter (where x.flag = 'N' and x.o2_ok),
           bool_or(cardinality(g.codes) > %(positions)s)
    from devices d
    cross join lateral (
        select r.codes, r.flags,
               coalesce(r.vals[array_position(r.codes, %(o2_code)s::smallint)] < %(max_o2)s, false)
                   as o2_low,
               count(*) as n, array[{sums}] as sums
        from reading_rows r
        where r.device_key = d.key and r.period = 'minute'
          and r.time >= %(start)s and r.time < %(end)s
        group by 1, 2, 3
    ) g
    cross join lateral (select array_position(g.codes, %(o2_code)s::smallint) as i) o2
    cross join lateral unnest(g.codes) with ordinality as u(code, i)
    cross join lateral (
        select substr(g.flags, u.i::integer, 1) as flag, g.sums[u.i] as value_sum,
               coalesce(substr(g.flags, o2.i, 1) = 'N' and g.o2_low, false) as o2_ok,
               g.sums[o2.i] as o2_sum
    ) x
    join reading_codes c on c.id = u.code
    where u.code = any(%(codes)s::smallint[])
    group by d.site_id, c.pollutant
"""

# TimescaleDB (one row per value): each value meets its device's O2 of the same minute by a
# hash join over the hour's chunk.
_MINUTE_COUNTS_NARROW = """
    with m as (
        select device_key, time, pollutant, value, flag
        from readings
        where period = 'minute' and time >= %(start)s and time < %(end)s
          and pollutant = any(%(pollutants)s)
    ), o2 as (
        select device_key, time, value, flag
        from readings
        where period = 'minute' and time >= %(start)s and time < %(end)s and pollutant = 'o2'
    ), paired as (
        select m.device_key, m.pollutant, m.value, m.flag, o2.value as o2,
               m.flag = 'N' and o2.flag = 'N' and o2.value < %(max_o2)s as with_o2
        from m left join o2 on o2.device_key = m.device_key and o2.time = m.time
    )
    select d.site_id, m.pollutant, count(*), count(*) filter (where m.flag = 'F'),
           count(*) filter (where m.flag = 'N'), sum(m.value) filter (where m.flag = 'N'),
           count(*) filter (where m.with_o2), sum(m.value) filter (where m.with_o2),
           sum(m.o2) filter (where m.with_o2)
    from paired m join devices d on d.key = m.device_key
    group by d.site_id, m.pollutant
"""


def minute_counts(
    conn: psycopg.Connection,
    pollutants: list[str],
    start: datetime,
    end: datetime,
    max_o2: float,
) -> dict[Key, MinuteCounts]:
    """Per site and pollutant, the counts and sums of its minutes in [start, end): one query
    and a row per site and pollutant, instead of every minute brought to Python."""
    cur = conn.cursor(row_factory=tuple_row)
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "pollutants": pollutants,
        "max_o2": max_o2,
    }
    if storage_mode(conn) is StorageMode.POSTGRES:
        codes = cur.execute("select id, pollutant from reading_codes").fetchall()
        if not codes:
            return {}  # no reading stored yet: every row's codes are reading_codes
        o2_codes = [i for i, pol in codes if pol == "o2"]
        if len(o2_codes) <= 1:  # O2 has one unit (%); otherwise pair them as the view does
            # A row holds each code at most once, so at most as many values as there are codes;
            # the last column says whether any row held more (then the general query below).
            positions = len(codes)
            params["positions"] = positions
            params["codes"] = [i for i, pol in codes if pol in pollutants]
            params["o2_code"] = o2_codes[0] if o2_codes else None
            sums = sql.SQL(", ").join(
                sql.SQL("sum(r.vals[{}])").format(sql.Literal(p)) for p in range(1, positions + 1)
            )
            # Per-device plans: JIT compiling costs more than it saves here, and caching
            # per-device results by row (memoize) never hits. The groups of every site and
            # pollutant (a few tens of thousands) are added up in memory, not on disk.
            cur.execute(
                "select set_config('jit', 'off', true), set_config('enable_memoize', 'off', true),"
                " set_config('work_mem', '64MB', true)"
            )
            wide = cur.execute(sql.SQL(_MINUTE_COUNTS_WIDE).format(sums=sums), params).fetchall()
            if not any(row[-1] for row in wide):
                return {(site, pol): MinuteCounts(*figures) for site, pol, *figures, _ in wide}
    rows = cur.execute(_MINUTE_COUNTS_NARROW, params)
    return {(site, pol): MinuteCounts(*figures) for site, pol, *figures in rows}


def reported_values(
    conn: psycopg.Connection, period: str, start: datetime, end: datetime
) -> dict[Key, list[tuple[datetime, float, str]]]:
    """Values devices reported as ``period`` means (HJ 212 CN 2061/2031), per site and pollutant.

    Device by device through the readings' key (offset 0 keeps the subquery per device): a
    filter on period and time alone would scan the whole history to find an hour's rows."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        """
        select d.site_id, r.pollutant, r.time, r.value, r.flag
        from devices d
        cross join lateral (
            select r.pollutant, r.time, r.value, r.flag from readings r
            where r.device_key = d.key and r.period = %s::averaging_period
              and r.time >= %s and r.time < %s
            offset 0
        ) r
        order by 1, 2, 3
        """,
        (period, start, end),
    )
    out: dict[Key, list[tuple[datetime, float, str]]] = defaultdict(list)
    for site, pol, time, value, flag in rows:
        out[(site, pol)].append((time, value, flag))
    return out


def hourly_rollups(
    conn: psycopg.Connection, pollutants: list[str], start: datetime, end: datetime
) -> dict[Key, list[tuple[datetime, float | None, int, int]]]:
    """(hour, mean of valid minutes, valid minutes, flags mask) per site and pollutant.

    Series by series (device and pollutant) through the rollup's key, so a day costs the same
    whatever the history stored."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        """
        select d.site_id, h.pollutant, h.hour, h.mean, h.n_valid, h.flags_mask
        from devices d
        cross join unnest(%s::text[]) as p(pollutant)
        cross join lateral (
            select h.pollutant, h.hour, h.mean, h.n_valid, h.flags_mask from readings_hourly h
            where h.device_key = d.key and h.pollutant = p.pollutant and h.period = 'minute'
              and h.hour >= %s and h.hour < %s
            offset 0
        ) h
        order by 1, 2, 3
        """,
        (pollutants, start, end),
    )
    out: dict[Key, list[tuple[datetime, float | None, int, int]]] = defaultdict(list)
    for site, pol, hour, mean, n_valid, mask in rows:
        out[(site, pol)].append((hour, mean, n_valid, mask))
    return out


JUDGEMENT_COLUMNS = (
    "site_id",
    "pollutant",
    "period",
    "start",
    "limit_value",
    "unit",
    "standard",
    "o2_reference",
    "mean",
    "measured_mean",
    "o2_mean",
    "valid_count",
    "total_count",
    "verdict",
)


# Binary COPY of the columns above: no text formatting and parsing of 40,000 rows an hour.
_JUDGEMENT_TYPES = [
    *("text", "text", "text", "timestamptz", "float8", "text", "text"),
    *("float8", "float8", "float8", "float8", "int4", "int4", "text"),
]


def record_judgements(
    conn: psycopg.Connection, rows: list[tuple[Any, ...]]
) -> dict[tuple[str, str, str], str]:
    """Record judgements (tuples in ``JUDGEMENT_COLUMNS`` order), replacing earlier ones of the
    same site, pollutant, period and start; returns the verdicts replaced, by (site, pollutant,
    period). COPY and one upsert: a few round trips per hour instead of two per rule."""
    if not rows:
        return {}
    # The staging table empties at commit: in autocommit mode this block is the transaction.
    with conn.transaction():
        conn.execute(
            "create temp table if not exists judgements_in"
            " (like judgements including defaults) on commit delete rows"
        )
        conn.execute("delete from judgements_in")  # an earlier call in the same transaction
        cur = conn.cursor(row_factory=tuple_row)
        with cur.copy(
            "copy judgements_in (site_id, pollutant, period, start, limit_value, unit, standard,"
            " o2_reference, mean, measured_mean, o2_mean, valid_count, total_count, verdict)"
            " from stdin (format binary)"
        ) as copy:
            copy.set_types(_JUDGEMENT_TYPES)
            for row in rows:
                copy.write_row(row)
        # Lock the rows to replace first, as a concurrent judge of the same hour would: the
        # verdicts read are then the latest committed ones.
        replaced = cur.execute(
            "select j.site_id, j.pollutant, j.period, j.verdict from judgements j"
            " join judgements_in i using (site_id, pollutant, period, start) for update of j"
        ).fetchall()
        cur.execute(
            """
            insert into judgements (site_id, pollutant, period, start, limit_value, unit, standard,
                o2_reference, mean, measured_mean, o2_mean, valid_count, total_count, verdict)
            select site_id, pollutant, period, start, limit_value, unit, standard, o2_reference,
                   mean, measured_mean, o2_mean, valid_count, total_count, verdict
            from judgements_in
            on conflict (site_id, pollutant, period, start) do update set
                limit_value = excluded.limit_value, unit = excluded.unit,
                standard = excluded.standard, o2_reference = excluded.o2_reference,
                mean = excluded.mean, measured_mean = excluded.measured_mean,
                o2_mean = excluded.o2_mean, valid_count = excluded.valid_count,
                total_count = excluded.total_count, verdict = excluded.verdict, judged_at = now()
            """
        )
    return {(site, pol, period): verdict for site, pol, period, verdict in replaced}


def done_through(conn: psycopg.Connection, job: str) -> datetime | None:
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute("select done_through from job_state where job = %s for update", (job,))
        .fetchone()
    )
    return row[0] if row else None


def set_done_through(conn: psycopg.Connection, job: str, through: datetime) -> None:
    conn.execute(
        "insert into job_state (job, done_through) values (%s, %s)"
        " on conflict (job) do update set done_through = excluded.done_through, updated_at = now()",
        (job, through),
    )


def forget_rejudging(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    """Drop the queued hours in [start, end) about to be judged for the first time.

    Their readings came in before the judgement (an hour's last minutes arrive just after it
    ends, so nearly every site queues the hour it just finished): judging it once covers them.
    Run before the judgement reads anything, in its transaction, so a reading committed later
    queues its hour again and is judged again."""
    conn.execute("delete from rejudge_queue where hour >= %s and hour < %s", (start, end))


def queued_rejudge_span(
    conn: psycopg.Connection, through: datetime
) -> tuple[datetime, datetime] | None:
    """The first and last queued hour before ``through``: what a re-judge run will read."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute("select min(hour), max(hour) from rejudge_queue where hour < %s", (through,))
        .fetchone()
    )
    return (row[0], row[1]) if row and row[0] is not None else None


def materialise_hourly(url: str, start: datetime, end: datetime) -> None:
    """On TimescaleDB, bring the continuous aggregate up to date for [start, end) now.

    Its policy revisits changed hours only every ten minutes, and a day judged again because of
    late readings must see them. Needs a connection outside any transaction (TimescaleDB
    refuses otherwise); plain PostgreSQL writes its rollup with the readings."""
    with psycopg.connect(url, autocommit=True) as conn:
        if storage_mode(conn) is StorageMode.TIMESCALEDB:
            conn.execute(
                "call refresh_continuous_aggregate('readings_hourly', %s, %s)", (start, end)
            )


def take_rejudge_hours(
    conn: psycopg.Connection, through: datetime, limit: int = 500
) -> list[datetime]:
    """Distinct hours (already judged) whose readings changed since; removed from the queue."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        delete from rejudge_queue where (site_key, hour) in (
            select site_key, hour from rejudge_queue where hour < %s
            order by hour limit %s for update skip locked)
        returning hour
        """,
            (through, limit),
        )
        .fetchall()
    )
    return sorted({r[0] for r in rows})


def silenced(conn: psycopg.Connection, start: datetime, end: datetime) -> set[str]:
    """Sites under a silence (planned shutdown registered in advance) overlapping [start, end)."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        "select distinct site_id from silences where starts_at < %s and ends_at > %s", (end, start)
    )
    return {r[0] for r in rows}


def last_valid_times(
    conn: psycopg.Connection,
) -> list[tuple[str, str, str, datetime | None, datetime | None]]:
    """Per monitored outlet: (site, regulator, kind, last valid value received, newest value)."""
    return (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        select o.id, di.regulator_id, o.kind, max(l.valid_received_at), max(l.time)
        from outlets o
        join enterprises e on e.id = o.enterprise_id
        join districts di on di.id = e.district_id
        join sites s on s.id = o.id
        left join latest_readings l on l.site_key = s.key
        where exists (select 1 from devices d where d.site_id = o.id)
        group by o.id, di.regulator_id, o.kind
        order by o.id
        """
        )
        .fetchall()
    )
