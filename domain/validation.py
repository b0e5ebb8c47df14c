"""Validating one reported value into a ``Reading``: the rules every payload format shares."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

from domain.errors import ValidationError
from domain.pollutants import Medium, get_pollutant, to_canonical
from domain.readings import Flag, Period, Reading
from domain.units import DEG_C

# Device clocks drift; anything further ahead than this is a clock or encoding fault.
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)
# Nothing Sunlight receives predates continuous monitoring; older stamps are encoding errors.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
# Quantities that may legitimately be negative.
_SIGNED_UNITS: Final = frozenset({DEG_C})


def parse_timestamp(text: object, now: datetime) -> datetime:
    """An ISO 8601 timestamp with an explicit offset, returned in UTC."""
    if not isinstance(text, str):
        raise ValidationError("timestamp must be an ISO 8601 string", reason="bad_timestamp")
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(
            f"not an ISO 8601 timestamp: {text!r}", reason="bad_timestamp"
        ) from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValidationError(
            f"timestamp {text!r} has no time zone; send UTC ('Z') or an offset",
            reason="naive_timestamp",
        )
    return check_time(ts.astimezone(UTC), now)


def check_time(ts: datetime, now: datetime) -> datetime:
    if ts > now + MAX_CLOCK_SKEW:
        raise ValidationError(
            f"timestamp {ts.isoformat()} is in the future (now {now.isoformat()})",
            reason="future_timestamp",
        )
    if ts < EARLIEST:
        raise ValidationError(
            f"timestamp {ts.isoformat()} is before {EARLIEST.date()}",
            reason="timestamp_out_of_range",
        )
    return ts


def parse_flag(text: object) -> Flag:
    if text is None:
        return Flag.NORMAL
    if not isinstance(text, str):
        raise ValidationError("flag must be a one-letter string", reason="bad_flag")
    try:
        return Flag(text.strip().upper())
    except ValueError:
        allowed = "".join(f.value for f in Flag)
        raise ValidationError(
            f"unknown data flag {text!r}; HJ 212-2017 flags are {allowed}", reason="bad_flag"
        ) from None


def parse_period(text: object) -> Period:
    if not isinstance(text, str):
        raise ValidationError("period must be a string", reason="bad_period")
    try:
        return Period(text.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in Period)
        raise ValidationError(
            f"unknown averaging period {text!r}; use one of {allowed}", reason="bad_period"
        ) from None


def validate_value(
    *,
    pollutant: object,
    value: object,
    unit: object,
    flag: Flag,
    time: datetime,
    period: Period,
    medium: Medium,
) -> Reading:
    """Check one value and express it in the canonical unit for the site's medium."""
    if not isinstance(pollutant, str):
        raise ValidationError("pollutant must be a string", reason="unknown_pollutant")
    info = get_pollutant(pollutant)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{info.code}: value must be a number", reason="bad_value")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(
            f"{info.code}: value {value!r} is not finite", reason="non_finite_value"
        )
    if not isinstance(unit, str):
        raise ValidationError(f"{info.code}: unit must be a string", reason="bad_unit")
    canonical, target = to_canonical(info, medium, number, unit)
    if canonical < 0 and target not in _SIGNED_UNITS:
        raise ValidationError(
            f"{info.code}: negative value {number} {unit} is not a concentration",
            reason="negative_value",
        )
    return Reading(
        time=time, pollutant=info.code, period=period, value=canonical, unit=target, flag=flag
    )
