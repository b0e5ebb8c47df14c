"""GB 3095-2012's daily ozone limit, judged on the day's maximum 8-hour moving mean with the
validity rules of HJ 663-2013."""

from __future__ import annotations

import pytest

from domain.compliance import Sample, Verdict, judge_daily_max_8h
from domain.readings import Flag


def day(values: list[float | None], flag: Flag = Flag.NORMAL) -> list[Sample | None]:
    return [None if v is None else Sample(v, flag) for v in values]


def test_the_highest_moving_mean_is_judged_not_the_daily_mean() -> None:
    """A summer afternoon: 80 µg/m³ all day but 200 from 12:00 to 19:59. The 24-hour mean
    (120) is under grade II's 160; the 8-hour window 12-19 (200) is over it."""
    values = [80.0] * 24
    values[12:20] = [200.0] * 8
    j = judge_daily_max_8h(day(values), limit=160)
    assert (j.verdict, j.mean, j.valid_count, j.total_count) == (Verdict.EXCEEDANCE, 200.0, 17, 17)
    assert j.margin == pytest.approx(200 / 160 - 1)


def test_windows_end_between_08_and_24() -> None:
    """Hours 17-23 alone are high: the last window (16-23) has seven of them; a window that
    would run past midnight is not the day's."""
    values = [0.0] * 24
    values[17:24] = [184.0] * 7
    j = judge_daily_max_8h(day(values), limit=160)
    assert j.mean == pytest.approx(184 * 7 / 8)  # 161
    assert j.verdict is Verdict.EXCEEDANCE


def test_a_window_needs_six_valid_hours() -> None:
    """Five hours of 300 then three missing: the windows holding the 300s have at most five
    valid hours, so none of them counts, and the 11 windows left (all 50) are too few."""
    values: list[float | None] = [300.0] * 5 + [None] * 3 + [50.0] * 16
    j = judge_daily_max_8h(day(values), limit=160)
    assert (j.verdict, j.measured_mean, j.valid_count) == (Verdict.INVALID, 50.0, 11)


def test_fewer_than_14_valid_windows_is_invalid_unless_already_over() -> None:
    """Only 11 valid windows (the afternoon missing): invalid when under the limit, but an
    exceedance found in what there is stands (HJ 663)."""
    low: list[float | None] = [90.0] * 17 + [None] * 7
    j = judge_daily_max_8h(day(low), limit=160)
    assert (j.verdict, j.valid_count, j.mean) == (Verdict.INVALID, 12, None)
    high: list[float | None] = [90.0] * 8 + [250.0] * 9 + [None] * 7
    j = judge_daily_max_8h(day(high), limit=160)
    assert (j.verdict, j.valid_count) == (Verdict.EXCEEDANCE, 12)


def test_flags_other_than_n_do_not_count_and_a_stopped_day_is_not_judged() -> None:
    """Calibration hours (C) are not valid values; a day of F (stopped) is not judged."""
    values = day([100.0] * 24)
    values[12:14] = [Sample(400.0, Flag.CALIBRATION)] * 2
    j = judge_daily_max_8h(values, limit=160)
    assert (j.verdict, j.mean) == (Verdict.COMPLIANT, 100.0)
    assert judge_daily_max_8h(day([50.0] * 24, Flag.STOPPED), limit=160).verdict is Verdict.STOPPED
    assert judge_daily_max_8h([None] * 24, limit=160).verdict is Verdict.NO_DATA


def test_a_day_is_24_hours() -> None:
    with pytest.raises(ValueError, match="24 hourly means"):
        judge_daily_max_8h([None] * 23, limit=160)
