"""HJ 75 rules: validity counts, O2 correction, strict exceedance, stopped sources."""

from __future__ import annotations

import pytest

from domain.compliance import (
    MIN_VALID_HOURS,
    MIN_VALID_MINUTES,
    Sample,
    Severity,
    Verdict,
    judge,
    o2_correct,
    severity,
)
from domain.readings import Flag

N, C, F = Flag.NORMAL, Flag.CALIBRATION, Flag.STOPPED


def minutes(value: float, count: int, flag: Flag = N, o2: float | None = None) -> list[Sample]:
    return [Sample(value, flag, o2, None if o2 is None else N) for _ in range(count)]


def test_o2_correction_formula() -> None:
    """30 mg/m³ measured at 9 % O2 is 30 × 15/12 = 37.5 mg/m³ at 6 % reference."""
    assert o2_correct(30.0, 9.0, 6.0) == pytest.approx(37.5)
    assert o2_correct(30.0, 6.0, 6.0) == 30.0
    with pytest.raises(ValueError, match="O2"):
        o2_correct(30.0, 20.5, 6.0)


def test_corrected_hour_over_the_limit_is_an_exceedance() -> None:
    """An SO2 hour under 35 as measured but over it at 6 % O2 is an exceedance."""
    j = judge(minutes(30.0, 60, o2=9.0), limit=35.0, min_valid=MIN_VALID_MINUTES, o2_reference=6.0)
    assert j.verdict is Verdict.EXCEEDANCE
    assert j.mean == pytest.approx(37.5)
    assert j.measured_mean == 30.0
    assert j.valid_count == 60
    assert j.margin == pytest.approx(37.5 / 35 - 1)


def test_exactly_at_the_limit_complies() -> None:
    """Exceedance is strictly greater than the limit."""
    assert judge(minutes(35.0, 60), limit=35.0, min_valid=45).verdict is Verdict.COMPLIANT


@pytest.mark.parametrize(("valid", "verdict"), [(44, Verdict.INVALID), (45, Verdict.EXCEEDANCE)])
def test_45_valid_minutes_make_a_valid_hour(valid: int, verdict: Verdict) -> None:
    """44 valid minutes (the rest in calibration) is invalid; 45 is judged."""
    samples = minutes(50.0, valid) + minutes(10.0, 60 - valid, flag=C)
    j = judge(samples, limit=35.0, min_valid=MIN_VALID_MINUTES)
    assert j.verdict is verdict
    assert j.valid_count == valid
    assert j.total_count == 60
    if verdict is Verdict.EXCEEDANCE:
        assert j.mean == 50.0  # flagged minutes never enter the mean


def test_forty_valid_minutes_are_invalid_not_judged() -> None:
    """An hour with only 40 valid minutes is recorded as invalid, with no mean compared."""
    j = judge(minutes(80.0, 40), limit=35.0, min_valid=MIN_VALID_MINUTES)
    assert (j.verdict, j.mean, j.judged) == (Verdict.INVALID, None, False)


def test_minutes_without_valid_o2_are_not_valid_when_correcting() -> None:
    """With O2 correction, a minute whose O2 is missing or flagged is not valid data."""
    samples = (
        minutes(30.0, 40, o2=9.0)
        + [Sample(30.0, N, None, None)] * 10
        + [Sample(30.0, N, 9.0, C)] * 10
    )
    assert judge(samples, limit=35.0, min_valid=45, o2_reference=6.0).verdict is Verdict.INVALID


def test_stopped_source_is_not_judged() -> None:
    """A source stopped (flag F) most of the hour is not judged."""
    samples = minutes(0.0, 50, flag=F) + minutes(100.0, 10)
    assert judge(samples, limit=35.0, min_valid=45).verdict is Verdict.STOPPED


def test_daily_wastewater_needs_20_valid_hours() -> None:
    """A COD day with 19 valid hourly means is invalid; with 20 it is judged against 50 mg/L."""
    assert (
        judge(minutes(60.0, 19), limit=50.0, min_valid=MIN_VALID_HOURS).verdict is Verdict.INVALID
    )
    assert (
        judge(minutes(60.0, 20), limit=50.0, min_valid=MIN_VALID_HOURS).verdict
        is Verdict.EXCEEDANCE
    )


def test_no_data() -> None:
    """No samples at all is 'no data'."""
    assert judge([], limit=1.0, min_valid=45).verdict is Verdict.NO_DATA


@pytest.mark.parametrize(
    ("margin", "expected"),
    [
        (0.01, Severity.MINOR),
        (0.2, Severity.MINOR),
        (0.3, Severity.MODERATE),
        (0.9, Severity.SEVERE),
        (1.5, Severity.CRITICAL),
    ],
)
def test_severity_by_margin(margin: float, expected: Severity) -> None:
    """Severity grows with the margin over the limit."""
    assert severity(margin) is expected
