"""Query parameters shared by the list endpoints: each filter owns its parsing and its test.

Conventions follow OpenAQ v3 where they fit: ``bbox`` or ``coordinates`` + ``radius``,
``limit``/``page``, and ``meta.found`` for the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import Query

from domain.errors import ValidationError
from domain.geo import distance_m
from domain.pollutants import get_pollutant

MAX_RADIUS_M = 100_000


@dataclass(frozen=True, slots=True)
class SiteFilter:
    bbox: tuple[float, float, float, float] | None
    centre: tuple[float, float] | None  # (lat, lon)
    radius_m: float | None
    district: str | None
    pollutant: str | None = None

    def keep(self, row: dict[str, Any]) -> bool:
        lon, lat = row["lon"], row["lat"]
        if self.district is not None and row.get("district") != self.district:
            return False
        if self.pollutant is not None and self.pollutant not in _pollutants_of(row):
            return False
        if self.bbox is not None:
            west, south, east, north = self.bbox
            if not (west <= lon <= east and south <= lat <= north):
                return False
        if self.centre is not None and self.radius_m is not None:
            return distance_m(self.centre[1], self.centre[0], lon, lat) <= self.radius_m
        return True


def _pollutants_of(row: dict[str, Any]) -> set[str]:
    """What a site measures or is limited on: a station's latest values, an enterprise's
    outlets' limits and latest values."""
    found = set(row.get("latest") or {})
    for outlet in row.get("outlets") or []:
        found.update(lim["pollutant"] for lim in outlet.get("limits") or [])
        found.update(outlet.get("latest") or {})
    return found


def _numbers(text: str, count: int, name: str) -> list[float]:
    parts = text.split(",")
    if len(parts) != count:
        raise ValidationError(f"{name}: expected {count} comma-separated numbers, got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValidationError(f"{name}: not numbers: {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValidationError(f"{name}: numbers must be finite")
    return values


def site_filter(
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
        Query(
            gt=0,
            le=MAX_RADIUS_M,
            description="Metres around coordinates (at most 100 km).",
            examples=[5000],
        ),
    ] = None,
    district: Annotated[
        str | None, Query(description="District id.", examples=["lc-nanhe"], max_length=64)
    ] = None,
    pollutant: Annotated[
        str | None,
        Query(
            description="Only sites that measure (or are limited on) this pollutant.",
            examples=["so2"],
            max_length=32,
        ),
    ] = None,
) -> SiteFilter:
    box = None
    if bbox is not None:
        west, south, east, north = _numbers(bbox, 4, "bbox")
        if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
            raise ValidationError(
                "bbox: need -180 ≤ min lon ≤ max lon ≤ 180 and -90 ≤ min lat ≤ max lat ≤ 90"
            )
        box = (west, south, east, north)
    centre = None
    if coordinates is not None:
        lat, lon = _numbers(coordinates, 2, "coordinates")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValidationError("coordinates: latitude,longitude within range")
        centre = (lat, lon)
    if (centre is None) != (radius is None):
        raise ValidationError("coordinates and radius go together")
    if box is not None and centre is not None:
        raise ValidationError("use bbox or coordinates+radius, not both")
    code = get_pollutant(pollutant).code if pollutant is not None else None
    return SiteFilter(box, centre, radius, district, code)


DEFAULT_PAGE = 100
MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    page: int
    format: Literal["geojson", "csv"]

    def slice(self, rows: list[Any]) -> list[Any]:
        start = (self.page - 1) * self.limit
        return rows[start : start + self.limit]

    def links(self, path: str, query: str, found: int) -> dict[str, Any]:
        """``meta`` fields that let a client walk every page: the page count and relative links
        to the next and previous pages (relative: the same bytes are served whatever the Host)."""
        pages = max(1, math.ceil(found / self.limit))

        def to(page: int) -> str:
            kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "page"]
            return f"{path}?{urlencode([*kept, ('page', str(page))])}"

        return {
            "pages": pages,
            "next": to(self.page + 1) if self.page < pages else None,
            "previous": to(min(self.page - 1, pages)) if self.page > 1 else None,
        }


def page_params(
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PAGE,
            description=f"Page size, at most {MAX_PAGE:,}. Default: {DEFAULT_PAGE} (GeoJSON; "
            "`meta.found` is the total, `meta.next` links the next page), or every matching "
            "row up to the maximum (CSV download).",
        ),
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000, description="Page number, from 1.")] = 1,
    format: Annotated[
        Literal["geojson", "csv"], Query(description="GeoJSON (default) or CSV download.")
    ] = "geojson",
) -> Page:
    if limit is None:
        limit = DEFAULT_PAGE if format == "geojson" else MAX_PAGE
    return Page(limit, page, format)
