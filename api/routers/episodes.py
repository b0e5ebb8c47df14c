"""The public record: every episode with its timeline and the office's notes, and every
judgement, compliant hours included. No authentication; staff are never named, only offices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from api.deps import ConnDep
from api.downloads import rows_csv
from api.geojson import jsonable, meta
from api.routers.sites import _parse_time
from domain.errors import ValidationError
from domain.pollutants import get_pollutant
from store import episodes

router = APIRouter(prefix="/api/v1", tags=["public record"])


@router.get("/episodes", summary="Exceedance and monitoring-gap episodes, newest first")
def list_episodes(
    *,
    conn: ConnDep,
    status: Annotated[
        Literal["open", "notified", "acknowledged", "resolved"] | None,
        Query(description="Only episodes in this state."),
    ] = None,
    kind: Annotated[
        Literal["exceedance", "gap"] | None, Query(description="Exceedance or monitoring gap.")
    ] = None,
    site: Annotated[
        str | None, Query(description="Only this outlet or station.", max_length=64)
    ] = None,
    regulator: Annotated[
        str | None,
        Query(description="Only this office (in charge or escalated to).", max_length=64),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    page: Annotated[int, Query(ge=1, le=100_000, description="Page number, from 1.")] = 1,
    format: Annotated[
        Literal["json", "csv"], Query(description="JSON (default) or CSV download.")
    ] = "json",
) -> Any:
    total, rows = episodes.list_episodes(
        conn,
        regulators=[regulator] if regulator else None,
        status=status,
        kind=kind,
        site_id=site,
        limit=limit,
        offset=(page - 1) * limit,
    )
    if format == "csv":
        return rows_csv(rows, "sunlight-episodes.csv")
    return {"meta": meta(found=total, page=page, limit=limit), "results": jsonable(rows)}


@router.get("/episodes/{episode_id}", summary="One episode with its full timeline")
def get_episode(
    conn: ConnDep,
    episode_id: Annotated[int, Path(ge=1, le=2**62, description="Episode number.")],
) -> dict[str, Any]:
    row = episodes.get_episode(conn, episode_id)
    return {
        **jsonable(row),
        "timeline": jsonable(episodes.public_timeline(conn, episode_id)),
        "meta": meta(),
    }


@router.get(
    "/sites/{site_id}/judgements",
    summary="Every judgement of a site against its limits: compliant, exceedance, invalid …",
)
def site_judgements(
    *,
    conn: ConnDep,
    site_id: Annotated[str, Path(description="Outlet or station id.", max_length=64)],
    pollutant: Annotated[
        str | None, Query(description="Only this pollutant.", examples=["so2"], max_length=32)
    ] = None,
    start: Annotated[
        str | None, Query(description="From (ISO 8601 with zone). Default: 7 days before end.")
    ] = None,
    end: Annotated[str | None, Query(description="To (exclusive). Default: now.")] = None,
    limit: Annotated[int, Query(ge=1, le=20_000, description="Most rows returned.")] = 5000,
    format: Annotated[
        Literal["json", "csv"], Query(description="JSON (default) or CSV download.")
    ] = "json",
) -> Any:
    code = get_pollutant(pollutant).code if pollutant else None
    end_t = _parse_time(end, "end") or datetime.now(UTC)
    start_t = _parse_time(start, "start") or end_t - timedelta(days=7)
    if start_t >= end_t:
        raise ValidationError("start must be before end")
    if end_t - start_t > timedelta(days=400):
        raise ValidationError("judgements are served for at most 400 days at a time")
    rows = episodes.list_judgements(
        conn, site_id=site_id, pollutant=code, start=start_t, end=end_t, limit=limit
    )
    if format == "csv":
        return rows_csv(rows, f"sunlight-judgements-{site_id}.csv")
    return {"site": site_id, "count": len(rows), "results": jsonable(rows), "meta": meta()}
