"""A reading as Sunlight holds it after validation: typed, UTC, in a canonical unit."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


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


class Reading(NamedTuple):
    """One validated value of one pollutant at one time from one device.

    A named tuple, not a frozen dataclass: ingest builds tens of thousands a second and a tuple
    is several times cheaper to construct. ``time`` is timezone-aware UTC: the one constructor
    in ingest, ``domain.validation.validate_value``, refuses a naive time.
    """

    time: datetime
    pollutant: str
    period: Period
    value: float
    unit: str
    flag: Flag
