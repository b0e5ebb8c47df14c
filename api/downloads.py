"""CSV renderings of the public lists: one row per site, latest values in columns."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from fastapi.responses import Response

from api.geojson import LICENSE, NOTICE, jsonable


def attachment(filename: str) -> str:
    """Content-Disposition for a download named after a path parameter, which may hold any
    character: an ASCII fallback and the exact name percent-encoded (RFC 6266), never a control
    character or quote in the header (the HTTP server refuses those, and the client got no
    answer at all)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _csv(header: list[str], rows: Iterable[list[Any]], filename: str) -> Response:
    buf = io.StringIO()
    buf.write(f"# {NOTICE} Licence: {LICENSE}.\n")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(filename)},
    )


def stations_csv(rows: list[dict[str, Any]]) -> Response:
    pollutants = sorted({p for r in rows for p in r["latest"]})
    header = ["id", "name", "name_zh", "district", "lon", "lat", "zone", "aqi", "aqi_category"]
    for p in pollutants:
        header += [p, f"{p}_unit", f"{p}_flag", f"{p}_time"]
    out = []
    for r in rows:
        aqi = r.get("aqi") or {}
        line = [
            r["id"],
            r["name"],
            r["name_zh"],
            r["district"],
            r["lon"],
            r["lat"],
            r["zone"],
            aqi.get("aqi"),
            aqi.get("category"),
        ]
        for p in pollutants:
            v = jsonable(r["latest"].get(p) or {})
            line += [v.get("value"), v.get("unit"), v.get("flag"), v.get("time")]
        out.append(line)
    return _csv(header, out, "sunlight-stations.csv")


def enterprises_csv(rows: list[dict[str, Any]]) -> Response:
    header = [
        "id",
        "name",
        "name_zh",
        "industry",
        "district",
        "lon",
        "lat",
        "status",
        "open_episodes",
        "episodes_30d",
        "exceedance_periods_30d",
        "outlets",
    ]
    out = []
    for r in rows:
        c = r.get("compliance") or {}
        out.append(
            [
                r["id"],
                r["name"],
                r["name_zh"],
                r["industry"],
                r["district"],
                r["lon"],
                r["lat"],
                c.get("status"),
                c.get("open_episodes"),
                c.get("episodes_30d"),
                c.get("exceedance_periods_30d"),
                ";".join(o["id"] for o in r["outlets"]),
            ]
        )
    return _csv(header, out, "sunlight-enterprises.csv")


def rows_csv(rows: list[dict[str, Any]], filename: str) -> Response:
    """Any list of flat records (episodes, judgements) as CSV, columns in record order."""
    header = list(rows[0]) if rows else []
    return _csv(header, ([jsonable(r[c]) for c in header] for r in rows), filename)
