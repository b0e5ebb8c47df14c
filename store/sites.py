"""Read queries for the public API: sites, their latest values and their series."""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from domain.errors import NotFound
from domain.pollutants import POLLUTANTS
from domain.readings import flags_from_mask

Row = dict[str, Any]


def _latest_by_site(conn: psycopg.Connection, kind: str) -> dict[str, dict[str, Row]]:
    """{site id: {pollutant: newest value}}; the newest across averaging periods wins."""
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select distinct on (s.id, l.pollutant)
               s.id as site_id, l.pollutant, l.value, l.unit, l.flag, l.time, l.period::text
        from latest_readings l join sites s on s.key = l.site_key
        where s.kind = %s
        order by s.id, l.pollutant, l.time desc, l.period
        """,
            (kind,),
        )
        .fetchall()
    )
    out: dict[str, dict[str, Row]] = defaultdict(dict)
    for r in rows:
        out[r["site_id"]][r["pollutant"]] = {
            "value": r["value"],
            "unit": r["unit"],
            "flag": r["flag"],
            "time": r["time"],
            "period": r["period"],
        }
    return out


def list_stations(conn: psycopg.Connection) -> list[Row]:
    stations = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select id, name, name_zh, district_id as district, lon, lat, zone"
            " from stations order by id"
        )
        .fetchall()
    )
    latest = _latest_by_site(conn, "station")
    return [{**s, "latest": latest.get(s["id"], {})} for s in stations]


def list_enterprises(conn: psycopg.Connection) -> list[Row]:
    enterprises = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select id, name, name_zh, industry, district_id as district, lon, lat"
            " from enterprises order by id"
        )
        .fetchall()
    )
    outlets = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select id, enterprise_id, name, name_zh, kind, reference_o2 from outlets order by id"
        )
        .fetchall()
    )
    limits = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select outlet_id, pollutant, period, value, unit, standard, o2_corrected"
            " from permit_limits order by outlet_id, pollutant, period"
        )
        .fetchall()
    )
    latest = _latest_by_site(conn, "outlet")
    limits_by_outlet: dict[str, list[Row]] = defaultdict(list)
    for lim in limits:
        limits_by_outlet[lim.pop("outlet_id")].append(lim)
    outlets_by_ent: dict[str, list[Row]] = defaultdict(list)
    for o in outlets:
        ent = o.pop("enterprise_id")
        outlets_by_ent[ent].append(
            {**o, "limits": limits_by_outlet.get(o["id"], []), "latest": latest.get(o["id"], {})}
        )
    return [{**e, "outlets": outlets_by_ent.get(e["id"], [])} for e in enterprises]


def list_districts(conn: psycopg.Connection) -> list[Row]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select d.id, d.name, d.name_zh, d.regulator_id as regulator, d.boundary,"
            " r.name as regulator_name, r.name_zh as regulator_name_zh"
            " from districts d join regulators r on r.id = d.regulator_id order by d.id"
        )
        .fetchall()
    )


def get_site(conn: psycopg.Connection, site_id: str) -> Row:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select s.key, s.id, s.kind, coalesce(st.name, o.name) as name,
               array(select d.key from devices d where d.site_id = s.id) as device_keys
        from sites s
        left join stations st on st.id = s.id
        left join outlets o on o.id = s.id
        where s.id = %s
        """,
            (site_id,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no station or outlet with id {site_id!r}")
    return row


def raw_series(
    conn: psycopg.Connection,
    *,
    device_keys: list[int],
    pollutant: str,
    periods: list[str],
    start: datetime,
    end: datetime,
    limit: int,
) -> list[Row]:
    """Readings as reported, oldest first, each with its flag."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(  # binary: times and doubles decoded without parsing text
            """
        select time, value, unit, flag, period::text as period
        from readings
        where device_key = any(%s) and pollutant = %s
          and period = any(%s::averaging_period[]) and time >= %s and time < %s
        order by time, period
        limit %s
        """,
            (device_keys, pollutant, periods, start, end, limit),
            binary=True,
        )
        .fetchall()
    )


def hourly_series(
    conn: psycopg.Connection,
    *,
    device_keys: list[int],
    pollutant: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[Row]:
    """Hourly means of valid (flag N) values with their coverage and the flags seen.

    Where a device sent both samples and minute means for one hour, the minute means win:
    they are what HJ 75 validity is counted in.
    """
    # Tuples, not dict rows: a year is 8,760 points, and building each dict twice shows.
    # Binary: times and doubles decoded without parsing text (a year's fetch 16 ms, not 31).
    cur = conn.cursor(row_factory=tuple_row).execute(
        """
        select distinct on (hour) hour, mean, min, max, mean_all, n, n_valid, unit,
               period::text, flags_mask
        from readings_hourly
        where device_key = any(%s) and pollutant = %s and hour >= %s and hour < %s
        order by hour, (period = 'minute') desc
        limit %s
        """,
        (device_keys, pollutant, start, end, limit),
        binary=True,
    )
    return [
        {
            "time": hour,
            "mean": mean,
            "min": low,
            "max": high,
            "mean_all": mean_all,
            "n": n,
            "n_valid": n_valid,
            "unit": unit,
            "source_period": source_period,
            "flags": list(_flags(mask)),
        }
        for hour, mean, low, high, mean_all, n, n_valid, unit, source_period, mask in cur
    ]


@functools.lru_cache(maxsize=256)
def _flags(mask: int) -> tuple[str, ...]:
    """The flags of a mask (8 bits: at most 256 masks), decoded once each."""
    return tuple(flags_from_mask(mask))


def compliance_status(
    conn: psycopg.Connection, since: datetime, enterprise_id: str | None = None
) -> dict[str, Row]:
    """Per enterprise (or the one given): live exceedance and gap episodes, exceedance hours
    since ``since``, and whether any hour since was judged compliant.

    Each part reads only what it counts, through an index: live episodes (a partial index),
    episodes and exceedances since ``since`` (indexes on their time), and one probe per permit
    limit for a compliant judgement; nothing scans the whole history of judgements or episodes.
    """
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        with outlets_of as (
            select id, enterprise_id from outlets
            where %(ent)s::text is null or enterprise_id = %(ent)s
        ),
        live as (
            select o.enterprise_id,
                   count(*) filter (where ep.kind = 'exceedance') as open_exceedances,
                   count(*) filter (where ep.kind = 'gap') as open_gaps
            from episodes ep join outlets_of o on o.id = ep.site_id
            where ep.status <> 'resolved' group by 1
        ),
        opened as (
            select o.enterprise_id, count(*) as episodes
            from episodes ep join outlets_of o on o.id = ep.site_id
            where ep.opened_at >= %(since)s group by 1
        ),
        exceeded as (
            select o.enterprise_id, count(*) as exceedance_periods
            from judgements j join outlets_of o on o.id = j.site_id
            where j.start >= %(since)s and j.verdict = 'exceedance' group by 1
        ),
        compliant as (
            select distinct o.enterprise_id
            from outlets_of o join permit_limits l on l.outlet_id = o.id
            where exists (select 1 from judgements j
                          where j.site_id = l.outlet_id and j.pollutant = l.pollutant
                            and j.period = l.period and j.start >= %(since)s
                            and j.verdict = 'compliant')
        )
        select e.id,
               coalesce(live.open_exceedances, 0) as open_exceedances,
               coalesce(live.open_gaps, 0) as open_gaps,
               coalesce(exceeded.exceedance_periods, 0) as exceedance_periods,
               coalesce(opened.episodes, 0) as episodes,
               compliant.enterprise_id is not null as judged_compliant
        from enterprises e
        left join live on live.enterprise_id = e.id
        left join opened on opened.enterprise_id = e.id
        left join exceeded on exceeded.enterprise_id = e.id
        left join compliant on compliant.enterprise_id = e.id
        where %(ent)s::text is null or e.id = %(ent)s
        """,
            {"since": since, "ent": enterprise_id},
        )
        .fetchall()
    )
    return {r.pop("id"): r for r in rows}


def stream_readings(
    conn: psycopg.Connection, *, device_keys: list[int], start: datetime, end: datetime
) -> Iterator[tuple[Any, ...]]:
    """Every reading of the devices in [start, end), oldest first, fetched in chunks through a
    server-side cursor so an export of a year never sits in memory."""
    with conn.transaction(), conn.cursor(name="sunlight_export", row_factory=tuple_row) as cur:
        cur.itersize = 5000
        cur.execute(
            """
            select time, pollutant, period::text, value, unit, flag
            from readings
            where device_key = any(%s) and time >= %s and time < %s
            order by time, pollutant, period
            """,
            (device_keys, start, end),
        )
        yield from cur


def district_summary(conn: psycopg.Connection, since: datetime) -> list[Row]:
    """Per district and its office: exceedance hours, open episodes, episodes since ``since``,
    and the median minutes the office took to acknowledge them.

    One grouped pass per measure over what it counts (exceedances and episodes since
    ``since`` through their time indexes, live episodes through their partial index), not one
    correlated scan per district.
    """
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        with site_district as (
            select o.id as site_id, e.district_id from outlets o
            join enterprises e on e.id = o.enterprise_id
            union all
            select id, district_id from stations
        ),
        exceeded as (
            select sd.district_id, count(*) as n
            from judgements j join site_district sd on sd.site_id = j.site_id
            where j.start >= %(since)s and j.period = 'hour' and j.verdict = 'exceedance'
            group by 1
        ),
        live as (
            select sd.district_id, count(*) as n
            from episodes ep join site_district sd on sd.site_id = ep.site_id
            where ep.status <> 'resolved' group by 1
        ),
        opened as (
            select sd.district_id, count(*) as n,
                   percentile_cont(0.5) within group (
                       order by extract(epoch from ep.acknowledged_at - ep.opened_at) / 60)
                       filter (where ep.acknowledged_at is not null) as median_ack
            from episodes ep join site_district sd on sd.site_id = ep.site_id
            where ep.opened_at >= %(since)s group by 1
        )
        select d.id as district, d.name, d.name_zh, d.regulator_id as regulator,
               coalesce(exceeded.n, 0) as exceedance_hours,
               coalesce(live.n, 0) as open_episodes,
               coalesce(opened.n, 0) as episodes,
               opened.median_ack as median_minutes_to_acknowledge
        from districts d
        left join exceeded on exceeded.district_id = d.id
        left join live on live.district_id = d.id
        left join opened on opened.district_id = d.id
        order by d.id
        """,
            {"since": since},
        )
        .fetchall()
    )


def daily_series(
    conn: psycopg.Connection,
    *,
    device_keys: list[int],
    pollutant: str,
    start: datetime,
    end: datetime,
    day_offset_hours: float,
) -> list[Row]:
    """Daily means of valid hours (≥ 45 valid minutes) per local calendar day, with coverage:
    valid hours out of 24 (a day needs 20 to be valid, HJ 75 / GB 3095)."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        with hours as (
            select distinct on (hour) hour, mean, n_valid, flags_mask, unit
            from readings_hourly
            where device_key = any(%(dev)s) and pollutant = %(pol)s and hour >= %(start)s
              and hour < %(end)s
            order by hour, (period = 'minute') desc
        )
        select date_trunc('day', hour + make_interval(secs => %(off)s), 'UTC')
                   - make_interval(secs => %(off)s) as time,
               avg(mean) filter (where n_valid >= 45) as mean,
               count(*) filter (where n_valid >= 45) as valid_hours,
               24 as expected_hours,
               count(*) filter (where n_valid >= 45) >= 20 as valid,
               bit_or(flags_mask) as flags_mask,
               max(unit) as unit
        from hours group by 1 order by 1
        """,
            {
                "dev": device_keys,
                "pol": pollutant,
                "start": start,
                "end": end,
                "off": day_offset_hours * 3600,
            },
        )
        .fetchall()
    )


def enterprise(conn: psycopg.Connection, enterprise_id: str) -> Row:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select e.id, e.name, e.name_zh, e.industry, e.district_id as district, e.lon, e.lat,"
            " d.regulator_id as regulator"
            " from enterprises e join districts d on d.id = e.district_id where e.id = %s",
            (enterprise_id,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no enterprise {enterprise_id!r}")
    return row


POLLUTANT_CODES = sorted(p.code for p in POLLUTANTS)  # every pollutant a judgement can name


def recent_judgements(conn: psycopg.Connection, enterprise_id: str, since: datetime) -> list[Row]:
    """Hourly and daily judgements of the enterprise's outlets since ``since``: the means
    beside their limits, invalid and no-data periods included.

    Series by series (outlet, pollutant of the catalogue, period) through the judgements' key,
    so the page costs the same after years of history: filtering one outlet's judgements by
    time alone would read every judgement it ever had."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select o.id as outlet, j.pollutant, j.period, j.start, j.mean, j.limit_value, j.unit,
               j.verdict, j.valid_count, j.total_count
        from outlets o
        cross join unnest(%s::text[]) as p(pollutant)
        cross join unnest(array['hour', 'day']) as per(period)
        cross join lateral (
            select j.pollutant, j.period, j.start, j.mean, j.limit_value, j.unit, j.verdict,
                   j.valid_count, j.total_count
            from judgements j
            where j.site_id = o.id and j.pollutant = p.pollutant and j.period = per.period
              and j.start >= %s
            offset 0
        ) j
        where o.enterprise_id = %s
        order by o.id, j.pollutant, j.period, j.start
        """,
            (POLLUTANT_CODES, since, enterprise_id),
        )
        .fetchall()
    )


def enterprise_episodes(conn: psycopg.Connection, enterprise_id: str, limit: int = 50) -> list[Row]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select ep.id, ep.kind, ep.site_id as outlet, ep.pollutant, ep.status, ep.severity,
               ep.first_start, ep.last_end, ep.hours, ep.max_mean, ep.limit_value, ep.opened_at,
               ep.acknowledged_at, ep.resolved_at, ep.resolution
        from episodes ep join outlets o on o.id = ep.site_id
        where o.enterprise_id = %s order by ep.id desc limit %s
        """,
            (enterprise_id, limit),
        )
        .fetchall()
    )


def recent_hourly_means(
    conn: psycopg.Connection, since: datetime
) -> dict[str, dict[str, list[Row]]]:
    """{station: {pollutant: [{hour, mean}, …] newest first}} of valid hours (≥ 45 valid
    minutes) since ``since``: what AQI needs (HJ 633's latest hour, EPA NowCast's 12 hours).

    One range probe of the rollup's primary key per station device and pollutant, so the cost
    follows the number of stations, not the length of the history kept.
    """
    # ORDER BY … LIMIT inside the lateral keeps each probe on the index even when the planner
    # would rather scan the whole rollup; 13 hourly buckets cover ``since`` = 12 h back.
    hours = max(1, math.ceil((datetime.now(UTC) - since).total_seconds() / 3600) + 1)
    rows = conn.cursor(row_factory=tuple_row).execute(
        """
        select d.site_id, p.pollutant, h.hours, h.means
        from stations s
        join devices d on d.site_id = s.id
        cross join unnest(array['so2', 'no2', 'co', 'o3', 'pm10', 'pm25']) p(pollutant)
        join lateral (
            select array_agg(hour order by hour desc) as hours,
                   array_agg(mean order by hour desc) as means
            from (
                select hour, mean, n_valid from readings_hourly
                where device_key = d.key and pollutant = p.pollutant and period = 'minute'
                  and hour >= %s
                order by hour desc limit %s
            ) newest
            where n_valid >= 45
        ) h on h.hours is not null
        """,
        (since, hours),
    )
    out: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for site_id, pollutant, hours_of, means in rows:
        # One row per series (a station may have several devices measuring one pollutant).
        series = out[site_id][pollutant]
        series.extend({"hour": h, "mean": m} for h, m in zip(hours_of, means, strict=True))
        if len(series) > len(hours_of):
            series.sort(key=lambda h: h["hour"], reverse=True)
    return out
