"""Endpoints for regulators (bearer token): only data within the office's jurisdiction."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, Field

from api.auth import RegulatorDep
from api.deps import ConnDep
from api.geojson import jsonable
from domain.errors import ValidationError
from store import dead_letters, episodes

router = APIRouter(prefix="/api/v1/regulator", tags=["regulator"])


@router.get(
    "/dead-letters",
    summary="Rejected device messages in your jurisdiction, newest first",
    description="Messages Sunlight could not store, with the raw payload and the reason. Fix "
    "the cause (e.g. register the device) and run `sunlight dead-letters replay`.",
)
def list_dead_letters(
    *,
    conn: ConnDep,
    regulator: RegulatorDep,
    device: Annotated[
        str | None,
        Query(
            description="Only this device id.", examples=["cems-lc-ent-tp-north-1"], max_length=64
        ),
    ] = None,
    reason: Annotated[
        str | None,
        Query(description="Only this reason, e.g. unknown_device, bad_unit.", max_length=64),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    page: Annotated[int, Query(ge=1, le=100_000, description="Page number, from 1.")] = 1,
) -> dict[str, Any]:
    total, rows = dead_letters.list_for_regulators(
        conn,
        regulators=regulator.jurisdiction,
        include_unassigned=regulator.top_level,
        device_id=device,
        reason=reason,
        limit=limit,
        offset=(page - 1) * limit,
    )
    results = []
    for row in rows:
        payload = bytes(row.pop("payload"))
        row["payload_text"] = payload[:4096].decode("utf-8", errors="replace")
        row["payload_base64"] = base64.b64encode(payload).decode()
        results.append(jsonable(row))
    return {
        "meta": {"found": total, "page": page, "limit": limit, "regulator": regulator.regulator_id},
        "results": results,
    }


class NoteBody(BaseModel):
    note: str = Field(min_length=1, max_length=4000, description="Public: shown on the record.")


class AckBody(BaseModel):
    note: str | None = Field(default=None, max_length=4000, description="Optional public note.")


class ResolveBody(BaseModel):
    action: str = Field(
        min_length=1, max_length=4000, description="What was done (public), e.g. an inspection."
    )


class SilenceBody(BaseModel):
    site_id: str = Field(max_length=64, description="Outlet id.")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=2000)


@router.get("/episodes", summary="Episodes in your jurisdiction (in charge or escalated to you)")
def my_episodes(
    *,
    conn: ConnDep,
    regulator: RegulatorDep,
    status: Annotated[
        Literal["open", "notified", "acknowledged", "resolved"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> dict[str, Any]:
    total, rows = episodes.list_episodes(
        conn,
        regulators=regulator.jurisdiction,
        status=status,
        limit=limit,
        offset=(page - 1) * limit,
    )
    return {"meta": {"found": total, "page": page, "limit": limit}, "results": jsonable(rows)}


@router.post("/episodes/{episode_id}/acknowledge", summary="Acknowledge an episode")
def acknowledge(
    conn: ConnDep,
    regulator: RegulatorDep,
    episode_id: Annotated[int, Path(ge=1, le=2**62)],
    body: AckBody | None = None,
) -> dict[str, Any]:
    with conn.transaction():
        row = episodes.acknowledge(
            conn,
            episode_id,
            regulator_id=regulator.regulator_id,
            jurisdiction=regulator.jurisdiction,
            note=body.note if body else None,
            token_id=regulator.token_id,
        )
    return jsonable(row)  # type: ignore[no-any-return]


@router.post("/episodes/{episode_id}/notes", summary="Add a public note to an episode")
def note(
    conn: ConnDep,
    regulator: RegulatorDep,
    episode_id: Annotated[int, Path(ge=1, le=2**62)],
    body: NoteBody,
) -> dict[str, Any]:
    with conn.transaction():
        row = episodes.add_note(
            conn,
            episode_id,
            regulator_id=regulator.regulator_id,
            jurisdiction=regulator.jurisdiction,
            note=body.note,
            token_id=regulator.token_id,
        )
    return jsonable(row)  # type: ignore[no-any-return]


@router.post("/episodes/{episode_id}/resolve", summary="Resolve an episode with the action taken")
def resolve(
    conn: ConnDep,
    regulator: RegulatorDep,
    episode_id: Annotated[int, Path(ge=1, le=2**62)],
    body: ResolveBody,
) -> dict[str, Any]:
    with conn.transaction():
        row = episodes.resolve(
            conn,
            episode_id,
            regulator_id=regulator.regulator_id,
            jurisdiction=regulator.jurisdiction,
            action=body.action,
            token_id=regulator.token_id,
        )
    return jsonable(row)  # type: ignore[no-any-return]


@router.post("/silences", status_code=201, summary="Register a planned outlet shutdown in advance")
def create_silence(conn: ConnDep, regulator: RegulatorDep, body: SilenceBody) -> dict[str, Any]:
    if body.ends_at <= body.starts_at:
        raise ValidationError("ends_at must be after starts_at")
    if body.starts_at < datetime.now(UTC) - timedelta(minutes=5):
        raise ValidationError("a silence is registered in advance: starts_at is in the past")
    with conn.transaction():
        row = episodes.create_silence(
            conn,
            site_id=body.site_id,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            reason=body.reason,
            regulator_id=regulator.regulator_id,
            jurisdiction=regulator.jurisdiction,
        )
    return jsonable(row)  # type: ignore[no-any-return]
