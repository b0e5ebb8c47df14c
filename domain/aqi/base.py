"""What every AQI standard shares: exact numbers, breakpoint segments, categories and results."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, TypeAlias

from domain.errors import ValidationError

# A concentration as callers hand it over. Floats are taken through their shortest decimal
# string (``Decimal(str(x))``) so that 35.0 means 35 exactly, never 35.00000000000000002.
Number: TypeAlias = Decimal | Fraction | int | float | str


def exact(value: Number, *, what: str = "concentration") -> Fraction:
    """Return ``value`` as an exact non-negative fraction, or raise ``ValidationError``."""
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a number, not {value!r}", reason="bad_number")
    if isinstance(value, Fraction):
        result = value
    else:
        if isinstance(value, Decimal):
            dec = value
        elif isinstance(value, int | float | str):
            try:
                dec = Decimal(str(value).strip())
            except InvalidOperation:
                raise ValidationError(
                    f"{what} {value!r} is not a number", reason="bad_number"
                ) from None
        else:
            raise ValidationError(f"{what} must be a number, not {value!r}", reason="bad_number")
        if not dec.is_finite():
            raise ValidationError(f"{what} {value!r} is not a finite number", reason="not_finite")
        result = Fraction(dec)
    if result < 0:
        raise ValidationError(f"{what} {value!r} is negative", reason="negative")
    return result


def ceil_int(x: Fraction) -> int:
    """Round up to an integer (HJ 633)."""
    return math.ceil(x)


def round_half_up(x: Fraction) -> int:
    """Round to the nearest integer, halves up (US EPA)."""
    return math.floor(x + Fraction(1, 2))


def truncate(x: Fraction, step: Fraction) -> Fraction:
    """Truncate a non-negative value down to a multiple of ``step`` (US EPA)."""
    return math.floor(x / step) * step


def decimal_text(x: Fraction, places: int = 6) -> str:
    """Render a fraction as a plain decimal string: exact when it terminates, else rounded."""
    den = x.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den == 1:
        digits = max(twos, fives)
        scaled = x * 10**digits
        text = str(abs(scaled.numerator)).rjust(digits + 1, "0")
        whole, frac = (text[:-digits], text[-digits:]) if digits else (text, "")
        frac = frac.rstrip("0")
        sign = "-" if x < 0 else ""
        return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
    quantum = Decimal(1).scaleb(-places)
    rounded = (Decimal(x.numerator) / Decimal(x.denominator)).quantize(quantum)
    return format(rounded.normalize(), "f")


_AVERAGING_RE: Final = re.compile(r"^(\d+)\s*-?\s*(?:h|hr|hrs|hour|hours)?$")


def normalize_averaging(text: str) -> str:
    """Spell an averaging period canonically: ``1h``, ``8h``, ``24h`` or ``nowcast``."""
    key = text.strip().lower()
    if key == "nowcast":
        return key
    match = _AVERAGING_RE.match(key)
    if match is None:
        raise ValidationError(
            f"averaging period {text!r} is not like 1h, 8h or 24h", reason="unsupported_averaging"
        )
    return f"{int(match.group(1))}h"


@dataclass(frozen=True, slots=True)
class Segment:
    """One row of a breakpoint table: concentrations ``c_lo..c_hi`` map to ``i_lo..i_hi``."""

    c_lo: Fraction
    c_hi: Fraction
    i_lo: int
    i_hi: int

    def interpolate(self, c: Fraction) -> Fraction:
        """The exact linear index for ``c`` (the formula both standards share)."""
        return Fraction(self.i_hi - self.i_lo) / (self.c_hi - self.c_lo) * (c - self.c_lo) + (
            self.i_lo
        )


@dataclass(frozen=True, slots=True)
class Table:
    """A breakpoint table for one pollutant and averaging period, in its standard's unit."""

    pollutant: str
    averaging: str
    unit: str
    segments: tuple[Segment, ...]

    @property
    def top(self) -> Fraction:
        return self.segments[-1].c_hi

    def segment_for(self, c: Fraction) -> Segment | None:
        """The first segment containing ``c``; ``None`` below the first or above the last."""
        for seg in self.segments:
            if seg.c_lo <= c <= seg.c_hi:
                return seg
        return None


def segments(rows: Iterable[tuple[str, str, int, int]]) -> tuple[Segment, ...]:
    """Build segments from decimal-string rows, so table data stays exact."""
    return tuple(Segment(Fraction(lo), Fraction(hi), ilo, ihi) for lo, hi, ilo, ihi in rows)


@dataclass(frozen=True, slots=True)
class Category:
    """An AQI band: code, level (1 = best), names and the colour the standard prescribes."""

    code: str
    level: int
    name_en: str
    name_zh: str
    colour: str
    low: int
    high: int | None  # None: open-ended top band


def category_for(categories: tuple[Category, ...], aqi: int) -> Category:
    """The band that contains ``aqi``."""
    for cat in categories:
        if aqi >= cat.low and (cat.high is None or aqi <= cat.high):
            return cat
    raise ValueError(f"no category for AQI {aqi}")  # unreachable with complete tables


@dataclass(frozen=True, slots=True)
class SubIndex:
    """One pollutant's sub-index (IAQI) from one averaging period.

    ``concentration`` is the value as given (exact), in ``unit``; ``truncated`` is what the
    equation used when the standard truncates first (US EPA). ``index`` is ``None`` when the
    standard does not let this value define an index; ``reason`` then says why, and
    ``at_least`` gives a lower bound when the standard implies one. ``counted`` says whether it
    enters the AQI (a value outside the report's set, or without an index, does not).
    ``reason`` may also annotate a computed index (e.g. ``above_top_breakpoint``).
    """

    pollutant: str
    averaging: str
    concentration: Fraction
    unit: str
    index: int | None
    truncated: Fraction | None = None
    at_least: int | None = None
    counted: bool = True
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AQIResult:
    """An AQI with its category, primary and over-standard pollutants and every sub-index.

    ``complete`` is false when a counted pollutant's sub-index could not be determined; the
    AQI is then a lower bound computed from what could be (and from ``at_least`` bounds).
    """

    standard: str
    report: str | None
    aqi: int | None
    category: Category | None
    primary_pollutants: tuple[str, ...]
    over_standard: tuple[str, ...]
    sub_indices: tuple[SubIndex, ...]
    complete: bool


def summarize(
    standard: str,
    report: str | None,
    subs: Iterable[SubIndex],
    categories: tuple[Category, ...],
    *,
    primary_above: int | None,
    over_standard_above: int | None,
) -> AQIResult:
    """Combine sub-indices: AQI = max, primary = all at the max, over-standard above a level."""
    subs = tuple(subs)
    counted = [s for s in subs if s.counted]
    levels: dict[str, int] = {}
    resolved: set[str] = set()
    for s in counted:
        value = s.index if s.index is not None else s.at_least
        if s.index is not None:
            resolved.add(s.pollutant)
        if value is not None:
            levels[s.pollutant] = max(levels.get(s.pollutant, 0), value)
    complete = all(s.pollutant in resolved for s in counted)
    aqi = max(levels.values()) if levels else None
    primary: tuple[str, ...] = ()
    over: tuple[str, ...] = ()
    category = None
    if aqi is not None:
        category = category_for(categories, aqi)
        if primary_above is None or aqi > primary_above:
            primary = tuple(p for p, v in levels.items() if v == aqi)
        if over_standard_above is not None:
            over = tuple(p for p, v in levels.items() if v > over_standard_above)
    return AQIResult(standard, report, aqi, category, primary, over, subs, complete)


def to_json(result: AQIResult) -> dict[str, Any]:
    """A JSON-ready dict of a result; concentrations are decimal strings to stay exact."""
    cat = result.category
    return {
        "standard": result.standard,
        "report": result.report,
        "aqi": result.aqi,
        "complete": result.complete,
        "category": None
        if cat is None
        else {
            "code": cat.code,
            "level": cat.level,
            "name_en": cat.name_en,
            "name_zh": cat.name_zh,
            "colour": cat.colour,
        },
        "primary_pollutants": list(result.primary_pollutants),
        "over_standard": list(result.over_standard),
        "sub_indices": [
            {
                "pollutant": s.pollutant,
                "averaging": s.averaging,
                "concentration": decimal_text(s.concentration),
                "unit": s.unit,
                "truncated": None if s.truncated is None else decimal_text(s.truncated),
                "index": s.index,
                "at_least": s.at_least,
                "counted": s.counted,
                "reason": s.reason,
            }
            for s in result.sub_indices
        ],
    }
