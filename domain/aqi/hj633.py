"""China's AQI (HJ 633-2012): breakpoint tables, IAQI, the table notes, hourly and daily AQI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from fractions import Fraction
from typing import Final, Literal

from domain import units as u
from domain.aqi.base import (
    AQIResult,
    Category,
    Segment,
    SubIndex,
    Table,
    ceil_int,
    summarize,
)
from domain.errors import ValidationError

# Facts this module relies on (HJ 633-2012, Table 1 and its notes; section 7 on reports):
#
# * IAQI is the linear interpolation between breakpoints, rounded UP to an integer.
# * Note 1: the 1 h limits of SO2, NO2 and CO are used only in the hourly (real-time) report; the
#   daily report uses their 24 h means.
# * Note 2: an SO2 1 h mean above 800 µg/m³ gets no IAQI from the 1 h table; the SO2 IAQI is the
#   one computed from the SO2 24 h mean. When no 24 h mean is supplied we do NOT invent a "200+"
#   value: the substituted 24 h IAQI may well be below 200, so no bound follows. The SO2 sub-index
#   is then undetermined (``reason="so2_1h_above_800"``) and the result is marked incomplete.
# * Note 3: an O3 8 h mean above 800 µg/m³ gets no IAQI; the O3 IAQI is the 1 h one.
# * Above the top breakpoint of any other table the IAQI is 500.
# * Daily report (日报): SO2, NO2, CO, PM10, PM2.5 24 h means, plus the O3 daily maximum 1 h mean
#   and the O3 daily maximum 8 h moving mean — seven indicators, all in the AQI.
# * Hourly report (实时报): SO2, NO2, CO, O3, PM10 and PM2.5 1 h means. HJ 633 has no 1 h table for
#   particles; the national real-time platform (and libraries that follow it) rate 1 h PM means on
#   the 24 h table, which we do too (``reason="pm_1h_on_24h_table"``). O3 8 h and PM 24 h moving
#   means belong to the hourly report's figures but not to its AQI here: they are rated and
#   shown with ``counted=False``. (Verify against the platform if that convention changes.)

STANDARD: Final = "hj633"
Report = Literal["hourly", "daily"]

IAQI_LEVELS: Final = (0, 50, 100, 150, 200, 300, 400, 500)

# Breakpoints per (pollutant, averaging), aligned with IAQI_LEVELS; CO in mg/m3, others ug/m3.
# A column shorter than IAQI_LEVELS ends where the standard stops (SO2 1 h, O3 8 h).
BREAKPOINTS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("so2", "24h"): ("0", "50", "150", "475", "800", "1600", "2100", "2620"),
    ("so2", "1h"): ("0", "150", "500", "650", "800"),
    ("no2", "24h"): ("0", "40", "80", "180", "280", "565", "750", "940"),
    ("no2", "1h"): ("0", "100", "200", "700", "1200", "2340", "3090", "3840"),
    ("pm10", "24h"): ("0", "50", "150", "250", "350", "420", "500", "600"),
    ("co", "24h"): ("0", "2", "4", "14", "24", "36", "48", "60"),
    ("co", "1h"): ("0", "5", "10", "35", "60", "90", "120", "150"),
    ("o3", "1h"): ("0", "160", "200", "300", "400", "800", "1000", "1200"),
    ("o3", "8h"): ("0", "100", "160", "215", "265", "800"),
    ("pm25", "24h"): ("0", "35", "75", "115", "150", "250", "350", "500"),
}

UNITS: Final[dict[str, str]] = {
    "so2": u.UG_M3,
    "no2": u.UG_M3,
    "co": u.MG_M3,
    "o3": u.UG_M3,
    "pm10": u.UG_M3,
    "pm25": u.UG_M3,
}


def _table(key: tuple[str, str], column: tuple[str, ...]) -> Table:
    points = [Fraction(c) for c in column]
    segs = tuple(
        Segment(points[k], points[k + 1], IAQI_LEVELS[k], IAQI_LEVELS[k + 1])
        for k in range(len(points) - 1)
    )
    return Table(key[0], key[1], UNITS[key[0]], segs)


TABLES: Final[dict[tuple[str, str], Table]] = {k: _table(k, v) for k, v in BREAKPOINTS.items()}

# Which table rates which supplied value: 1 h particle means use the 24 h tables (see above).
TABLE_FOR: Final[dict[tuple[str, str], tuple[str, str]]] = {
    **{k: k for k in BREAKPOINTS},
    ("pm10", "1h"): ("pm10", "24h"),
    ("pm25", "1h"): ("pm25", "24h"),
}

SUPPORTED: Final[dict[str, tuple[str, ...]]] = {
    "so2": ("1h", "24h"),
    "no2": ("1h", "24h"),
    "co": ("1h", "24h"),
    "o3": ("1h", "8h"),
    "pm10": ("1h", "24h"),
    "pm25": ("1h", "24h"),
}

# What a bare ``pm25=35`` means: the daily report's averaging.
DEFAULT_AVERAGING: Final[dict[str, str]] = {
    "so2": "24h",
    "no2": "24h",
    "co": "24h",
    "o3": "8h",
    "pm10": "24h",
    "pm25": "24h",
}

REPORT_SETS: Final[dict[str, frozenset[tuple[str, str]]]] = {
    "hourly": frozenset(
        {("so2", "1h"), ("no2", "1h"), ("co", "1h"), ("o3", "1h"), ("pm10", "1h"), ("pm25", "1h")}
    ),
    "daily": frozenset(
        {
            ("so2", "24h"),
            ("no2", "24h"),
            ("co", "24h"),
            ("o3", "1h"),  # the daily maximum 1 h mean
            ("o3", "8h"),  # the daily maximum 8 h moving mean
            ("pm10", "24h"),
            ("pm25", "24h"),
        }
    ),
}

SO2_1H_LIMIT: Final = Fraction(800)  # HJ 633 Table 1 note 2
O3_8H_LIMIT: Final = Fraction(800)  # HJ 633 Table 1 note 3

CATEGORIES: Final[tuple[Category, ...]] = (
    Category("excellent", 1, "Excellent", "优", "#00E400", 0, 50),
    Category("good", 2, "Good", "良", "#FFFF00", 51, 100),
    Category("lightly_polluted", 3, "Lightly polluted", "轻度污染", "#FF7E00", 101, 150),
    Category("moderately_polluted", 4, "Moderately polluted", "中度污染", "#FF0000", 151, 200),
    Category("heavily_polluted", 5, "Heavily polluted", "重度污染", "#99004C", 201, 300),
    Category("severely_polluted", 6, "Severely polluted", "严重污染", "#7E0023", 301, None),
)


def check_supported(pollutant: str, averaging: str) -> None:
    """Raise ``ValidationError`` unless HJ 633 rates ``pollutant`` over ``averaging``."""
    if pollutant not in SUPPORTED:
        raise ValidationError(
            f"{pollutant!r} is not an HJ 633 AQI pollutant (use one of {', '.join(SUPPORTED)})",
            reason="unknown_pollutant",
        )
    if averaging not in SUPPORTED[pollutant]:
        raise ValidationError(
            f"HJ 633 rates {pollutant} over {' or '.join(SUPPORTED[pollutant])}, not {averaging}",
            reason="unsupported_averaging",
        )


def iaqi(pollutant: str, averaging: str, concentration: Fraction) -> SubIndex:
    """The IAQI of one value on its own (the table notes apply; report rules do not)."""
    check_supported(pollutant, averaging)
    table = TABLES[TABLE_FOR[(pollutant, averaging)]]
    unit = UNITS[pollutant]

    def result(index: int | None, reason: str | None) -> SubIndex:
        return SubIndex(pollutant, averaging, concentration, unit, index, reason=reason)

    if (pollutant, averaging) == ("so2", "1h") and concentration > SO2_1H_LIMIT:
        return result(None, "so2_1h_above_800")
    if (pollutant, averaging) == ("o3", "8h") and concentration > O3_8H_LIMIT:
        return result(None, "o3_8h_above_800")
    note = "pm_1h_on_24h_table" if table.averaging != averaging else None
    if concentration > table.top:
        return result(500, "above_top_breakpoint")
    segment = table.segment_for(concentration)
    assert segment is not None  # concentrations are validated non-negative and <= top here
    return result(ceil_int(segment.interpolate(concentration)), note)


def infer_report(keys: Iterable[tuple[str, str]]) -> Report:
    """Hourly when a 1 h value of anything but O3 is given (O3 1 h is in both reports)."""
    return "hourly" if any(a == "1h" and p != "o3" for p, a in keys) else "daily"


def compute(values: Mapping[tuple[str, str], Fraction], report: Report | None = None) -> AQIResult:
    """The hourly or daily AQI from exact values keyed by (pollutant, averaging)."""
    if report is None:
        report = infer_report(values)
    if report not in REPORT_SETS:
        raise ValidationError(
            f"HJ 633 report must be 'hourly' or 'daily', not {report!r}", reason="bad_report"
        )
    members = REPORT_SETS[report]
    so2_1h = values.get(("so2", "1h"))
    so2_24h_replaces = report == "hourly" and so2_1h is not None and so2_1h > SO2_1H_LIMIT
    subs: list[SubIndex] = []
    for (pollutant, averaging), c in values.items():
        sub = iaqi(pollutant, averaging, c)
        counted = (pollutant, averaging) in members
        reason = sub.reason
        if so2_24h_replaces and (pollutant, averaging) == ("so2", "24h"):
            counted, reason = True, "so2_24h_replaces_1h_above_800"
        elif not counted:
            reason = f"not_in_{report}_report"
        subs.append(replace(sub, counted=counted, reason=reason))
    return summarize(STANDARD, report, subs, CATEGORIES, primary_above=50, over_standard_above=100)
