"""GeoJSON (RFC 7946) and the disclosure notice every public response carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

_ZERO = timedelta(0)
LICENSE = "CC BY 4.0"
NOTICE = (
    "Real-time values are preliminary, unvalidated enterprise self-monitoring and station data, "
    "not reviewed by the regulator. Each value carries its HJ 212 data flag."
)


def meta(**extra: Any) -> dict[str, Any]:
    return {"license": LICENSE, "notice": NOTICE, **extra}


def iso(value: datetime) -> str:
    """UTC ISO 8601 with 'Z', the one timestamp format the API emits."""
    if value.utcoffset() == _ZERO:  # already UTC, as every database session returns times
        return value.isoformat().replace("+00:00", "Z")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc_times(values: list[datetime]) -> list[datetime]:
    """Times left for :func:`api.cache.json_body` to write as :func:`iso` does (orjson, in C: a
    year of hours in 1 ms instead of 14); converted first only if some are not in UTC, which
    the API's database sessions always are."""
    if all(value.utcoffset() == _ZERO for value in values):
        return values
    return [value.astimezone(UTC) for value in values]


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def point_feature(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    props = {k: v for k, v in row.items() if k not in ("lon", "lat")}
    return {
        "type": "Feature",
        "id": row["id"],
        "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
        "properties": jsonable({**props, **extra}),
    }


def feature_collection(features: list[dict[str, Any]], **meta_extra: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features, "meta": meta(**meta_extra)}
