"""A reading as Sunlight holds it after validation: typed, UTC, in a canonical unit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Flag(StrEnum):
    """HJ 212-2017 data flags. Only N counts as valid data (HJ 75)."""

    NORMAL = "N"
    STOPPED = "F"
    MAINTENANCE = "M"
    MANUAL = "S"
    FAULT = "D"
    CALIBRATION = "C"
    OVER_RANGE = "T"
    COMMS = "B"

    @property
    def valid(self) -> bool:
        return self is Flag.NORMAL


FLAG_BITS: dict[Flag, int] = {flag: 1 << i for i, flag in enumerate(Flag)}


def flags_from_mask(mask: int) -> list[str]:
    """Decode the flag bit mask the hourly rollup stores."""
    return [flag.value for flag, bit in FLAG_BITS.items() if mask & bit]


class Period(StrEnum):
    """Averaging period of a value: an instantaneous sample, or a minute/hour/day mean."""

    SAMPLE = "sample"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated value of one pollutant at one time from one device."""

    time: datetime
    pollutant: str
    period: Period
    value: float
    unit: str
    flag: Flag

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError("Reading.time must be timezone-aware")
