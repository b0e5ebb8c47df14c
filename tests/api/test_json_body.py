"""Reused JSON bodies (api.cache.json_body, by orjson): the bytes the standard library writes
for what the API serves, and the standard library's own answer for what orjson refuses."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from fastapi.encoders import jsonable_encoder

from api.cache import json_body
from api.geojson import iso, utc_times


def _api_time(value: Any) -> Any:
    """The API's one time format for UTC (``…Z``, as iso writes it); other offsets as given."""
    if isinstance(value, datetime):
        return iso(value) if value.utcoffset() == timedelta(0) else value.isoformat()
    return jsonable_encoder(value)


def _stdlib(content: Any) -> bytes:
    return json.dumps(
        content,
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
        default=_api_time,
    ).encode()


class Kind(StrEnum):
    station = "station"


def test_the_same_bytes_as_the_standard_library() -> None:
    t = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    document = {
        "type": "FeatureCollection",
        "features": [
            {
                "id": "st-1",
                "kind": Kind.station,
                "geometry": {"type": "Point", "coordinates": [116.4074, 39.9042]},
                "properties": {
                    "name": "老城区 «Old Town» \u2028 </script>",
                    "mean": 12.345,
                    "values": [0.1, 1.0, 35.0, 1e-3, 123456.789, -0.0, 2**53],
                    "n": 60,
                    "valid": True,
                    "flags": ["N", "F"],
                    "empty": {},
                    "none": None,
                    "tuple": (1, "a"),
                },
            }
        ],
        "times": [t, t.astimezone(timezone(timedelta(hours=8))), t.replace(microsecond=5)],
        "day": date(2026, 11, 23),
        "exact": Decimal("12.50"),
    }
    body = json_body(document)
    assert body.content == _stdlib(document)
    # No fallback: orjson wrote it.
    assert body.content == orjson.dumps(document, default=jsonable_encoder, option=orjson.OPT_UTC_Z)
    assert body.media_type == "application/json"
    assert json.loads(body.content)["exact"] == 12.5


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    for document in ({"big": 2**70}, {1: "one", "two": 2}):
        assert json_body(document).content == _stdlib(document)


def test_times_are_written_as_iso_writes_them() -> None:
    """Series hand json_body their times unconverted (utc_times): the bytes must be what
    iso() gives, microseconds or not, whatever UTC object the database session returned."""
    base = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    times = [base, base.replace(microsecond=5), base.replace(microsecond=123456)]
    times.append(datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("UTC")))
    times.append(datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Etc/UTC")))
    assert json_body(times).content == json.dumps([iso(t) for t in times]).replace(" ", "").encode()
    # Times from a session that was not in UTC are converted first.
    beijing = [t.astimezone(timezone(timedelta(hours=8))) for t in times]
    written = json_body(utc_times(beijing)).content
    assert written == json_body([iso(t) for t in times]).content
    assert json_body(utc_times(times)).content == written
    # With the standard library (what orjson refuses elsewhere in the document) the same.
    assert json_body({"big": 2**70, "t": times}).content == _stdlib({"big": 2**70, "t": times})
    assert b'"2026-11-23T10:00:00Z"' in json_body({"big": 2**70, "t": times}).content
