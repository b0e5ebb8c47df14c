"""The accountability record: per regulator office, what it received and how fast and how
often in time it answered, over a selectable period, comparable across offices and levels.
Definitions are in ``store.accountability``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from api.deps import ConnDep
from api.downloads import _csv
from api.geojson import iso, meta
from api.routers.sites import _parse_time
from domain.errors import ValidationError
from store import accountability

router = APIRouter(prefix="/api/v1", tags=["accountability"])

PERIODS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}
MAX_SPAN = timedelta(days=3660)
Period = Literal["7d", "30d", "90d", "365d"]
Scope = Literal["office", "subtree"]

DEFINITIONS = (
    "Items belong to the office in charge. Times in minutes from opening/receipt, over items "
    "received in the period and answered so far; median and p90 are continuous percentiles. "
    "Within deadline: acknowledged by the office's ack_deadline_minutes (episodes) or replied "
    "to by the report's due time, out of the items answered or past their deadline. "
    "scope=subtree adds the items of every office below."
)


@dataclass(frozen=True, slots=True)
class Window:
    """The period asked for: ``[start, end)`` and its label."""

    start: datetime
    end: datetime
    label: str


def resolve_window(period: str | None, start: str | None, end: str | None, now: datetime) -> Window:
    """``period`` (the last 7/30/90/365 days) or ``from``/``to``; 30 days by default."""
    if period is not None and (start is not None or end is not None):
        raise ValidationError("give either period or from/to, not both")
    if start is None and end is not None:
        raise ValidationError("from: required with to")
    if start is not None:
        start_t = _parse_time(start, "from")
        end_t = _parse_time(end, "to") or now
        assert start_t is not None
        if start_t >= end_t:
            raise ValidationError("from must be before to")
        if end_t - start_t > MAX_SPAN:
            raise ValidationError("a period spans at most 3660 days")
        return Window(start_t, end_t, "custom")
    key = period or "30d"
    if key not in PERIODS:
        raise ValidationError(f"period: one of {', '.join(PERIODS)}")
    return Window(now - timedelta(days=PERIODS[key]), now, key)


def _minutes(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def office_document(row: dict[str, Any]) -> dict[str, Any]:
    """One office's figures, nested by what they measure."""
    return {
        "id": row["id"],
        "name": row["name"],
        "name_zh": row["name_zh"],
        "level": row["level"],
        "parent": row["parent_id"],
        "ack_deadline_minutes": row["ack_deadline_minutes"],
        "episodes": {
            "received": row["episodes_received"],
            "acknowledged": row["episodes_acknowledged"],
            "resolved": row["episodes_resolved"],
            "open_now": row["episodes_open_now"],
            "minutes_to_acknowledge": {
                "median": _minutes(row["ack_median"]),
                "p90": _minutes(row["ack_p90"]),
            },
            "minutes_to_resolve": {
                "median": _minutes(row["resolve_median"]),
                "p90": _minutes(row["resolve_p90"]),
            },
            "within_deadline": {
                "in_time": row["episodes_in_time"],
                "due": row["episodes_due"],
                "share": _share(row["episodes_in_time"], row["episodes_due"]),
            },
        },
        "reports": {
            "received": row["reports_received"],
            "answered": row["reports_answered"],
            "closed": row["reports_closed"],
            "open_now": row["reports_open_now"],
            "minutes_to_first_reply": {
                "median": _minutes(row["reply_median"]),
                "p90": _minutes(row["reply_p90"]),
            },
            "minutes_to_close": {
                "median": _minutes(row["close_median"]),
                "p90": _minutes(row["close_p90"]),
            },
            "within_deadline": {
                "in_time": row["reports_in_time"],
                "due": row["reports_due"],
                "share": _share(row["reports_in_time"], row["reports_due"]),
            },
        },
        "within_deadline_share": _share(
            row["episodes_in_time"] + row["reports_in_time"],
            row["episodes_due"] + row["reports_due"],
        ),
    }


CSV_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("id", ("id",)),
    ("name", ("name",)),
    ("level", ("level",)),
    ("parent", ("parent",)),
    ("ack_deadline_minutes", ("ack_deadline_minutes",)),
    (
        "episodes_received",
        (
            "episodes",
            "received",
        ),
    ),
    (
        "episodes_open_now",
        (
            "episodes",
            "open_now",
        ),
    ),
    (
        "ack_median_min",
        (
            "episodes",
            "minutes_to_acknowledge",
            "median",
        ),
    ),
    (
        "ack_p90_min",
        (
            "episodes",
            "minutes_to_acknowledge",
            "p90",
        ),
    ),
    (
        "resolve_median_min",
        (
            "episodes",
            "minutes_to_resolve",
            "median",
        ),
    ),
    (
        "resolve_p90_min",
        (
            "episodes",
            "minutes_to_resolve",
            "p90",
        ),
    ),
    (
        "episodes_in_time",
        (
            "episodes",
            "within_deadline",
            "in_time",
        ),
    ),
    (
        "episodes_due",
        (
            "episodes",
            "within_deadline",
            "due",
        ),
    ),
    (
        "reports_received",
        (
            "reports",
            "received",
        ),
    ),
    (
        "reports_open_now",
        (
            "reports",
            "open_now",
        ),
    ),
    (
        "first_reply_median_min",
        (
            "reports",
            "minutes_to_first_reply",
            "median",
        ),
    ),
    (
        "first_reply_p90_min",
        (
            "reports",
            "minutes_to_first_reply",
            "p90",
        ),
    ),
    (
        "close_median_min",
        (
            "reports",
            "minutes_to_close",
            "median",
        ),
    ),
    (
        "close_p90_min",
        (
            "reports",
            "minutes_to_close",
            "p90",
        ),
    ),
    (
        "reports_in_time",
        (
            "reports",
            "within_deadline",
            "in_time",
        ),
    ),
    (
        "reports_due",
        (
            "reports",
            "within_deadline",
            "due",
        ),
    ),
    ("within_deadline_share", ("within_deadline_share",)),
)


def _dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for key in path:
        value = value[key]
    return value


def _period_doc(window: Window, scope: str) -> dict[str, Any]:
    return {"from": iso(window.start), "to": iso(window.end), "label": window.label, "scope": scope}


PeriodQuery = Annotated[
    Period | None,
    Query(description="The last 7, 30, 90 or 365 days (default 30d); or give from/to."),
]
FromQuery = Annotated[
    str | None,
    Query(
        alias="from",
        description="Period start (ISO 8601 with zone), inclusive.",
        examples=["2026-01-01T00:00:00Z"],
    ),
]
ToQuery = Annotated[
    str | None, Query(alias="to", description="Period end (ISO 8601 with zone), exclusive; now.")
]
ScopeQuery = Annotated[
    Scope,
    Query(
        description="office: each office's own items; subtree: with every office below it "
        "(a city with its district branches)."
    ),
]


@router.get(
    "/regulators",
    summary="Every regulator office's record: received, time to acknowledge and resolve, "
    "share answered within deadline",
    description=DEFINITIONS,
)
def list_regulators(
    *,
    conn: ConnDep,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    scope: ScopeQuery = "office",
    level: Annotated[
        Literal["province", "city", "district"] | None, Query(description="Only this level.")
    ] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="JSON (default) or CSV download.")
    ] = "json",
) -> Any:
    now = datetime.now(UTC)
    window = resolve_window(period, start, end, now)
    rows = accountability.figures(
        conn,
        start=window.start,
        end=window.end,
        now=now,
        subtree=scope == "subtree",
        level=level,
    )
    docs = [office_document(r) for r in rows]
    if format == "csv":
        return _csv(
            [name for name, _ in CSV_COLUMNS],
            ([_dig(d, path) for _, path in CSV_COLUMNS] for d in docs),
            f"sunlight-regulators-{window.label}.csv",
        )
    return {
        "period": _period_doc(window, scope),
        "definitions": DEFINITIONS,
        "results": docs,
        "meta": meta(found=len(docs)),
    }


@router.get(
    "/regulators/{regulator_id}",
    summary="One office's record for a period: its own items and, for a province or city, "
    "its whole subtree",
    description=DEFINITIONS,
)
def get_regulator(
    *,
    conn: ConnDep,
    regulator_id: Annotated[str, Path(description="Office id.", max_length=64)],
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    window = resolve_window(period, start, end, now)
    office = accountability.office(conn, regulator_id)
    own = accountability.figures(
        conn, start=window.start, end=window.end, now=now, office=regulator_id
    )
    doc: dict[str, Any] = {
        "period": _period_doc(window, "office"),
        "office": office_document(own[0]),
        "children": office["children"],
        "definitions": DEFINITIONS,
        "meta": meta(),
    }
    if office["children"]:
        (tree,) = accountability.figures(
            conn, start=window.start, end=window.end, now=now, office=regulator_id, subtree=True
        )
        doc["subtree"] = office_document(tree)
    return doc


def periods_of(
    conn: ConnDep, regulator_id: str, now: datetime, *, subtree: bool
) -> dict[str, dict[str, Any]]:
    """One office's documents for each standard period, keyed by label."""
    out = {}
    for label, days in PERIODS.items():
        (row,) = accountability.figures(
            conn,
            start=now - timedelta(days=days),
            end=now,
            now=now,
            office=regulator_id,
            subtree=subtree,
        )
        out[label] = office_document(row)
    return out


def period_document(window: Window, scope: str) -> dict[str, Any]:
    """The period as the pages show it."""
    return _period_doc(window, scope)
