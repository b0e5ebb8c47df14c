"""Reads and writes of the compliance engine: what to judge, the values to judge, verdicts,
watermarks and the re-judge queue."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit to judge at one site: a permit limit of an outlet, or a station's GB 3095 limit."""

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
    rows = conn.cursor(row_factory=dict_row).execute(
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
    return [
        Rule(
            r["outlet_id"],
            r["kind"],
            r["pollutant"],
            r["period"],
            r["value"],
            r["unit"],
            r["standard"],
            r["o2_reference"],
            r["regulator_id"],
        )
        for r in rows
    ]


def stations(conn: psycopg.Connection) -> list[tuple[str, int, str]]:
    """(station id, zone class, regulator id) of every station."""
    cur = conn.cursor(row_factory=tuple_row)
    return cur.execute(
        "select s.id, s.zone, d.regulator_id from stations s"
        " join districts d on d.id = s.district_id order by s.id"
    ).fetchall()


Key = tuple[str, str]  # (site id, pollutant)


def minute_values(
    conn: psycopg.Connection, pollutants: list[str], start: datetime, end: datetime
) -> dict[Key, list[tuple[float, str, float | None, str | None]]]:
    """Minute values of each site and pollutant in [start, end), each with the O2 (value, flag)
    its device measured in the same minute, if any."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        """
        select d.site_id, r.pollutant, r.value, r.flag, o2.value, o2.flag
        from readings r
        join devices d on d.key = r.device_key
        left join readings o2
               on o2.device_key = r.device_key and o2.pollutant = 'o2'
              and o2.period = 'minute' and o2.time = r.time
        where r.period = 'minute' and r.pollutant = any(%s)
          and r.time >= %s and r.time < %s
        order by d.site_id, r.pollutant, r.time
        """,
        (pollutants, start, end),
    )
    out: dict[Key, list[tuple[float, str, float | None, str | None]]] = defaultdict(list)
    for site, pol, value, flag, o2, o2_flag in rows:
        out[(site, pol)].append((value, flag, o2, o2_flag))
    return out


def reported_values(
    conn: psycopg.Connection, period: str, start: datetime, end: datetime
) -> dict[Key, list[tuple[datetime, float, str]]]:
    """Values devices reported as ``period`` means (HJ 212 CN 2061/2031), per site and pollutant."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        """
        select d.site_id, r.pollutant, r.time, r.value, r.flag
        from readings r join devices d on d.key = r.device_key
        where r.period = %s::averaging_period and r.time >= %s and r.time < %s
        order by 1, 2, 3
        """,
        (period, start, end),
    )
    out: dict[Key, list[tuple[datetime, float, str]]] = defaultdict(list)
    for site, pol, time, value, flag in rows:
        out[(site, pol)].append((time, value, flag))
    return out


def hourly_rollups(
    conn: psycopg.Connection, start: datetime, end: datetime
) -> dict[Key, list[tuple[datetime, float | None, int, int]]]:
    """(hour, mean of valid minutes, valid minutes, flags mask) per site and pollutant."""
    rows = conn.cursor(row_factory=tuple_row).execute(
        """
        select d.site_id, h.pollutant, h.hour, h.mean, h.n_valid, h.flags_mask
        from readings_hourly h join devices d on d.key = h.device_key
        where h.period = 'minute' and h.hour >= %s and h.hour < %s
        order by 1, 2, 3
        """,
        (start, end),
    )
    out: dict[Key, list[tuple[datetime, float | None, int, int]]] = defaultdict(list)
    for site, pol, hour, mean, n_valid, mask in rows:
        out[(site, pol)].append((hour, mean, n_valid, mask))
    return out


def upsert_judgement(conn: psycopg.Connection, row: dict[str, Any]) -> str | None:
    """Record a judgement; returns the verdict it replaced (None when it is the first)."""
    cur = conn.cursor(row_factory=tuple_row)
    previous = cur.execute(
        "select verdict from judgements where site_id = %(site_id)s and pollutant = %(pollutant)s"
        " and period = %(period)s and start = %(start)s for update",
        row,
    ).fetchone()
    cur.execute(
        """
        insert into judgements (site_id, pollutant, period, start, limit_value, unit, standard,
            o2_reference, mean, measured_mean, o2_mean, valid_count, total_count, verdict)
        values (%(site_id)s, %(pollutant)s, %(period)s, %(start)s, %(limit_value)s, %(unit)s,
            %(standard)s, %(o2_reference)s, %(mean)s, %(measured_mean)s, %(o2_mean)s,
            %(valid_count)s, %(total_count)s, %(verdict)s)
        on conflict (site_id, pollutant, period, start) do update set
            limit_value = excluded.limit_value, unit = excluded.unit,
            standard = excluded.standard, o2_reference = excluded.o2_reference,
            mean = excluded.mean, measured_mean = excluded.measured_mean,
            o2_mean = excluded.o2_mean, valid_count = excluded.valid_count,
            total_count = excluded.total_count, verdict = excluded.verdict, judged_at = now()
        """,
        row,
    )
    return previous[0] if previous else None


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
