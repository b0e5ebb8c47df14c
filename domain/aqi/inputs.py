"""Turning caller input into exact AQI values: CLI ``POLLUTANT=VALUE[@AVERAGING]`` and mappings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal

from domain.aqi import epa, hj633
from domain.aqi.base import Number, exact, normalize_averaging
from domain.errors import ValidationError
from domain.pollutants import get_pollutant

Standard = Literal["hj633", "us-epa"]
STANDARDS: Final[tuple[str, ...]] = ("hj633", "us-epa")

_SUPPORTED: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "hj633": hj633.SUPPORTED,
    "us-epa": epa.SUPPORTED,
}
_DEFAULTS: Final[dict[str, dict[str, str]]] = {
    "hj633": hj633.DEFAULT_AVERAGING,
    "us-epa": epa.DEFAULT_AVERAGING,
}


def check_standard(standard: str) -> None:
    """Raise ``ValidationError`` for a standard other than ``hj633`` or ``us-epa``."""
    if standard not in STANDARDS:
        raise ValidationError(
            f"unknown AQI standard {standard!r} (use hj633 or us-epa)", reason="unknown_standard"
        )


def pollutant_code(standard: str, name: str) -> str:
    """The Sunlight code of an AQI pollutant named by code or alias (``PM2.5`` → ``pm25``)."""
    check_standard(standard)
    code = get_pollutant(name).code
    if code not in _SUPPORTED[standard]:
        raise ValidationError(
            f"{name!r} is not an AQI pollutant of {standard} "
            f"(use one of {', '.join(_SUPPORTED[standard])})",
            reason="unknown_pollutant",
        )
    return code


def averaging_for(standard: str, pollutant: str, text: str | None) -> str:
    """The canonical averaging period, the standard's default for the pollutant when absent."""
    if text is None or not text.strip():
        return _DEFAULTS[standard][pollutant]
    averaging = normalize_averaging(text)
    supported = _SUPPORTED[standard][pollutant]
    if averaging not in supported:
        raise ValidationError(
            f"{standard} rates {pollutant} over {' or '.join(supported)}, not {text!r}",
            reason="unsupported_averaging",
        )
    return averaging


def parse_arg(standard: str, arg: str) -> tuple[tuple[str, str], Decimal]:
    """Parse one ``POLLUTANT=VALUE[@AVERAGING]`` argument, e.g. ``pm25=35@24h``."""
    name, sep, rest = arg.partition("=")
    if not sep or not name.strip():
        raise ValidationError(
            f"expected POLLUTANT=VALUE[@AVERAGING], got {arg!r}", reason="bad_argument"
        )
    number, at, averaging_text = rest.partition("@")
    pollutant = pollutant_code(standard, name)
    if at and not averaging_text.strip():
        raise ValidationError(
            f"empty averaging period after '@' in {arg!r}", reason="unsupported_averaging"
        )
    averaging = averaging_for(standard, pollutant, averaging_text if at else None)
    exact(number, what=f"{pollutant} value")  # the same checks as compute(): number, finite, >= 0
    return (pollutant, averaging), Decimal(number.strip())


def parse_args(standard: str, args: Iterable[str]) -> dict[tuple[str, str], Decimal]:
    """Parse CLI arguments into the mapping ``compute`` takes; a repeated key is an error."""
    check_standard(standard)
    values: dict[tuple[str, str], Decimal] = {}
    for arg in args:
        key, value = parse_arg(standard, arg)
        if key in values:
            raise ValidationError(
                f"{key[0]}@{key[1]} is given more than once", reason="duplicate_value"
            )
        values[key] = value
    if not values:
        raise ValidationError("give at least one POLLUTANT=VALUE", reason="no_values")
    return values


def normalize_values(
    standard: str, values: Mapping[tuple[str, str], Number]
) -> dict[tuple[str, str], Fraction]:
    """Validate a ``(pollutant, averaging) → value`` mapping into exact fractions."""
    check_standard(standard)
    result: dict[tuple[str, str], Fraction] = {}
    for (name, averaging_text), value in values.items():
        pollutant = pollutant_code(standard, name)
        averaging = averaging_for(standard, pollutant, averaging_text)
        if (pollutant, averaging) in result:
            raise ValidationError(
                f"{pollutant}@{averaging} is given more than once", reason="duplicate_value"
            )
        result[(pollutant, averaging)] = exact(value, what=f"{pollutant}@{averaging}")
    return result
