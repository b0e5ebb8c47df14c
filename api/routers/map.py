"""The public map page: stations and enterprises over districts, every asset served locally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.cache import Body, json_body, respond
from api.deps import ConnDep, SettingsDep
from api.geojson import feature_collection, iso, point_feature
from api.routers.accountability import (
    FromQuery,
    PeriodQuery,
    ScopeQuery,
    ToQuery,
    office_document,
    period_document,
    periods_of,
    resolve_window,
)
from api.routers.reports import report_document
from api.routers.sites import all_enterprise_rows, all_station_rows, list_districts
from domain.errors import NotFound
from maps.accountability_page import build_office_page, build_regulators_page
from maps.builder import build_map, popup_data
from maps.enterprise_page import build_enterprise_page
from maps.report_page import build_report_page
from store import accountability, sites

router = APIRouter(tags=["map"])

STATIC_PREFIX = "/static"


@router.get(
    "/enterprises/{enterprise_id}",
    response_class=HTMLResponse,
    summary="An enterprise's page: hourly means against limits for 7 days, episode history",
)
def enterprise_page(
    conn: ConnDep,
    enterprise_id: Annotated[str, Path(description="Enterprise id.", max_length=64)],
    lang: Annotated[Literal["en", "zh"], Query(description="Label language: en or zh.")] = "en",
) -> HTMLResponse:
    now = datetime.now(UTC)
    row = sites.enterprise(conn, enterprise_id)
    html = build_enterprise_page(
        row,
        sites.recent_judgements(conn, enterprise_id, now - timedelta(days=7)),
        sites.enterprise_episodes(conn, enterprise_id),
        now=now,
        lang=lang,
        map_url=f"/map?lang={lang}",
    )
    return HTMLResponse(html)


@router.get(
    "/reports/{tracking_code}",
    response_class=HTMLResponse,
    summary="A citizen report's page (its tracking link): replies, timing and evidence",
)
def report_page(
    conn: ConnDep,
    settings: SettingsDep,
    tracking_code: Annotated[str, Path(description="The report's tracking code.", max_length=64)],
    lang: Annotated[Literal["en", "zh"], Query(description="Label language: en or zh.")] = "en",
) -> HTMLResponse:
    doc = report_document(conn, settings, tracking_code)
    return HTMLResponse(build_report_page(doc, lang=lang, map_url=f"/map?lang={lang}"))


MEASURES = {
    "exceedance_hours": ("Exceedance hours, 30 days", "30天超标小时数"),
    "open_episodes": ("Open episodes", "未结事件数"),
    "episodes": ("Episodes, 30 days", "30天事件数"),
    "median_minutes_to_acknowledge": ("Median minutes to acknowledge", "响应时间中位数（分钟）"),
}
Measure = Literal[
    "exceedance_hours", "open_episodes", "episodes", "median_minutes_to_acknowledge", "none"
]


DETAIL_URL = "/api/v1/sites/{id}/readings?interval=hour&pollutant=so2"
# Up to this many sites the page carries every popup (no request when one is opened); past it,
# popups are fetched from /map/popup when opened, so the page stays small enough to load fast.
INLINE_POPUPS_UP_TO = 2000


def map_enterprise(row: dict[str, Any]) -> dict[str, Any]:
    """An enterprise as the map's popup reads it: its outlets' ids in order and their latest
    values by outlet id (the list endpoint nests limits and values inside each outlet). Built
    field by field: a generic walk of 10,000 enterprises' rows costs a second per map."""
    outlets = row.get("outlets") or []
    props = {k: row.get(k) for k in ("id", "name", "name_zh", "industry", "district")}
    props["compliance"] = row.get("compliance")
    props["outlets"] = [o["id"] for o in outlets]
    props["latest"] = {
        o["id"]: {
            pol: {**v, "time": iso(v["time"])} if isinstance(v.get("time"), datetime) else v
            for pol, v in (o.get("latest") or {}).items()
        }
        for o in outlets
    }
    props["kind"] = "enterprise"
    return {
        "type": "Feature",
        "id": row["id"],
        "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
        "properties": props,
    }


@router.get("/map", response_class=HTMLResponse, summary="Interactive map (HTML)")
async def map_page(
    request: Request,
    settings: SettingsDep,
    lang: Annotated[Literal["en", "zh"], Query(description="Label language: en or zh.")] = "en",
    measure: Annotated[
        Measure, Query(description="What shades the districts (choropleth), or 'none'.")
    ] = "exceedance_hours",
) -> Response:
    """Built once per ``api_cache_seconds`` for each language and measure, then reused."""

    def build() -> Body:
        with request.app.state.pool.connection() as conn:
            districts = list_districts(conn)
            if measure != "none":
                summary = {
                    r["district"]: r[measure]
                    for r in sites.district_summary(conn, datetime.now(UTC) - timedelta(days=30))
                }
                for feature in districts["features"]:
                    value = summary.get(feature["id"])
                    feature["properties"]["measure"] = float(value) if value is not None else None
        words = 1 if lang == "zh" else 0
        links = [
            (label[words], f"/map?lang={lang}&measure={key}", key == measure)
            for key, label in MEASURES.items()
        ]
        stations = [point_feature(r, kind="station") for r in all_station_rows(request)]
        enterprises = [map_enterprise(r) for r in all_enterprise_rows(request)]
        html = build_map(
            feature_collection(stations),
            feature_collection(enterprises),
            districts,
            static_prefix=STATIC_PREFIX,
            tiles=settings.map_tiles,
            attribution=settings.map_tiles_attribution,
            lang=lang,
            detail_url=DETAIL_URL,
            measure_label=MEASURES[measure][words] if measure != "none" else None,
            measure_links=links,
            enterprise_url=f"/enterprises/{{id}}?lang={lang}",
            report_api="/api/v1/reports",
            popup_url=(
                f"/map/popup/{{kind}}/{{id}}?lang={lang}"
                if len(stations) + len(enterprises) > INLINE_POPUPS_UP_TO
                else None
            ),
        )
        return Body.of(html.encode(), "text/html; charset=utf-8")

    return await respond(request, build)


@router.get(
    "/regulators",
    response_class=HTMLResponse,
    summary="Every regulator office's record side by side, for a period (HTML)",
)
def regulators_page(
    *,
    conn: ConnDep,
    lang: Annotated[Literal["en", "zh"], Query(description="Label language: en or zh.")] = "en",
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    scope: ScopeQuery = "office",
) -> HTMLResponse:
    now = datetime.now(UTC)
    window = resolve_window(period, start, end, now)
    rows = accountability.figures(
        conn, start=window.start, end=window.end, now=now, subtree=scope == "subtree"
    )
    html = build_regulators_page(
        [office_document(r) for r in rows],
        period_document(window, scope),
        lang=lang,
        map_url=f"/map?lang={lang}",
    )
    return HTMLResponse(html)


@router.get(
    "/regulators/{regulator_id}",
    response_class=HTMLResponse,
    summary="One regulator office's record over 7, 30, 90 and 365 days (HTML)",
)
def regulator_page(
    conn: ConnDep,
    regulator_id: Annotated[str, Path(description="Office id.", max_length=64)],
    lang: Annotated[Literal["en", "zh"], Query(description="Label language: en or zh.")] = "en",
) -> HTMLResponse:
    now = datetime.now(UTC)
    office = accountability.office(conn, regulator_id)
    parent = accountability.office(conn, office["parent_id"]) if office["parent_id"] else None
    html = build_office_page(
        office,
        periods_of(conn, regulator_id, now, subtree=False),
        periods_of(conn, regulator_id, now, subtree=True) if office["children"] else None,
        parent=parent,
        children=[accountability.office(conn, c) for c in office["children"]],
        lang=lang,
    )
    return HTMLResponse(html)


@router.get(
    "/map/popup/{kind}/{site_id}",
    summary="One site's popup on a large map (JSON, HTML-escaped), fetched when it is opened",
)
async def map_popup(
    request: Request,
    kind: Annotated[Literal["station", "enterprise"], Path(description="station or enterprise")],
    site_id: Annotated[str, Path(description="Station or enterprise id.", max_length=64)],
    lang: Annotated[Literal["en", "zh"], Query(description="Label language: en or zh.")] = "en",
) -> Any:
    def build() -> Body:
        rows = all_station_rows(request) if kind == "station" else all_enterprise_rows(request)
        row = next((r for r in rows if r["id"] == site_id), None)
        if row is None:
            raise NotFound(f"no {kind} with id {site_id!r}")
        site = point_feature(row, kind="station") if kind == "station" else map_enterprise(row)
        with request.app.state.pool.connection() as conn:
            districts = list_districts(conn)
        return json_body(
            popup_data(
                kind,
                site,
                districts,
                lang=lang,
                detail_url=DETAIL_URL,
                enterprise_url=f"/enterprises/{{id}}?lang={lang}",
            )
        )

    return await respond(request, build)
