"""Endpoints for regulators (bearer token): only data within the office's jurisdiction."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.auth import RegulatorDep
from api.deps import ConnDep
from api.geojson import jsonable
from store import dead_letters

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
