"""Errors as RFC 9457 ``application/problem+json``; the only place domain errors become HTTP."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.access_log import redact_queries
from domain.errors import SunlightError

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details: what went wrong, in words.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "For invalid parameters: each parameter and what is wrong with it.",
            "items": {
                "type": "object",
                "properties": {
                    "parameter": {"type": ["string", "null"]},
                    "in": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _offers_csv(operation: dict[str, Any]) -> bool:
    for parameter in operation.get("parameters", ()):
        if parameter.get("name") == "format" and "csv" in parameter.get("schema", {}).get(
            "enum", ()
        ):
            return True
    return False


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Document every response as what it is on the wire: errors as ``application/problem+json``
    with the Problem schema, for the statuses an operation declares and as its default response
    (any request may also be refused as too many, too large or not found); and the CSV that
    an operation with ``format=csv`` answers beside its JSON."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if _offers_csv(operation) and "200" in responses:
                responses["200"].setdefault("content", {})["text/csv"] = {
                    "schema": {"type": "string", "description": "CSV with a header row"}
                }
            for code, response in responses.items():
                if code[:1] in ("4", "5"):
                    response["content"] = content
            responses.setdefault(
                "default", {"description": "An error, as problem details", "content": content}
            )
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    # Every app gets it, however it is served: an access log must not carry link tokens.
    redact_queries()
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(SunlightError)
    async def _domain(_: Request, exc: SunlightError) -> JSONResponse:
        return problem(exc.status, exc.code.replace("_", " "), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                # A body that is not JSON at all has no field to name (pydantic puts the
                # character position where the field would be).
                "parameter": None
                if err.get("type") == "json_invalid"
                else ".".join(str(p) for p in err.get("loc", ())[1:]) or None,
                "in": (err.get("loc") or ("query",))[0],
                "message": _json_invalid(err)
                if err.get("type") == "json_invalid"
                else err.get("msg", "invalid"),
            }
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['parameter'] or e['in']}: {e['message']}" for e in errors)
        return problem(422, "invalid parameters", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A NUL character in a parameter or body: PostgreSQL text cannot hold one. The
        # client's error, said so; any other data error is the server's.
        if "NUL" in str(exc):
            return problem(400, "invalid parameters", "text must not contain NUL characters")
        logger.exception("unhandled data error", exc_info=exc)
        return problem(500, "internal error", "the server failed; the error was logged")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return problem(500, "internal error", "the server failed; the error was logged")


def _json_invalid(err: Mapping[str, Any]) -> str:
    """'not valid JSON at character 10: Expecting value', from pydantic's json_invalid error."""
    loc: tuple[Any, ...] = tuple(err.get("loc") or ())
    where = f" at character {loc[1]}" if len(loc) > 1 else ""
    reason = (err.get("ctx") or {}).get("error")
    return f"not valid JSON{where}" + (f": {reason}" if reason else "")
