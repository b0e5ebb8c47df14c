"""Air Quality Index: China HJ 633-2012 and US EPA, computed exactly from concentrations."""

from __future__ import annotations

from collections.abc import Mapping

from domain.aqi import epa, hj633
from domain.aqi.base import AQIResult, Category, Number, SubIndex, to_json
from domain.aqi.epa import nowcast
from domain.aqi.inputs import Standard, normalize_values, parse_args
from domain.errors import ValidationError

__all__ = [
    "AQIResult",
    "Category",
    "Number",
    "Standard",
    "SubIndex",
    "compute",
    "nowcast",
    "parse_args",
    "to_json",
]


def compute(
    standard: Standard,
    values: Mapping[tuple[str, str], Number],
    *,
    report: hj633.Report | None = None,
    ambient_units: bool = False,
) -> AQIResult:
    """The AQI of ``values`` keyed by (pollutant code, averaging period like ``1h``/``8h``/``24h``).

    Values are Decimal, str, int, Fraction or float (floats via their decimal string); they are
    in the standard's units: HJ 633 µg/m³ (CO mg/m³); US EPA ppm (O3, CO), ppb (SO2, NO2), µg/m³
    (PM) — or Sunlight's ambient units with ``ambient_units=True`` (US EPA only converts).
    ``report`` (HJ 633 only) picks the hourly or daily AQI; by default it is hourly when any 1 h
    value other than O3 is given, daily otherwise.
    """
    exact_values = normalize_values(standard, values)
    if standard == "hj633":
        return hj633.compute(exact_values, report)
    if report is not None:
        raise ValidationError("report applies to hj633 only", reason="bad_report")
    return epa.compute(exact_values, ambient_units=ambient_units)
