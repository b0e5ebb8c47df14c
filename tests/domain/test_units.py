"""Units and the conversions HJ 75 defines."""

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
