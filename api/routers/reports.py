"""Citizen reports: anyone submits one (with a proof of work, rate-limited), everyone reads it
with its evidence and the office's public replies; offices reply through the regulator API.

The reporter's contact is never in a public response, and public coordinates are rounded to
about 100 m, so a report sent with the browser's location from home does not publish the home.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Message, Receive

from api.auth import RegulatorDep
from api.deps import ConnDep, SettingsDep
from api.downloads import rows_csv
from api.errors import problem
from api.geojson import feature_collection, jsonable, meta
from api.middleware import RateLimiter
from api.queries import SiteFilter, site_filter
from api.routers.sites import _parse_time, compliance_of
from domain.errors import ValidationError
from domain.geo import distance_m
from domain.reports import (
    CATEGORY_LABELS,
    Category,
    Photo,
    Status,
    bearing_deg,
    check_proof_of_work,
    compass_point,
    nearest,
    new_nonce,
    public_position,
    reencode_photo,
)
from store import reports as store
from store import sites
from sunlight.settings import Settings

SUBMIT_PATH = "/api/v1/reports"
# Room for the form's text fields and multipart headers besides the photo.
FORM_OVERHEAD_BYTES = 64 * 1024


def _bounded(receive: Receive, limit: int, photo_limit: int) -> Receive:
    """``receive`` that stops a body growing past ``limit`` bytes while it arrives."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, _too_large(photo_limit))
        return message

    return wrapped


def _too_large(photo_limit: int) -> str:
    return f"the report is larger than its photo limit ({photo_limit} bytes) allows"


_limiter_lock = threading.Lock()


def _submission_wait(request: Request) -> tuple[int, float] | None:
    """None when this client may submit a report now, else (the hourly limit, seconds to wait).

    Far stricter than the API's read limit, and taken before the body is read, so a client over
    its allowance does not get to upload a photo first."""
    with _limiter_lock:
        limiter: RateLimiter | None = getattr(request.app.state, "report_limiter", None)
        if limiter is None:
            settings: Settings = request.app.state.settings
            limiter = RateLimiter(settings.reports_rate_limit_per_hour, window_s=3600.0)
            request.app.state.report_limiter = limiter
    client = request.client.host if request.client else "unknown"
    allowed, _remaining, wait = limiter.take(client)
    return None if allowed else (limiter.limit, wait)


class _SubmissionRoute(APIRoute):
    """Before a report's body is read: the client's hourly allowance (429 with Retry-After),
    and its size, by Content-Length or while it streams (413) — otherwise a huge upload, or
    one from a client over its allowance, would be spooled to disk first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.path != SUBMIT_PATH or "POST" not in (self.methods or ()):
            return handler

        async def bounded(request: Request) -> Response:
            photo_limit = request.app.state.settings.reports_photo_max_bytes
            limit = photo_limit + FORM_OVERHEAD_BYTES
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise HTTPException(413, _too_large(photo_limit))
            over = _submission_wait(request)
            if over is not None:
                retry = max(1, math.ceil(over[1]))
                response: Response = problem(
                    429,
                    "too many requests",
                    f"at most {over[0]} reports per hour from one address; retry after {retry} s",
                )
                response.headers["Retry-After"] = str(retry)
                return response
            return await handler(
                Request(request.scope, _bounded(request.receive, limit, photo_limit))
            )

        return bounded


router = APIRouter(tags=["citizen reports"], route_class=_SubmissionRoute)

PAGE_PATH = "/reports/{code}"
MAX_DESCRIPTION = 4000
MAX_CONTACT = 200
EVIDENCE_HOURS_BEFORE = 3
EVIDENCE_HOURS_AFTER = 2
EPISODE_FIELDS = (
    "id", "kind", "outlet", "pollutant", "status", "first_start", "last_end", "max_mean",
    "limit_value",
)  # fmt: skip


# --- public -------------------------------------------------------------------------------


@router.post(
    "/api/v1/reports/challenge",
    status_code=201,
    summary="A proof-of-work challenge, needed to submit one report",
    description="Find any string `solution` (at most 64 ASCII characters) such that "
    "SHA-256 of the UTF-8 bytes `<nonce>:<solution>` begins with `difficulty` zero bits, then "
    "send `challenge=<nonce>` and `solution` with the report. Each challenge is accepted once "
    "and expires at `expires_at`. A POST, because each call creates a challenge.",
)
def new_challenge(conn: ConnDep, settings: SettingsDep) -> dict[str, Any]:
    now = datetime.now(UTC)
    with conn.transaction():
        row = store.issue_challenge(
            conn,
            new_nonce(),
            settings.reports_pow_difficulty,
            timedelta(minutes=settings.reports_challenge_ttl_minutes),
            now,
        )
    return jsonable({**row, "algorithm": "sha256-leading-zero-bits"})  # type: ignore[no-any-return]


@router.post(
    SUBMIT_PATH,
    status_code=201,
    summary="Report pollution you see, smell or hear",
    description="A `multipart/form-data` form. The report goes to the office whose "
    "jurisdiction contains the point and is public at once, with its replies; the reply is due "
    "within the office's deadline. The answer carries the tracking code and link. The contact "
    "is given only to the office, never published; coordinates are published rounded to about "
    "100 m. A photo is checked to be an image and re-encoded without its metadata (camera, "
    "time, GPS position). Needs a solved challenge (POST /api/v1/reports/challenge); limited "
    "per client address per hour.",
)
def submit_report(
    *,
    conn: ConnDep,
    settings: SettingsDep,
    lon: Annotated[
        float, Form(ge=-180, le=180, description="Longitude, WGS 84.", examples=[116.5])
    ],
    lat: Annotated[float, Form(ge=-90, le=90, description="Latitude, WGS 84.", examples=[39.85])],
    category: Annotated[Category, Form(description="What you noticed.")],
    description: Annotated[
        str,
        Form(
            min_length=3,
            max_length=MAX_DESCRIPTION,
            description="What you see, smell or hear, and since when (public).",
        ),
    ],
    challenge: Annotated[str, Form(max_length=100, description="The challenge's nonce.")],
    solution: Annotated[str, Form(max_length=64, description="Your proof-of-work solution.")],
    contact: Annotated[
        str | None,
        Form(
            max_length=MAX_CONTACT,
            description="Optional e-mail or phone for the office to reach you; never public.",
        ),
    ] = None,
    observed_at: Annotated[
        str | None,
        Form(description="When you noticed it (ISO 8601 with zone); default: now."),
    ] = None,
    photo: Annotated[
        UploadFile | None,
        File(description="Optional photo (JPEG, PNG, WebP, GIF), at most the size limit."),
    ] = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    text = description.strip()
    if len(text) < 3:
        raise ValidationError("description: say in a few words what you noticed")
    when = _parse_time(observed_at, "observed_at") if observed_at else None
    if when is not None and not (now - timedelta(days=7) <= when <= now + timedelta(minutes=5)):
        raise ValidationError("observed_at: within the last 7 days, not in the future")
    picture: Photo | None = None
    if photo is not None and (photo.filename or photo.size):
        data = photo.file.read(settings.reports_photo_max_bytes + 1)
        picture = reencode_photo(data, max_bytes=settings.reports_photo_max_bytes)
    with conn.transaction():
        difficulty = store.take_challenge(conn, challenge, now)
        check_proof_of_work(challenge, solution, difficulty)
        store.spend_challenge(conn, challenge, now)
        row = store.create_report(
            conn,
            lon=lon,
            lat=lat,
            category=category.value,
            description=text,
            observed_at=when,
            contact=(contact or "").strip() or None,
            photo=picture,
            received_at=now,
        )
    return public_report(row, now)


def report_filter(
    bbox: Annotated[
        str | None,
        Query(
            description="min longitude, min latitude, max longitude, max latitude (WGS 84).",
            examples=["116.2,39.8,116.6,40.1"],
            max_length=100,
        ),
    ] = None,
    coordinates: Annotated[
        str | None,
        Query(
            description="latitude,longitude of a point; use with radius.",
            examples=["39.95,116.4"],
            max_length=60,
        ),
    ] = None,
    radius: Annotated[
        float | None,
        Query(gt=0, le=100_000, description="Metres around coordinates (at most 100 km)."),
    ] = None,
    district: Annotated[
        str | None, Query(description="District id.", examples=["lc-nanhe"], max_length=64)
    ] = None,
) -> SiteFilter:
    """The site lists' place filters, with the same parsing and errors."""
    return site_filter(bbox, coordinates, radius, district, None)


@router.get(
    "/api/v1/reports",
    summary="Citizen reports, newest first (GeoJSON), with their status and reply times",
    response_description="A GeoJSON FeatureCollection of Point features (rounded positions).",
)
def list_reports(
    *,
    conn: ConnDep,
    where: Annotated[SiteFilter, Depends(report_filter)],
    status: Annotated[Status | None, Query(description="Only reports in this state.")] = None,
    category: Annotated[Category | None, Query(description="Only this category.")] = None,
    regulator: Annotated[
        str | None,
        Query(description="Only this office (in charge or escalated to).", max_length=64),
    ] = None,
    start: Annotated[str | None, Query(description="Received from (ISO 8601 with zone).")] = None,
    end: Annotated[str | None, Query(description="Received before (ISO 8601 with zone).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    page: Annotated[int, Query(ge=1, le=100_000, description="Page number, from 1.")] = 1,
    format: Annotated[
        Literal["geojson", "csv"], Query(description="GeoJSON (default) or CSV download.")
    ] = "geojson",
) -> Any:
    start_t, end_t = _parse_time(start, "start"), _parse_time(end, "end")
    if start_t and end_t and start_t >= end_t:
        raise ValidationError("start must be before end")
    total, rows = store.list_reports(
        conn,
        regulators=[regulator] if regulator else None,
        status=status.value if status else None,
        category=category.value if category else None,
        district=where.district,
        bbox=where.bbox,
        centre=where.centre,
        radius_m=where.radius_m,
        start=start_t,
        end=end_t,
        limit=limit,
        offset=(page - 1) * limit,
    )
    now = datetime.now(UTC)
    shown = [public_report(r, now) for r in rows]
    if format == "csv":
        return rows_csv(
            [{k: v for k, v in r.items() if k not in ("page_url", "photo_url")} for r in shown],
            "sunlight-reports.csv",
        )
    features = [
        {
            "type": "Feature",
            "id": r["tracking_code"],
            "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
            "properties": {k: v for k, v in r.items() if k not in ("lon", "lat")},
        }
        for r in shown
    ]
    return feature_collection(features, found=total, page=page, limit=limit)


@router.get(
    "/api/v1/reports/{tracking_code}",
    summary="One report: its status, the office's public replies, and the evidence around it",
    description="Evidence: the nearest air-quality stations' hourly means around the time of "
    "the report, and the enterprises within the evidence radius with their compliance status "
    "and their episodes open now or at the time.",
)
def get_report(
    conn: ConnDep,
    settings: SettingsDep,
    tracking_code: Annotated[str, Path(max_length=64, description="The report's tracking code.")],
) -> dict[str, Any]:
    return report_document(conn, settings, tracking_code)


@router.get(
    "/api/v1/reports/{tracking_code}/photo",
    summary="The report's photo, re-encoded as JPEG without metadata",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_photo(
    conn: ConnDep,
    tracking_code: Annotated[str, Path(max_length=64, description="The report's tracking code.")],
) -> Response:
    content_type, data = store.photo(conn, tracking_code)
    return Response(data, media_type=content_type)


# --- regulators ---------------------------------------------------------------------------


class ReplyBody(BaseModel):
    body: str = Field(
        min_length=1, max_length=4000, description="The reply, public on the report's record."
    )
    status: Literal["confirmed", "unfounded", "merged"] | None = Field(
        default=None, description="Mark the report; omit for a plain reply."
    )
    episode_id: int | None = Field(
        default=None,
        ge=1,
        le=2**62,
        description="With status 'merged': the episode (in your jurisdiction) it belongs to.",
    )


@router.get(
    "/api/v1/regulator/reports",
    tags=["regulator"],
    summary="Reports in your jurisdiction, unanswered first, with the reporter's contact",
)
def office_reports(
    *,
    conn: ConnDep,
    regulator: RegulatorDep,
    status: Annotated[Status | None, Query(description="Only reports in this state.")] = None,
    unanswered: Annotated[bool, Query(description="Only reports with no reply yet.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> dict[str, Any]:
    total, rows = store.list_for_offices(
        conn,
        regulator.jurisdiction,
        status=status.value if status else None,
        unanswered=unanswered,
        limit=limit,
        offset=(page - 1) * limit,
    )
    now = datetime.now(UTC)
    results = [{**_timing(r, now), **r, "page_url": _page_url(r)} for r in rows]
    return {
        "meta": {"found": total, "page": page, "limit": limit, "regulator": regulator.regulator_id},
        "results": jsonable(results),
    }


@router.post(
    "/api/v1/regulator/reports/{report_id}/replies",
    status_code=201,
    tags=["regulator"],
    summary="Reply to a report (public), optionally marking it confirmed, unfounded or merged",
)
def reply(
    conn: ConnDep,
    settings: SettingsDep,
    regulator: RegulatorDep,
    report_id: Annotated[int, Path(ge=1, le=2**62, description="The report's number.")],
    body: ReplyBody,
) -> dict[str, Any]:
    with conn.transaction():
        row = store.reply(
            conn,
            report_id,
            regulator_id=regulator.regulator_id,
            jurisdiction=regulator.jurisdiction,
            body=body.body.strip() or body.body,
            status=Status(body.status) if body.status else None,
            episode_id=body.episode_id,
            at=datetime.now(UTC),
        )
    return report_document(conn, settings, row["tracking_code"])


# --- presentation -------------------------------------------------------------------------


def _page_url(row: dict[str, Any]) -> str:
    return PAGE_PATH.format(code=row["tracking_code"])


def _timing(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Whether the office answered in time, or is late now."""
    answered = row["first_reply_at"] is not None
    return {
        "deadline_minutes": row["ack_deadline_minutes"],
        "overdue": (not answered) and now > row["due_at"],
    }


def public_report(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A report as everyone sees it: rounded position, no contact, links."""
    lon, lat = public_position(row["lon"], row["lat"])
    code = row["tracking_code"]
    out = {
        k: v for k, v in row.items() if k not in ("lon", "lat", "contact", "ack_deadline_minutes")
    }
    out.update(
        lon=lon,
        lat=lat,
        category_label=CATEGORY_LABELS[Category(row["category"])][0],
        category_label_zh=CATEGORY_LABELS[Category(row["category"])][1],
        page_url=_page_url(row),
        photo_url=f"/api/v1/reports/{code}/photo" if row["has_photo"] else None,
        **_timing(row, now),
    )
    return jsonable(out)  # type: ignore[no-any-return]


def report_document(
    conn: psycopg.Connection[Any], settings: Settings, tracking_code: str
) -> dict[str, Any]:
    """The whole public record of one report: itself, its replies and its evidence."""
    now = datetime.now(UTC)
    row = store.get_report(conn, tracking_code)
    return {
        **public_report(row, now),
        "replies": jsonable(store.replies(conn, row["id"])),
        "evidence": jsonable(evidence(conn, settings, row, now)),
        "meta": meta(),
    }


def evidence(
    conn: psycopg.Connection[Any], settings: Settings, report: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """What Sunlight already knew around the report: nearest stations' hourly means at the
    time, and nearby enterprises with their compliance and episodes. Distances and directions
    are from the exact point."""
    lon, lat = report["lon"], report["lat"]
    at: datetime = report["observed_at"] or report["received_at"]
    hour = at.replace(minute=0, second=0, microsecond=0)
    start = hour - timedelta(hours=EVIDENCE_HOURS_BEFORE)
    end = hour + timedelta(hours=EVIDENCE_HOURS_AFTER)
    stations = nearest(lon, lat, store.station_positions(conn), settings.reports_evidence_stations)
    hours: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for h in store.station_hours(conn, [s["id"] for s in stations], start, end):
        hours[h["station"]][h["pollutant"]].append(
            {"hour": h["hour"], "mean": h["mean"], "unit": h["unit"], "valid_minutes": h["n_valid"]}
        )
    station_out = [
        {
            "id": s["id"],
            "name": s["name"],
            "name_zh": s["name_zh"],
            "distance_m": round(s["distance_m"]),
            "direction": compass_point(bearing_deg(lon, lat, s["lon"], s["lat"])),
            "hourly": {p: v for p, v in sorted(hours.get(s["id"], {}).items())},
        }
        for s in stations
    ]
    radius = settings.reports_evidence_radius_m
    # A box a little larger than the circle, then exact distances.
    dlat = radius / 111_000 * 1.01
    dlon = dlat / max(0.01, math.cos(math.radians(lat)))
    candidates = store.enterprises_in_box(conn, lon - dlon, lat - dlat, lon + dlon, lat + dlat)
    status = sites.compliance_status(conn, now - timedelta(days=30)) if candidates else {}
    enterprises = []
    for e in candidates:
        d = distance_m(lon, lat, e["lon"], e["lat"])
        if d > radius:
            continue
        episodes = [
            {k: ep[k] for k in EPISODE_FIELDS}
            for ep in sites.enterprise_episodes(conn, e["id"])
            if ep["status"] != "resolved" or (ep["first_start"] < end and ep["last_end"] > start)
        ]
        enterprises.append(
            {
                "id": e["id"],
                "name": e["name"],
                "name_zh": e["name_zh"],
                "industry": e["industry"],
                "distance_m": round(d),
                "direction": compass_point(bearing_deg(lon, lat, e["lon"], e["lat"])),
                "compliance": compliance_of(status.get(e["id"])),
                "episodes": episodes,
                "page_url": f"/enterprises/{e['id']}",
            }
        )
    enterprises.sort(key=lambda e: e["distance_m"])
    return {
        "at": at,
        "window": {"start": start, "end": end},
        "radius_m": radius,
        "stations": station_out,
        "enterprises": enterprises,
    }
