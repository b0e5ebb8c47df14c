"""Public, read-only site resources: stations, enterprises, districts and reading series."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.cache import Body, json_body, respond, reused
from api.deps import ConnDep, SettingsDep
from api.downloads import attachment, enterprises_csv, stations_csv
from api.geojson import (
    LICENSE,
    NOTICE,
    feature_collection,
    iso,
    jsonable,
    meta,
    point_feature,
    utc_times,
)
from api.queries import Page, SiteFilter, page_params, site_filter
from domain.aqi import AQIResult, compute, nowcast
from domain.errors import ValidationError
from domain.offsets import parse_utc_offset
from domain.pollutants import get_pollutant
from domain.readings import flags_from_mask
from store import sites

router = APIRouter(prefix="/api/v1", tags=["public"])

MAX_RAW_SPAN = timedelta(days=31)
MAX_HOURLY_SPAN = timedelta(days=400)


class Interval(StrEnum):
    raw = "raw"
    hour = "hour"
    day = "day"


class SeriesFormat(StrEnum):
    objects = "objects"
    columns = "columns"


# What each point of a series carries, in order (store.sites' rows, shaped below).
SERIES_FIELDS: dict[Interval, tuple[str, ...]] = {
    Interval.raw: ("time", "value", "unit", "flag", "period"),
    Interval.hour: (
        "time",
        "mean",
        "min",
        "max",
        "mean_all",
        "n",
        "n_valid",
        "unit",
        "source_period",
        "flags",
        "expected",
    ),
    Interval.day: ("time", "mean", "valid_hours", "expected_hours", "valid", "flags", "unit"),
}


def _series_fields(interval: Interval, fields: str | None) -> tuple[str, ...]:
    """The fields asked for, in the series' own order, ``time`` first; unknown names are the
    client's error, named."""
    known = SERIES_FIELDS[interval]
    if fields is None:
        return known
    asked = {f.strip() for f in fields.split(",") if f.strip()}
    unknown = sorted(asked - set(known))
    if unknown:
        raise ValidationError(
            f"fields: {', '.join(unknown)} not in a {interval.value} series"
            f" (one of {', '.join(known)})"
        )
    return tuple(f for f in known if f == "time" or f in asked)


@router.get(
    "/stations",
    summary="Ambient air stations with their latest values (GeoJSON)",
    response_description="A GeoJSON FeatureCollection of Point features.",
)
async def list_stations(
    request: Request,
    where: Annotated[SiteFilter, Depends(site_filter)],
    paging: Annotated[Page, Depends(page_params)],
) -> Any:
    def build() -> Body:
        rows = [r for r in all_station_rows(request) if where.keep(r)]
        features = [point_feature(r, kind="station") for r in paging.slice(rows)]
        links = paging.links(request.url.path, request.url.query, len(rows))
        return json_body(
            feature_collection(
                features, found=len(rows), page=paging.page, limit=paging.limit, **links
            )
        )

    if paging.format == "csv":
        rows = await run_in_threadpool(all_station_rows, request)
        return stations_csv(paging.slice([r for r in rows if where.keep(r)]))
    return await respond(request, build)


@router.get(
    "/enterprises",
    summary="Regulated enterprises, their outlets, permit limits and latest values (GeoJSON)",
    response_description="A GeoJSON FeatureCollection of Point features.",
)
async def list_enterprises(
    request: Request,
    where: Annotated[SiteFilter, Depends(site_filter)],
    paging: Annotated[Page, Depends(page_params)],
) -> Any:
    def build() -> Body:
        rows = [r for r in all_enterprise_rows(request) if where.keep(r)]
        features = [point_feature(r, kind="enterprise") for r in paging.slice(rows)]
        links = paging.links(request.url.path, request.url.query, len(rows))
        return json_body(
            feature_collection(
                features, found=len(rows), page=paging.page, limit=paging.limit, **links
            )
        )

    if paging.format == "csv":
        rows = await run_in_threadpool(all_enterprise_rows, request)
        return enterprises_csv(paging.slice([r for r in rows if where.keep(r)]))
    return await respond(request, build)


ALL_SITES = SiteFilter(None, None, None, None, None)


def all_station_rows(request: Request) -> list[dict[str, Any]]:
    """Every station with its latest values and AQI, shared by the list, the map and the
    district summary, reused for ``api_cache_seconds``. Callers must not change the rows."""
    rows: list[dict[str, Any]] = reused(request, "rows:stations", station_rows)
    return rows


def all_enterprise_rows(request: Request) -> list[dict[str, Any]]:
    """Every enterprise with outlets, limits, latest values and compliance, reused likewise."""
    rows: list[dict[str, Any]] = reused(request, "rows:enterprises", enterprise_rows)
    return rows


def station_rows(conn: ConnDep, where: SiteFilter = ALL_SITES) -> list[dict[str, Any]]:
    """Stations passing ``where``, each with its latest values and HJ 633 hourly AQI."""
    rows = [r for r in sites.list_stations(conn) if where.keep(r)]
    now = datetime.now(UTC)
    recent = sites.recent_hourly_means(conn, now - timedelta(hours=12))
    latest_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for r in rows:
        hours = recent.get(r["id"], {})
        newest = {p: h[0] for p, h in hours.items() if h[0]["hour"] >= now - timedelta(hours=3)}
        r["aqi"] = station_aqi(newest)
        r["aqi_us"] = station_aqi_us(hours, latest_hour)
    return rows


def enterprise_rows(conn: ConnDep, where: SiteFilter = ALL_SITES) -> list[dict[str, Any]]:
    """Enterprises passing ``where``, each with outlets, limits, latest values and compliance."""
    rows = [r for r in sites.list_enterprises(conn) if where.keep(r)]
    status = sites.compliance_status(conn, datetime.now(UTC) - timedelta(days=30))
    for r in rows:
        r["compliance"] = compliance_of(status.get(r["id"]))
    return rows


@router.get(
    "/enterprises/{enterprise_id}",
    summary="An enterprise: outlets, permit limits, latest values, recent judgements, episodes",
)
def enterprise_detail(
    request: Request,
    conn: ConnDep,
    enterprise_id: Annotated[str, Path(description="Enterprise id.", max_length=64)],
    days: Annotated[int, Query(ge=1, le=31, description="Days of judgements.")] = 7,
) -> dict[str, Any]:
    row = sites.enterprise(conn, enterprise_id)
    full = next((r for r in all_enterprise_rows(request) if r["id"] == enterprise_id), None)
    if full is None:  # registered since the shared rows were built
        full = next(r for r in sites.list_enterprises(conn) if r["id"] == enterprise_id)
    status = sites.compliance_status(conn, datetime.now(UTC) - timedelta(days=30), enterprise_id)
    detail: dict[str, Any] = jsonable(
        {
            **row,
            "outlets": full["outlets"],
            "compliance": compliance_of(status.get(enterprise_id)),
            "judgements": sites.recent_judgements(
                conn, enterprise_id, datetime.now(UTC) - timedelta(days=days)
            ),
            "episodes": sites.enterprise_episodes(conn, enterprise_id),
            "meta": meta(),
        }
    )
    return detail


def compliance_of(row: dict[str, Any] | None) -> dict[str, Any]:
    """exceeding (a live exceedance episode) > monitoring_gap > compliant > no_data."""
    row = row or {}
    if row.get("open_exceedances"):
        status = "exceeding"
    elif row.get("open_gaps"):
        status = "monitoring_gap"
    elif row.get("judged_compliant"):
        status = "compliant"
    else:
        status = "no_data"
    return {
        "status": status,
        "open_episodes": int(row.get("open_exceedances", 0)) + int(row.get("open_gaps", 0)),
        "episodes_30d": int(row.get("episodes", 0)),
        "exceedance_periods_30d": int(row.get("exceedance_periods", 0)),
    }


def station_aqi(means: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """HJ 633 hourly AQI of a station's newest valid hourly means (None without any)."""
    if not means:
        return None
    key = tuple(sorted((pol, round(m["mean"], 3), m["hour"]) for pol, m in means.items()))
    return _station_aqi(key)


# The AQI is computed in exact arithmetic (domain.aqi), a few milliseconds per station: for
# thousands of stations, rebuilding the list would spend seconds recomputing AQIs of inputs
# that have not changed since the last build (completed hours change once an hour). Results
# are immutable in use (callers copy them into new JSON), so they are memoised by input.
@functools.lru_cache(maxsize=32_768)
def _station_aqi(key: tuple[tuple[str, float, datetime], ...]) -> dict[str, Any] | None:
    values = {(pol, "1h"): Decimal(str(mean)) for pol, mean, _ in key}
    result = hj633_hourly(values)
    if result.aqi is None:
        return None
    return {
        "standard": "HJ 633-2012",
        "aqi": result.aqi,
        "category": result.category.name_en if result.category else None,
        "category_zh": result.category.name_zh if result.category else None,
        "colour": result.category.colour if result.category else None,
        "primary": list(result.primary_pollutants),
        "hour": max(hour for _, _, hour in key),
    }


def station_aqi_us(
    hours: dict[str, list[dict[str, Any]]], latest: datetime
) -> dict[str, Any] | None:
    """US EPA AQI from hourly means: NowCast for PM (12 h), 8 h O3 and CO (≥ 6 of the 8 h),
    1 h O3/NO2/SO2 (1 h O3 counts from 0.125 ppm, where it may exceed the 8 h index)."""

    back = _hours_back(latest)

    def by_hour(pol: str, count: int) -> tuple[float | None, ...]:
        found = {h["hour"]: h["mean"] for h in hours.get(pol, [])}
        return tuple(found.get(hour) for hour in back[:count])

    return _station_aqi_us(
        latest,
        by_hour("pm25", 12),
        by_hour("pm10", 12),
        tuple(by_hour(pol, 1)[0] for pol in ("o3", "no2", "so2")),
        by_hour("o3", 8),
        by_hour("co", 8),
    )


@functools.lru_cache(maxsize=4)
def _hours_back(latest: datetime) -> tuple[datetime, ...]:
    """``latest`` and the 11 hours before it, newest first: the same for every station of a
    build, worked out once instead of 34 times per station."""
    return tuple(latest - timedelta(hours=i) for i in range(12))


@functools.lru_cache(maxsize=32_768)
def _station_aqi_us(  # noqa: PLR0917 - memoised on its hashable positional inputs
    latest: datetime,
    pm25: tuple[float | None, ...],
    pm10: tuple[float | None, ...],
    last_o3_no2_so2: tuple[float | None, ...],
    o3_8h: tuple[float | None, ...],
    co_8h: tuple[float | None, ...],
) -> dict[str, Any] | None:
    values: dict[tuple[str, str], Any] = {}
    for pol, series in (("pm25", pm25), ("pm10", pm10)):
        value = nowcast(list(series), pol)
        if value is not None:
            values[(pol, "nowcast")] = value
    # Six decimals of µg/m³ (mg/m³ for CO): converted to ppb/ppm they stay far inside the
    # rounding the index applies to undo conversion noise (domain.aqi.epa).
    for pol, last in zip(("o3", "no2", "so2"), last_o3_no2_so2, strict=True):
        if last is not None:
            values[(pol, "1h")] = Decimal(str(round(last, 6)))
    for pol, eight in (("o3", o3_8h), ("co", co_8h)):
        present = [v for v in eight if v is not None]
        if len(present) >= 6:  # EPA's completeness for an 8-hour average
            values[(pol, "8h")] = Decimal(str(round(sum(present) / len(present), 6)))
    if not values:
        return None
    result = compute("us-epa", values, ambient_units=True)
    if result.aqi is None or result.category is None:
        return None
    return {
        "standard": "US EPA (2024)",
        "aqi": result.aqi,
        "category": result.category.name_en,
        "colour": result.category.colour,
        "primary": list(result.primary_pollutants),
        "hour": latest,
    }


def hj633_hourly(values: dict[tuple[str, str], Decimal]) -> AQIResult:
    return compute("hj633", values, report="hourly")


@router.get("/districts", summary="Districts and the regulator in charge of each (GeoJSON)")
def list_districts(conn: ConnDep) -> dict[str, Any]:
    rows = sites.list_districts(conn)
    features = [
        {
            "type": "Feature",
            "id": r["id"],
            "geometry": r["boundary"],
            "properties": {k: v for k, v in r.items() if k != "boundary"},
        }
        for r in rows
    ]
    return feature_collection(features, found=len(rows))


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{name}: not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{name}: give a time zone (e.g. 'Z' for UTC): {value!r}")
    return parsed.astimezone(UTC)


@router.get(
    "/sites/{site_id}/readings.csv",
    summary="Export every reading of a station or outlet in a time range, as streamed CSV",
    response_class=StreamingResponse,
)
def export_readings(
    *,
    request: Request,
    conn: ConnDep,
    site_id: Annotated[str, Path(description="Station or outlet id.", max_length=64)],
    start: Annotated[str, Query(description="Start (inclusive), ISO 8601 with time zone.")],
    end: Annotated[str, Query(description="End (exclusive), ISO 8601 with time zone.")],
) -> StreamingResponse:
    start_t, end_t = _parse_time(start, "start"), _parse_time(end, "end")
    assert start_t is not None
    assert end_t is not None
    if not start_t < end_t <= start_t + timedelta(days=366):
        raise ValidationError("start must be before end, at most 366 days apart")
    site = sites.get_site(conn, site_id)

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        buf.write(f"# {NOTICE} Licence: {LICENSE}.\n")
        writer.writerow(["time", "site", "pollutant", "period", "value", "unit", "flag"])
        # Its own pooled connection: the stream outlives the request handler.
        with request.app.state.pool.connection() as stream_conn:
            for time, pollutant, period, value, unit, flag in sites.stream_readings(
                stream_conn, device_keys=site["device_keys"], start=start_t, end=end_t
            ):
                writer.writerow([iso(time), site_id, pollutant, period, value, unit, flag])
                if buf.tell() > 64_000:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
        yield buf.getvalue()

    filename = f"sunlight-{site_id}-{start_t:%Y%m%d}-{end_t:%Y%m%d}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(filename)},
    )


@router.get(
    "/districts/summary",
    summary="Per district: exceedance hours, open episodes and how fast its office acknowledges",
)
def districts_summary(
    request: Request,
    conn: ConnDep,
    days: Annotated[int, Query(ge=1, le=366, description="Period, in days back from now.")] = 30,
) -> dict[str, Any]:
    rows = sites.district_summary(conn, datetime.now(UTC) - timedelta(days=days))
    aqis: dict[str, list[int]] = {}
    for station in all_station_rows(request):
        if station["aqi"] is not None:
            aqis.setdefault(station["district"], []).append(station["aqi"]["aqi"])
    for row in rows:
        values = aqis.get(row["district"], [])
        # The district's worst station now: what a resident of the district breathes at worst.
        row["aqi_max"] = max(values) if values else None
        row["aqi_mean"] = round(sum(values) / len(values)) if values else None
        row["stations_reporting"] = len(values)
    return {"meta": meta(found=len(rows), days=days), "results": jsonable(rows)}


@router.get(
    "/sites/{site_id}/readings",
    summary="A station's or outlet's readings of one pollutant, raw or as hourly means",
    response_model=dict[str, Any],
)
async def site_readings(
    *,
    request: Request,
    settings: SettingsDep,
    site_id: Annotated[
        str,
        Path(description="Station or outlet id.", examples=["st-riverside"], max_length=64),
    ],
    pollutant: Annotated[
        str,
        Query(
            description="Pollutant code, e.g. so2, no2, pm25, cod.", examples=["so2"], max_length=32
        ),
    ],
    start: Annotated[
        str | None,
        Query(
            description="Start (inclusive), ISO 8601 with time zone. Default: end minus 24 h "
            "(raw) or 7 days (hour).",
            examples=["2026-11-22T00:00:00Z"],
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description="End (exclusive), ISO 8601 with time zone. Default: now.",
            examples=["2026-11-23T00:00:00Z"],
        ),
    ] = None,
    interval: Annotated[
        Interval,
        Query(
            description="'raw': values as reported; 'hour': hourly means of valid (flag N) "
            "minutes with coverage (n_valid of 60); 'day': daily means of valid hours per local "
            "calendar day with coverage (valid_hours of 24)."
        ),
    ] = Interval.raw,
    limit: Annotated[int, Query(ge=1, le=50_000, description="Most points returned.")] = 10_000,
    format: Annotated[
        SeriesFormat,
        Query(
            description="'objects' (default): `data` is a list of points, one object each. "
            "'columns': `columns` maps each field to an array, one entry per point in time "
            "order (`columns.time[i]` is the time of `columns.mean[i]`): the same values in "
            "under 60 % of the bytes, for charts and long series."
        ),
    ] = SeriesFormat.objects,
    fields: Annotated[
        str | None,
        Query(
            description="Comma-separated fields each point carries (`time` always does); "
            "default: all. raw: " + ", ".join(SERIES_FIELDS[Interval.raw]) + "; hour: "
            "" + ", ".join(SERIES_FIELDS[Interval.hour]) + "; day: "
            "" + ", ".join(SERIES_FIELDS[Interval.day]) + ".",
            examples=["mean,n_valid"],
            max_length=200,
        ),
    ] = None,
) -> Response:
    code = get_pollutant(pollutant).code
    chosen = _series_fields(interval, fields)
    end_t = _parse_time(end, "end") or datetime.now(UTC)
    default_span = {
        Interval.raw: timedelta(days=1),
        Interval.hour: timedelta(days=7),
        Interval.day: timedelta(days=90),
    }[interval]
    start_t = _parse_time(start, "start") or end_t - default_span
    if start_t >= end_t:
        raise ValidationError("start must be before end")
    span_limit = MAX_RAW_SPAN if interval is Interval.raw else MAX_HOURLY_SPAN
    if end_t - start_t > span_limit:
        raise ValidationError(
            f"a {interval.value} query spans at most {span_limit.days} days; narrow start/end"
        )

    def build() -> Body:
        with request.app.state.pool.connection() as conn:
            site = sites.get_site(conn, site_id)
            if interval is Interval.raw:
                data = sites.raw_series(
                    conn,
                    device_keys=site["device_keys"],
                    pollutant=code,
                    periods=["sample", "minute", "hour", "day"],
                    start=start_t,
                    end=end_t,
                    limit=limit,
                )
            elif interval is Interval.hour:
                data = sites.hourly_series(
                    conn,
                    device_keys=site["device_keys"],
                    pollutant=code,
                    start=start_t,
                    end=end_t,
                    limit=limit,
                )
                for row in data:
                    row["expected"] = 60
            else:
                data = sites.daily_series(
                    conn,
                    device_keys=site["device_keys"],
                    pollutant=code,
                    start=start_t,
                    end=end_t,
                    day_offset_hours=parse_utc_offset(settings.device_timezone).total_seconds()
                    / 3600,
                )[:limit]
                for row in data:
                    row["flags"] = flags_from_mask(row.pop("flags_mask") or 0)
        document: dict[str, Any] = {
            "site": {"id": site["id"], "kind": site["kind"], "name": site["name"]},
            "pollutant": code,
            "interval": interval.value,
            "start": jsonable(start_t),
            "end": jsonable(end_t),
            "count": len(data),
        }
        # No generic walk of 8,760 rows (it costs as much as the query): the rows are this
        # build's own, and their times are written by json_body.
        times = utc_times([row["time"] for row in data])
        if format is SeriesFormat.columns:
            document["columns"] = {
                name: times if name == "time" else [row[name] for row in data] for name in chosen
            }
        else:
            for row, when in zip(data, times, strict=True):
                row["time"] = when
            document["data"] = (
                data
                if chosen == SERIES_FIELDS[interval]
                else [{name: row[name] for name in chosen} for row in data]
            )
        document["meta"] = meta()
        return json_body(document)

    return await respond(request, build)
