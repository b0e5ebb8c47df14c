"""Reused JSON bodies (api.cache.json_body, by orjson): the bytes the standard library writes
for what the API serves, and the standard library's own answer for what orjson refuses."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder

from api.cache import json_body


def _stdlib(content: Any) -> bytes:
    return json.dumps(
        content,
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
        default=jsonable_encoder,
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
    assert body.content == orjson.dumps(document, default=jsonable_encoder)  # no fallback
    assert body.media_type == "application/json"
    assert json.loads(body.content)["exact"] == 12.5


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    for document in ({"big": 2**70}, {1: "one", "two": 2}):
        assert json_body(document).content == _stdlib(document)
