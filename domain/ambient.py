"""GB 3095-2012 ambient air limits: the rules stations are judged by, as data.

Zone class 1 (nature reserves, scenic areas) takes the grade I limits, class 2 the grade II.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from domain.readings import Period

STANDARD: Final = "GB 3095-2012"


@dataclass(frozen=True, slots=True)
class AmbientLimit:
    pollutant: str
    period: Literal[Period.HOUR, Period.DAY]
    value: float
    unit: str
    standard: str


# Daily limits of these pollutants bound the day's maximum 8-hour moving mean, not its 24-hour
# mean (GB 3095-2012: O3 日最大8小时平均), judged by domain.compliance.judge_daily_max_8h.
DAILY_MAX_8H: Final = frozenset({"o3"})

# (pollutant, period, unit, grade I, grade II) — µg/m³ except CO in mg/m³.
_TABLE: Final = (
    ("so2", Period.HOUR, "ug/m3", 150.0, 500.0),
    ("so2", Period.DAY, "ug/m3", 50.0, 150.0),
    ("no2", Period.HOUR, "ug/m3", 200.0, 200.0),
    ("no2", Period.DAY, "ug/m3", 80.0, 80.0),
    ("co", Period.HOUR, "mg/m3", 10.0, 10.0),
    ("co", Period.DAY, "mg/m3", 4.0, 4.0),
    ("o3", Period.HOUR, "ug/m3", 160.0, 200.0),
    ("o3", Period.DAY, "ug/m3", 100.0, 160.0),  # the day's maximum 8-hour mean
    ("pm10", Period.DAY, "ug/m3", 50.0, 150.0),
    ("pm25", Period.DAY, "ug/m3", 35.0, 75.0),
)


def ambient_limits(zone: int) -> tuple[AmbientLimit, ...]:
    """The 1 h and daily limits for a station in zone class 1 or 2."""
    if zone not in (1, 2):
        raise ValueError(f"GB 3095 zone class is 1 or 2, not {zone}")
    grade = "grade I" if zone == 1 else "grade II"
    return tuple(
        AmbientLimit(
            pol,
            period,  # type: ignore[arg-type]
            one if zone == 1 else two,
            unit,
            f"{STANDARD} {grade}"
            + (
                ", daily maximum 8-hour mean"
                if (pol in DAILY_MAX_8H and period is Period.DAY)
                else ""
            ),
        )
        for pol, period, unit, one, two in _TABLE
    )
