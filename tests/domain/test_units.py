"""Units and the conversions HJ 75 (flue gas) and GB 3095 (ambient air) define."""

from __future__ import annotations

import pytest

from domain.errors import UnitError, ValidationError
from domain.pollutants import Medium, get_pollutant, to_canonical
from domain.units import convert, normalize_unit


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("mg/m³", "mg/m3"), ("µg/m³", "ug/m3"), ("μg/m3", "ug/m3"), ("MG/L", "mg/L"), ("℃", "degC")],
)
def test_unit_spellings(text: str, canonical: str) -> None:
    """Common spellings of a unit normalise to one canonical form."""
    assert normalize_unit(text) == canonical


def test_unknown_unit() -> None:
    """An unknown unit is an error naming it."""
    with pytest.raises(UnitError, match="furlongs"):
        normalize_unit("furlongs")


def test_ppm_to_mg_m3_standard_state() -> None:
    """ppm → mg/m³ uses M/22.4 (HJ 75): 1 ppm SO2 is 64/22.4 mg/m³."""
    assert convert(1.0, "ppm", "mg/m3", 64.0) == pytest.approx(64 / 22.4)
    assert convert(1.0, "ppb", "ug/m3", 46.0) == pytest.approx(46 / 22.4)


@pytest.mark.parametrize(
    ("pollutant", "molar_mass"),
    [("so2", 64.066), ("no2", 46.0055), ("o3", 47.9982), ("co", 28.0101)],
)
def test_ambient_mixing_ratios_convert_at_the_reference_state(
    pollutant: str, molar_mass: float
) -> None:
    """Ambient ppb/ppm → µg/m³ (CO mg/m³) at 298.15 K, 101325 Pa (GB 3095-2012 as amended in
    2018: M/24.45, unrounded M), not at flue gas's 273 K: 10 ppb SO2 is 26.2 µg/m³, not 28.6."""
    gas = get_pollutant(pollutant)
    mixing = "ppm" if pollutant == "co" else "ppb"
    value, unit = to_canonical(gas, Medium.AMBIENT, 10.0, mixing)
    assert unit == ("mg/m3" if pollutant == "co" else "ug/m3")
    assert value == pytest.approx(10 * molar_mass / 24.45)


@pytest.mark.parametrize(
    ("pollutant", "ppb", "aqi"),
    [("no2", 53, 50), ("no2", 75, 73), ("no2", 100, 100), ("so2", 75, 100), ("so2", 304, 200)],
)
def test_an_ambient_ppb_reaches_the_epa_index_as_the_same_ppb(
    pollutant: str, ppb: int, aqi: int
) -> None:
    """A station reporting NO2/SO2 in ppb is rated by US EPA on that same ppb: stored as a
    float in µg/m³ (NO2 75 ppb comes back as 74.99999999999999) and converted back, it is not
    truncated a whole ppb down (NO2 53 ppb is AQI 50, not 49)."""
    from decimal import Decimal

    from domain.aqi import compute

    stored, _unit = to_canonical(get_pollutant(pollutant), Medium.AMBIENT, float(ppb), "ppb")
    result = compute("us-epa", {(pollutant, "1h"): Decimal(str(stored))}, ambient_units=True)
    assert result.aqi == aqi


def test_canonical_units_depend_on_medium() -> None:
    """SO2 is µg/m³ in ambient air and mg/m³ in flue gas; values convert between scales."""
    so2 = get_pollutant("SO2")
    assert to_canonical(so2, Medium.AMBIENT, 0.5, "mg/m3") == (pytest.approx(500.0), "ug/m3")
    assert to_canonical(so2, Medium.FLUE_GAS, 35.0, "mg/m³") == (35.0, "mg/m3")


def test_unit_that_does_not_fit() -> None:
    """COD cannot be given in mg/m³, and PM2.5 is not a flue-gas pollutant."""
    with pytest.raises(UnitError, match="mg/L"):
        to_canonical(get_pollutant("cod"), Medium.WASTEWATER, 30.0, "mg/m3")
    with pytest.raises(ValidationError, match="not measured in flue_gas"):
        to_canonical(get_pollutant("pm2.5"), Medium.FLUE_GAS, 30.0, "ug/m3")
