"""HJ 633-2012 AQI: worked examples, every breakpoint, the table notes and the report rules."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.aqi import compute, hj633
from domain.aqi.base import Number, SubIndex, category_for
from domain.aqi.hj633 import BREAKPOINTS, CATEGORIES, IAQI_LEVELS, TABLE_FOR, iaqi


def sub(result_subs: tuple[SubIndex, ...], pollutant: str, averaging: str) -> SubIndex:
    return next(s for s in result_subs if (s.pollutant, s.averaging) == (pollutant, averaging))


@pytest.mark.parametrize(
    ("pollutant", "averaging", "value", "expected"),
    [
        ("pm25", "24h", "35", 50),
        ("pm10", "24h", "350", 200),
        ("so2", "1h", "650", 150),
        ("no2", "1h", "700", 150),
        ("co", "1h", "35", 150),
        ("o3", "1h", "300", 150),
        ("pm25", "24h", "250", 300),
        ("so2", "24h", "150", 100),  # not 50: the SO2 24 h column is not the 1 h one
    ],
)
def test_worked_examples(pollutant: str, averaging: str, value: str, expected: int) -> None:
    """Each worked example of standards.md §4 gives its IAQI and, alone, that AQI."""
    result = compute("hj633", {(pollutant, averaging): value})
    assert sub(result.sub_indices, pollutant, averaging).index == expected
    assert result.aqi == expected


def test_so2_1h_above_800_uses_24h() -> None:
    """SO2 1 h 801 µg/m³ gets no IAQI; the SO2 IAQI is the 24 h one (150 → 100)."""
    result = compute("hj633", {("so2", "1h"): 801, ("so2", "24h"): 150})
    one_hour = sub(result.sub_indices, "so2", "1h")
    day = sub(result.sub_indices, "so2", "24h")
    assert (one_hour.index, one_hour.reason) == (None, "so2_1h_above_800")
    assert (day.index, day.counted, day.reason) == (100, True, "so2_24h_replaces_1h_above_800")
    assert result.report == "hourly"
    assert (result.aqi, result.complete, result.primary_pollutants) == (100, True, ("so2",))


def test_so2_1h_above_800_without_24h_is_incomplete() -> None:
    """Without a 24 h SO2 mean the SO2 IAQI is undetermined: no invented 200+, result incomplete."""
    result = compute("hj633", {("so2", "1h"): 900, ("pm25", "1h"): 80})
    so2 = sub(result.sub_indices, "so2", "1h")
    assert (so2.index, so2.at_least) == (None, None)
    assert result.complete is False
    assert result.aqi == 107  # from PM2.5 alone, a lower bound
    assert result.primary_pollutants == ("pm25",)


def test_so2_24h_not_counted_in_hourly_report_below_800() -> None:
    """In the hourly report a 24 h SO2 mean is shown but does not count while the 1 h value rules."""
    result = compute("hj633", {("so2", "1h"): 100, ("so2", "24h"): 2000})
    day = sub(result.sub_indices, "so2", "24h")
    assert (day.index, day.counted, day.reason) == (380, False, "not_in_hourly_report")
    assert result.aqi == 34


def test_o3_8h_above_800_uses_1h() -> None:
    """O3 8 h above 800 µg/m³ gets no IAQI; the daily AQI takes the O3 1 h IAQI."""
    result = compute("hj633", {("o3", "8h"): 801, ("o3", "1h"): 1000})
    eight = sub(result.sub_indices, "o3", "8h")
    assert (eight.index, eight.reason) == (None, "o3_8h_above_800")
    assert (result.report, result.aqi, result.complete) == ("daily", 400, True)


def test_o3_8h_above_800_without_1h_is_incomplete() -> None:
    """O3 8 h above 800 with no 1 h value leaves O3 undetermined."""
    result = compute("hj633", {("o3", "8h"): 900})
    assert (result.aqi, result.category, result.complete) == (None, None, False)


def _boundaries() -> list[tuple[str, str, str, int]]:
    return [
        (p, a, bp, IAQI_LEVELS[k])
        for (p, a), column in BREAKPOINTS.items()
        for k, bp in enumerate(column)
    ]


@pytest.mark.parametrize(("pollutant", "averaging", "bp", "level"), _boundaries())
def test_every_breakpoint(pollutant: str, averaging: str, bp: str, level: int) -> None:
    """At every breakpoint of every table the IAQI is exactly that breakpoint's level."""
    assert iaqi(pollutant, averaging, Fraction(bp)).index == level


def _inner_boundaries() -> list[tuple[str, str, str, int]]:
    # Not the top of a column: above it IAQI is 500 or a table note applies (tested below).
    return [b for b in _boundaries() if b[2] != BREAKPOINTS[(b[0], b[1])][-1]]


@pytest.mark.parametrize(("pollutant", "averaging", "bp", "level"), _inner_boundaries())
def test_just_above_breakpoint_rounds_up(
    pollutant: str, averaging: str, bp: str, level: int
) -> None:
    """A hair above a breakpoint the IAQI rounds UP to the next integer (ceil, not nearest)."""
    assert iaqi(pollutant, averaging, Fraction(bp) + Fraction(1, 10**6)).index == level + 1


@pytest.mark.parametrize(
    ("pollutant", "averaging", "value"),
    [
        ("pm25", "24h", "500.1"),
        ("pm10", "24h", "601"),
        ("no2", "1h", "5000"),
        ("co", "24h", "60.01"),
        ("so2", "24h", "3000"),
        ("o3", "1h", "1201"),
    ],
)
def test_above_top_breakpoint_is_500(pollutant: str, averaging: str, value: str) -> None:
    """Above the top breakpoint the IAQI is 500, flagged as such."""
    s = iaqi(pollutant, averaging, Fraction(value))
    assert (s.index, s.reason) == (500, "above_top_breakpoint")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (35.0, 50),  # standards.md: with floats a naive formula can give 51
        (352.1, 203),  # float formula: 203.00000000000003 → ceil 204
        (Decimal("35"), 50),
        ("35.000", 50),
    ],
)
def test_float_trap(value: Number, expected: int) -> None:
    """Float inputs go through their decimal string, so the ceiling never sees 50.000…01."""
    key = ("pm25", "24h") if expected == 50 else ("pm10", "24h")
    assert compute("hj633", {key: value}).aqi == expected


def test_float_trap_so2_24h() -> None:
    """SO2 24 h 2120.8 is IAQI 404 exactly (a float formula gives 404.00000000000006 → 405)."""
    assert compute("hj633", {("so2", "24h"): 2120.8}).aqi == 404


@pytest.mark.parametrize(
    ("aqi", "code", "name_zh", "colour"),
    [
        (0, "excellent", "优", "#00E400"),
        (50, "excellent", "优", "#00E400"),
        (51, "good", "良", "#FFFF00"),
        (100, "good", "良", "#FFFF00"),
        (101, "lightly_polluted", "轻度污染", "#FF7E00"),
        (150, "lightly_polluted", "轻度污染", "#FF7E00"),
        (151, "moderately_polluted", "中度污染", "#FF0000"),
        (200, "moderately_polluted", "中度污染", "#FF0000"),
        (201, "heavily_polluted", "重度污染", "#99004C"),
        (300, "heavily_polluted", "重度污染", "#99004C"),
        (301, "severely_polluted", "严重污染", "#7E0023"),
        (500, "severely_polluted", "严重污染", "#7E0023"),
    ],
)
def test_category_boundaries(aqi: int, code: str, name_zh: str, colour: str) -> None:
    """Each AQI band starts and ends where HJ 633 says, with its Chinese name and colour."""
    cat = category_for(CATEGORIES, aqi)
    assert (cat.code, cat.name_zh, cat.colour) == (code, name_zh, colour)


def test_category_through_compute() -> None:
    """PM2.5 75 (IAQI 100) is 良 and PM2.5 75.1 (IAQI 101) is 轻度污染."""
    assert compute("hj633", {("pm25", "24h"): 75}).category == CATEGORIES[1]
    assert compute("hj633", {("pm25", "24h"): "75.1"}).category == CATEGORIES[2]


def test_no_primary_pollutant_at_50_or_below() -> None:
    """With AQI ≤ 50 there is no primary pollutant."""
    result = compute("hj633", {("pm25", "24h"): 35, ("pm10", "24h"): 20})
    assert (result.aqi, result.primary_pollutants) == (50, ())


def test_primary_pollutants_tie() -> None:
    """All pollutants sharing the maximum IAQI are primary."""
    result = compute("hj633", {("pm25", "24h"): 75, ("pm10", "24h"): 150, ("no2", "24h"): 40})
    assert result.aqi == 100
    assert set(result.primary_pollutants) == {"pm25", "pm10"}
    assert result.over_standard == ()


def test_over_standard_pollutants() -> None:
    """Over-standard pollutants are those with IAQI above 100, primary or not."""
    result = compute("hj633", {("pm25", "24h"): 150, ("pm10", "24h"): 151, ("no2", "24h"): 80})
    assert result.aqi == 200
    assert result.primary_pollutants == ("pm25",)
    assert set(result.over_standard) == {"pm25", "pm10"}


def test_hourly_report_rates_pm_1h_on_24h_table() -> None:
    """Hourly AQI: 1 h PM means are rated on the 24 h tables; 24 h and 8 h values do not count."""
    result = compute(
        "hj633",
        {("pm25", "1h"): 115, ("o3", "1h"): 160, ("pm10", "24h"): 600, ("o3", "8h"): 800},
    )
    assert result.report == "hourly"
    pm = sub(result.sub_indices, "pm25", "1h")
    assert (pm.index, pm.reason, pm.counted) == (150, "pm_1h_on_24h_table", True)
    assert not sub(result.sub_indices, "pm10", "24h").counted
    assert not sub(result.sub_indices, "o3", "8h").counted
    assert result.aqi == 150


def test_report_inference() -> None:
    """A 1 h value of SO2, NO2, CO or PM makes the report hourly; otherwise it is daily."""
    assert compute("hj633", {("so2", "1h"): 650}).report == "hourly"
    assert compute("hj633", {("o3", "1h"): 300, ("o3", "8h"): 160}).report == "daily"
    assert compute("hj633", {("pm25", "24h"): 35}).report == "daily"


def test_daily_report_counts_o3_max_1h_and_8h() -> None:
    """Daily AQI: 24 h means plus the O3 daily max 1 h and max 8 h; 1 h SO2 does not count."""
    daily = compute(
        "hj633",
        {("pm25", "24h"): 35, ("o3", "8h"): 160, ("o3", "1h"): 300, ("so2", "1h"): 650},
        report="daily",
    )
    assert sub(daily.sub_indices, "o3", "8h").index == 100
    assert daily.aqi == 150
    assert daily.primary_pollutants == ("o3",)
    so2 = sub(daily.sub_indices, "so2", "1h")
    assert (so2.index, so2.counted, so2.reason) == (150, False, "not_in_daily_report")


def test_empty_is_no_aqi() -> None:
    """No values give no AQI rather than zero."""
    result = hj633.compute({})
    assert (result.aqi, result.category, result.complete) == (None, None, True)


def _monotone_cases() -> list[tuple[str, str]]:
    return sorted(TABLE_FOR)


@pytest.mark.parametrize(("pollutant", "averaging"), _monotone_cases())
@given(a=st.fractions(min_value=0, max_value=4000), b=st.fractions(min_value=0, max_value=4000))
def test_index_monotone(pollutant: str, averaging: str, a: Fraction, b: Fraction) -> None:
    """Within each table the IAQI never decreases as the concentration grows."""
    lo, hi = sorted((a, b))
    i_lo = iaqi(pollutant, averaging, lo).index
    i_hi = iaqi(pollutant, averaging, hi).index
    if i_lo is not None and i_hi is not None:
        assert i_lo <= i_hi
