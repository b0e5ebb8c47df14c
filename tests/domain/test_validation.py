"""Value magnitudes: what no instrument reports is refused with its own reason, on the fast
path (a unit seen before) and the full one alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import ValidationError
from domain.pollutants import Medium
from domain.readings import Flag, Period
from domain.validation import MAX_MAGNITUDE, value_reading

T = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def reading(pollutant: str, value: float, unit: str, medium: Medium):  # type: ignore[no-untyped-def]
    return value_reading(pollutant, value, unit, Flag.NORMAL, T, Period.MINUTE, medium)


@pytest.mark.parametrize("warm", [False, True], ids=["first-sight", "cached-unit"])
@pytest.mark.parametrize(
    ("pollutant", "value", "unit", "medium"),
    [
        ("so2", 1e300, "mg/m3", Medium.FLUE_GAS),
        ("so2", MAX_MAGNITUDE * 1.0000001, "mg/m3", Medium.FLUE_GAS),
        ("so2", 10**16, "mg/m3", Medium.FLUE_GAS),
        # Finite as sent, infinite once converted to µg/m³: used to be stored as infinity.
        ("so2", 1e306, "ppm", Medium.AMBIENT),
        ("temperature", -1e16, "degC", Medium.FLUE_GAS),
    ],
)
def test_magnitudes_past_any_instrument_are_refused(
    pollutant: str, value: float, unit: str, medium: Medium, warm: bool
) -> None:
    if warm:  # a small value first puts the (pollutant, medium, unit) in the fast path's cache
        reading(pollutant, 1.0, unit, medium)
    with pytest.raises(ValidationError) as refused:
        reading(pollutant, value, unit, medium)
    assert refused.value.reason == "value_out_of_range"
    assert "beyond any instrument's range" in str(refused.value)


@pytest.mark.parametrize("warm", [False, True], ids=["first-sight", "cached-unit"])
def test_the_largest_allowed_magnitude_is_stored(warm: bool) -> None:
    if warm:
        reading("so2", 1.0, "mg/m3", Medium.FLUE_GAS)
    assert reading("so2", MAX_MAGNITUDE, "mg/m3", Medium.FLUE_GAS).value == MAX_MAGNITUDE
    assert reading("temperature", -1e14, "degC", Medium.FLUE_GAS).value == -1e14
