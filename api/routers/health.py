"""Liveness and readiness: is the database reachable and migrated."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api.deps import ConnDep
from store.schema import storage_mode

router = APIRouter(tags=["health"])


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """No icon: an empty answer instead of a 404 in every browser console."""
    return Response(status_code=204)


@router.get("/healthz", summary="Health of the API and its database")
def healthz(conn: ConnDep) -> Any:
    try:
        mode = storage_mode(conn)
    except psycopg.Error as exc:
        return JSONResponse({"status": "error", "database": str(exc)}, status_code=503)
    if mode is None:
        return JSONResponse({"status": "error", "database": "not migrated"}, status_code=503)
    return {"status": "ok", "storage": mode.value}
