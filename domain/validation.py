"""Validating one reported value into a ``Reading``: the rules every payload format shares."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

from domain import units as u
from domain.errors import ValidationError
from domain.pollutants import (
    Medium,
    Pollutant,
    canonical_units,
    gas_state,
    get_pollutant,
    to_canonical,
)
from domain.readings import Flag, Period, Reading

# Device clocks drift; anything further ahead than this is a clock or encoding fault.
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)
# Nothing Sunlight receives predates continuous monitoring; older stamps are encoding errors.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
# Quantities that may legitimately be negative: temperatures, and pressures, since a flue's
# static pressure (HJ 212 a01013, kPa against the atmosphere) is below zero under induced draft.
_SIGNED_UNITS: Final = frozenset({u.DEG_C, u.KPA})
# No instrument reports a magnitude past 10^15 in any unit Sunlight stores (HJ 212's widest
# value field has 14 digits before the point). Larger numbers are faults, and their squares
# would overflow PostgreSQL's averages and stall every hourly mean they fall in.
MAX_MAGNITUDE: Final = 1e15


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
    try:
        utc = ts.astimezone(UTC)
    except OverflowError:
        # Year 1 east of Greenwich or year 9999 west of it: no UTC instant (a clock fault).
        raise ValidationError(
            f"timestamp {text!r} is outside the calendar in UTC",
            reason="timestamp_out_of_range" if ts.year < EARLIEST.year else "future_timestamp",
        ) from None
    return check_time(utc, now)


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
    if type(text) is str:
        exact = _FLAGS.get(text)  # the usual "N", without stripping and the enum's look-up
        if exact is not None:
            return exact
    if not isinstance(text, str):
        raise ValidationError("flag must be a one-letter string", reason="bad_flag")
    try:
        return Flag(text.strip().upper())
    except ValueError:
        allowed = "".join(f.value for f in Flag)
        raise ValidationError(
            f"unknown data flag {text!r}; HJ 212-2017 flags are {allowed}", reason="bad_flag"
        ) from None


_FLAGS: Final = {flag.value: flag for flag in Flag}


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
    if time.utcoffset() is None:
        raise ValueError("a reading's time must be timezone-aware")  # a caller's bug, not data
    return value_reading(pollutant, value, unit, flag, time, period, medium)


def value_reading(  # noqa: PLR0917 - positional on purpose: called once per reading
    pollutant: object,
    value: object,
    unit: object,
    flag: Flag,
    time: datetime,
    period: Period,
    medium: Medium,
) -> Reading:
    """``validate_value`` for a parser whose ``time`` is aware UTC already (checked once per
    message, by ``parse_timestamp`` or ``check_time``), called positionally."""
    # The usual value: a float or int (not a bool) of a catalogue name in a unit seen before,
    # answered from one cache look-up with the same arithmetic as the full path below.
    cls = type(value)
    if (cls is float or cls is int) and type(pollutant) is str and type(unit) is str:
        known = _RESOLVED.get((pollutant, medium, unit))
        if known is not None:
            number: float = value if cls is float else _int_to_float(value)  # type: ignore[assignment,arg-type]
            if math.isfinite(number):
                info, source, target, mass, volume = known
                canonical = (
                    number if source == target else u.convert(number, source, target, mass, volume)
                )
                if (0 <= canonical <= MAX_MAGNITUDE) or (
                    target in _SIGNED_UNITS and -MAX_MAGNITUDE <= canonical <= MAX_MAGNITUDE
                ):
                    return Reading(time, info.code, period, canonical, target, flag)
    return _validate_value(
        pollutant=pollutant,
        value=value,
        unit=unit,
        flag=flag,
        time=time,
        period=period,
        medium=medium,
    )


def _int_to_float(value: int) -> float:
    """``float(value)``, or infinity for an integer of hundreds of digits past every float."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


# (name as sent, medium, unit as sent) → (catalogue entry, source unit, canonical unit, and the
# molar mass and volume of ``gas_state``), for combinations that validated; refusals are never
# cached. Devices repeat a handful.
_RESOLVED: dict[tuple[object, Medium, object], tuple[Pollutant, str, str, float | None, float]] = {}
_RESOLVED_MAX: Final = 4096


def _validate_value(
    *,
    pollutant: object,
    value: object,
    unit: object,
    flag: Flag,
    time: datetime,
    period: Period,
    medium: Medium,
) -> Reading:
    if not isinstance(pollutant, str):
        raise ValidationError("pollutant must be a string", reason="unknown_pollutant")
    info = get_pollutant(pollutant)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{info.code}: value must be a number", reason="bad_value")
    number = float(value) if isinstance(value, float) else _int_to_float(value)
    if not math.isfinite(number):
        raise ValidationError(
            f"{info.code}: value {value!r} is not finite", reason="non_finite_value"
        )
    if not isinstance(unit, str):
        raise ValidationError(f"{info.code}: unit must be a string", reason="bad_unit")
    canonical, target = to_canonical(info, medium, number, unit)
    if len(_RESOLVED) < _RESOLVED_MAX:
        _RESOLVED[(pollutant, medium, unit)] = (
            info,
            *canonical_units(info, medium, unit),
            *gas_state(info, medium),
        )
    if canonical < 0 and target not in _SIGNED_UNITS:
        raise ValidationError(
            f"{info.code}: negative value {number} {unit} is not a concentration",
            reason="negative_value",
        )
    if not abs(canonical) <= MAX_MAGNITUDE:  # also infinity, from a conversion that overflowed
        raise ValidationError(
            f"{info.code}: value {number} {unit} is beyond any instrument's range"
            f" (magnitude over {MAX_MAGNITUDE:.0e} {target})",
            reason="value_out_of_range",
        )
    return Reading(
        time=time, pollutant=info.code, period=period, value=canonical, unit=target, flag=flag
    )
