"""US EPA AQI (2024 PM2.5 revision): worked examples, breakpoints, truncation, rules, NowCast."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.aqi import compute, nowcast
from domain.aqi.base import Number, SubIndex, category_for
from domain.aqi.epa import CATEGORIES, ROWS, TABLE_FOR, from_ambient, rate
from domain.errors import ValidationError


def sub(result_subs: tuple[SubIndex, ...], pollutant: str, averaging: str) -> SubIndex:
    return next(s for s in result_subs if (s.pollutant, s.averaging) == (pollutant, averaging))


@pytest.mark.parametrize(
    ("pollutant", "averaging", "value", "expected"),
    [
        ("pm25", "24h", "9.0", 50),
        ("pm25", "24h", "9.1", 51),
        ("pm25", "24h", "35.4", 100),
        ("pm25", "24h", "35.5", 101),
        ("pm25", "24h", "55.4", 150),
        ("pm25", "24h", "125.4", 200),
        ("pm25", "24h", "225.4", 300),
        ("pm10", "24h", "155", 101),
        ("co", "8h", "4.5", 51),
        ("no2", "1h", "360", 150),
        ("o3", "8h", "0.070", 100),
        ("o3", "1h", "0.125", 101),
    ],
)
def test_worked_examples(pollutant: str, averaging: str, value: str, expected: int) -> None:
    """Each worked example of standards.md §5 gives its sub-index and, alone, that AQI."""
    result = compute("us-epa", {(pollutant, averaging): value})
    assert sub(result.sub_indices, pollutant, averaging).index == expected
    assert result.aqi == expected


def test_nowcast_worked_example() -> None:
    """Twelve hours of 10 µg/m³ give a NowCast of 10.0 and an AQI of 53."""
    value = nowcast([10] * 12)
    assert value == Fraction(10)
    assert compute("us-epa", {("pm25", "nowcast"): value}).aqi == 53


def _boundaries() -> list[tuple[str, str, str, int]]:
    return [
        (p, a, c, i)
        for (p, a), rows in ROWS.items()
        for lo, hi, i_lo, i_hi in rows
        for c, i in ((lo, i_lo), (hi, i_hi))
    ]


@pytest.mark.parametrize(("pollutant", "averaging", "bp", "level"), _boundaries())
def test_every_breakpoint(pollutant: str, averaging: str, bp: str, level: int) -> None:
    """At each BP_lo and BP_hi of every row the index is exactly that row's I_lo or I_hi."""
    assert rate(pollutant, averaging, Fraction(bp)).index == level


@pytest.mark.parametrize(
    ("pollutant", "averaging", "value", "truncated", "expected"),
    [
        ("pm25", "24h", "35.49", "35.4", 100),
        ("pm25", "24h", "9.09", "9.0", 50),
        ("pm10", "24h", "154.9", "154", 100),
        ("o3", "8h", "0.0709", "0.070", 100),
        ("co", "8h", "4.49", "4.4", 50),
        ("no2", "1h", "53.9", "53", 50),
        ("so2", "1h", "35.99", "35", 50),
    ],
)
def test_truncation_before_equation(
    pollutant: str, averaging: str, value: str, truncated: str, expected: int
) -> None:
    """Concentrations are truncated (not rounded) to the table's precision first."""
    s = rate(pollutant, averaging, Fraction(value))
    assert (s.truncated, s.index) == (Fraction(truncated), expected)


def test_rounds_half_up() -> None:
    """O3 8 h 0.072 ppm is 104.5 exactly and reports 105 (nearest, halves up; not banker's)."""
    assert rate("o3", "8h", Fraction("0.072")).index == 105


@pytest.mark.parametrize(
    ("value", "expected"),
    [(9.1, 51), (35.0, 99), (0.3, 2)],
)
def test_float_trap(value: Number, expected: int) -> None:
    """Float 9.1 truncates to 9.1 (a float floor(9.1/0.1) gives 90 → 9.0 → AQI 50)."""
    assert compute("us-epa", {("pm25", "24h"): value}).aqi == expected


def test_o3_8h_above_0200_uses_1h() -> None:
    """8 h O3 above 0.200 ppm defines no index; the 1 h O3 index is used."""
    result = compute("us-epa", {("o3", "8h"): "0.201", ("o3", "1h"): "0.405"})
    eight = sub(result.sub_indices, "o3", "8h")
    assert (eight.index, eight.at_least, eight.reason) == (None, None, "o3_8h_above_0.200_use_1h")
    assert (result.aqi, result.complete) == (301, True)


def test_o3_8h_above_0200_without_1h_is_at_least_301() -> None:
    """Without a 1 h value, 8 h O3 above 0.200 ppm only says the AQI is at least 301."""
    result = compute("us-epa", {("o3", "8h"): "0.250", ("pm25", "24h"): "12"})
    assert (result.aqi, result.complete, result.primary_pollutants) == (301, False, ("o3",))
    assert result.category is not None and result.category.code == "hazardous"


def test_o3_1h_below_table_defers_to_8h() -> None:
    """1 h O3 below 0.125 ppm defines nothing; with an 8 h value the result is complete."""
    both = compute("us-epa", {("o3", "8h"): "0.060", ("o3", "1h"): "0.100"})
    assert sub(both.sub_indices, "o3", "1h").reason == "o3_1h_below_0.125_use_8h"
    assert (both.aqi, both.complete) == (67, True)
    alone = compute("us-epa", {("o3", "1h"): "0.100"})
    assert (alone.aqi, alone.complete) == (None, False)


def test_o3_both_report_the_higher() -> None:
    """With both O3 indices defined the higher one is the O3 index."""
    result = compute("us-epa", {("o3", "8h"): "0.060", ("o3", "1h"): "0.170"})
    assert result.aqi == 157


def test_so2_1h_above_304_uses_24h() -> None:
    """1 h SO2 above 304 ppb defines no index; a 24 h value from 305 ppb up is used."""
    result = compute("us-epa", {("so2", "1h"): 400, ("so2", "24h"): 305})
    assert sub(result.sub_indices, "so2", "1h").index is None
    assert (result.aqi, result.complete) == (201, True)


def test_so2_1h_above_304_with_low_24h_is_200() -> None:
    """1 h SO2 above 304 ppb with 24 h SO2 below 305 ppb reports 200."""
    result = compute("us-epa", {("so2", "1h"): 400, ("so2", "24h"): 100})
    s = sub(result.sub_indices, "so2", "1h")
    assert (s.index, s.reason) == (200, "so2_1h_above_304_24h_below_305")
    assert (result.aqi, result.complete) == (200, True)


def test_so2_1h_above_304_alone_is_at_least_200() -> None:
    """1 h SO2 above 304 ppb with no 24 h value only says the SO2 index is at least 200."""
    result = compute("us-epa", {("so2", "1h"): 305})
    assert (result.aqi, result.complete) == (200, False)
    assert sub(result.sub_indices, "so2", "1h").at_least == 200


def test_so2_24h_below_305_alone_is_undetermined() -> None:
    """24 h SO2 only defines indices above 200; below 305 ppb alone it defines nothing."""
    result = compute("us-epa", {("so2", "24h"): 100})
    assert (result.aqi, result.complete) == (None, False)


@pytest.mark.parametrize(
    ("pollutant", "averaging", "value"),
    [
        ("pm25", "24h", "325.5"),
        ("pm10", "24h", "605"),
        ("co", "8h", "50.5"),
        ("no2", "1h", "2050"),
        ("so2", "24h", "1005"),
        ("o3", "1h", "0.605"),
    ],
)
def test_above_top_breakpoint_is_500(pollutant: str, averaging: str, value: str) -> None:
    """Above the top breakpoint the index is 500, flagged as beyond the table."""
    s = rate(pollutant, averaging, Fraction(value))
    assert (s.index, s.reason) == (500, "above_top_breakpoint")


def test_top_after_truncation_is_in_table() -> None:
    """PM2.5 325.45 truncates to 325.4, the top breakpoint itself: 500 without a flag."""
    s = rate("pm25", "24h", Fraction("325.45"))
    assert (s.index, s.reason) == (500, None)


@pytest.mark.parametrize(
    ("aqi", "code", "colour"),
    [
        (0, "good", "#00E400"),
        (50, "good", "#00E400"),
        (51, "moderate", "#FFFF00"),
        (100, "moderate", "#FFFF00"),
        (101, "unhealthy_for_sensitive_groups", "#FF7E00"),
        (150, "unhealthy_for_sensitive_groups", "#FF7E00"),
        (151, "unhealthy", "#FF0000"),
        (200, "unhealthy", "#FF0000"),
        (201, "very_unhealthy", "#8F3F97"),
        (300, "very_unhealthy", "#8F3F97"),
        (301, "hazardous", "#7E0023"),
        (500, "hazardous", "#7E0023"),
    ],
)
def test_category_boundaries(aqi: int, code: str, colour: str) -> None:
    """Each EPA category starts and ends where the TAD says, with its colour."""
    cat = category_for(CATEGORIES, aqi)
    assert (cat.code, cat.colour) == (code, colour)


def test_primary_pollutant_always_named() -> None:
    """The EPA names the responsible pollutant even in the Good band; no over-standard list."""
    result = compute("us-epa", {("pm25", "24h"): "4.0", ("o3", "8h"): "0.030"})
    assert (result.aqi, result.primary_pollutants, result.over_standard) == (28, ("o3",), ())


# --- NowCast -------------------------------------------------------------------------------


def test_nowcast_weights_recent_hours() -> None:
    """w = min/max = 0.5: (20 + 0.5·10) / 1.5 = 16.66… → 16.6, and the reverse order 13.3."""
    assert nowcast([20, 10]) == Fraction("16.6")
    assert nowcast([10, 20]) == Fraction("13.3")


def test_nowcast_weight_above_half() -> None:
    """w = 8/10 = 0.8: (10 + 0.8·8) / 1.8 = 9.11… → 9.1."""
    assert nowcast([10, 8]) == Fraction("9.1")


def test_nowcast_weight_floor_is_half() -> None:
    """w never drops below 0.5: (100 + 0.5·1) / 1.5 = 67.0, not the min/max 0.01 weighting."""
    assert nowcast([100, 1]) == Fraction("67.0")


def test_nowcast_missing_hours_keep_their_position() -> None:
    """A missing hour drops out of both sums but later hours keep their exponents."""
    # hours 1 and 3 present: (20 + 0.25·10) / 1.25 = 18.0
    assert nowcast([20, None, 10]) == Fraction(18)


@pytest.mark.parametrize(
    ("hours", "valid"),
    [
        ([10, 10, None], True),
        ([None, 10, 10], True),
        ([10, None, 10], True),
        ([10, None, None, 10, 10], False),
        ([None, None, 10, 10, 10], False),
        ([10], False),
        ([], False),
    ],
)
def test_nowcast_needs_two_of_three_latest(hours: list[Number | None], valid: bool) -> None:
    """NowCast is valid only when at least 2 of the 3 most recent hours exist."""
    assert (nowcast(hours) is not None) is valid


def test_nowcast_uses_only_twelve_hours() -> None:
    """Hours beyond the twelfth are ignored."""
    assert nowcast([10] * 12 + [1000]) == Fraction(10)


def test_nowcast_all_zero() -> None:
    """Twelve clean hours give 0.0, not a division by zero."""
    assert nowcast([0] * 12) == 0


def test_nowcast_pm10_truncates_to_whole() -> None:
    """PM10 NowCast truncates to 1 µg/m³."""
    assert nowcast([20, 10], "pm10") == Fraction(16)


@pytest.mark.parametrize("bad", [-1, float("nan"), "abc", float("inf")])
def test_nowcast_rejects_bad_hours(bad: Number) -> None:
    """Negative, NaN, infinite or non-numeric hourly means are validation errors."""
    with pytest.raises(ValidationError):
        nowcast([10, bad, 10])


def test_nowcast_only_for_particles() -> None:
    """NowCast here is a PM algorithm; asking it for O3 is an error."""
    with pytest.raises(ValidationError, match="pm25"):
        nowcast([0.05] * 12, "o3")


# --- ambient units -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pollutant", "ambient", "epa"),
    [
        ("so2", "64.066", "24.45"),  # µg/m³ → ppb: × 24.45 / M
        ("no2", "46.0055", "24.45"),
        ("o3", "47.9982", "0.02445"),  # µg/m³ → ppm: × 24.45 / M / 1000
        ("co", "28.0101", "24.45"),  # mg/m³ → ppm: × 24.45 / M
        ("pm25", "35", "35"),
    ],
)
def test_from_ambient(pollutant: str, ambient: str, epa: str) -> None:
    """Ambient values convert to EPA units at 25 °C, 1 atm (24.45 L/mol), exactly."""
    assert from_ambient(pollutant, Fraction(ambient)) == Fraction(epa)


def test_compute_with_ambient_units() -> None:
    """NO2 200 µg/m³ is 106.29 ppb → truncated 106 ppb → AQI 102."""
    result = compute("us-epa", {("no2", "1h"): 200}, ambient_units=True)
    s = sub(result.sub_indices, "no2", "1h")
    assert (s.truncated, s.unit, result.aqi) == (Fraction(106), "ppb", 102)


def test_report_is_hj633_only() -> None:
    """Asking the EPA AQI for an hourly/daily report is an error."""
    with pytest.raises(ValidationError, match="hj633"):
        compute("us-epa", {("pm25", "24h"): 10}, report="daily")


@pytest.mark.parametrize(("pollutant", "averaging"), sorted(TABLE_FOR))
@given(a=st.fractions(min_value=0, max_value=2100), b=st.fractions(min_value=0, max_value=2100))
def test_index_monotone(pollutant: str, averaging: str, a: Fraction, b: Fraction) -> None:
    """Within each table the index never decreases as the concentration grows."""
    lo, hi = sorted((a, b))
    i_lo = rate(pollutant, averaging, lo).index
    i_hi = rate(pollutant, averaging, hi).index
    if i_lo is not None and i_hi is not None:
        assert i_lo <= i_hi
