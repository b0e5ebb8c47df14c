"""Judging averages against limits by HJ 75-2017 / HJ 76-2017: validity, O2 correction, verdicts.

Pure functions over values already fetched; the alerts service supplies the minutes and hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from domain.readings import Flag

# HJ 75-2017: an hourly mean needs at least 45 valid minutes, a daily mean 20 valid hours.
MIN_VALID_MINUTES: Final = 45
MIN_VALID_HOURS: Final = 20
# O2 at or above this leaves nothing to correct: the stack is breathing ambient air.
MAX_CORRECTABLE_O2: Final = 20.0


class Verdict(StrEnum):
    """The outcome of judging one period; only EXCEEDANCE and COMPLIANT are judgements."""

    COMPLIANT = "compliant"
    EXCEEDANCE = "exceedance"
    INVALID = "invalid"  # too few valid values: shown as invalid, never silently averaged
    STOPPED = "stopped"  # the source was stopped (flag F): not judged
    NO_DATA = "no_data"


@dataclass(frozen=True, slots=True)
class Sample:
    """One minute (or hour) of one pollutant, with the O2 measured at the same time if any."""

    value: float
    flag: Flag
    o2: float | None = None
    o2_flag: Flag | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    mean: float | None  # the value compared with the limit (O2-corrected when required)
    measured_mean: float | None  # the mean as measured
    o2_mean: float | None
    valid_count: int
    total_count: int
    limit: float
    margin: float | None  # mean / limit − 1, when judged

    @property
    def judged(self) -> bool:
        return self.verdict in (Verdict.COMPLIANT, Verdict.EXCEEDANCE)


def o2_correct(measured: float, o2_measured: float, o2_reference: float) -> float:
    """HJ 75: C = C_measured × (21 − O2_ref) / (21 − O2_measured), dry O2 in %."""
    if not 0 <= o2_measured < MAX_CORRECTABLE_O2:
        raise ValueError(f"O2 {o2_measured} % cannot be corrected for")
    return measured * (21.0 - o2_reference) / (21.0 - o2_measured)


def judge(
    samples: Sequence[Sample],
    *,
    limit: float,
    min_valid: int,
    o2_reference: float | None = None,
) -> Judgement:
    """Judge one period's samples against ``limit`` (strictly greater is an exceedance).

    A sample is valid when its flag is N and, if O2 correction applies, its O2 is valid too.
    The period's mean of valid samples is corrected with the mean O2 of the same samples, as
    HJ 75 converts hourly means. A period where the source was stopped for most samples is not
    judged; one without ``min_valid`` valid samples is invalid.
    """
    stopped = sum(1 for s in samples if s.flag is Flag.STOPPED)
    valid = [
        s
        for s in samples
        if s.flag is Flag.NORMAL
        and (
            o2_reference is None
            or (s.o2 is not None and s.o2_flag is Flag.NORMAL and s.o2 < MAX_CORRECTABLE_O2)
        )
    ]
    n = len(valid)
    return judge_totals(
        total=len(samples),
        stopped=stopped,
        valid=n,
        value_sum=sum(s.value for s in valid) if n else None,
        o2_sum=sum(s.o2 for s in valid if s.o2 is not None)
        if n and o2_reference is not None
        else None,
        limit=limit,
        min_valid=min_valid,
        o2_reference=o2_reference,
    )


def judge_totals(
    *,
    total: int,
    stopped: int,
    valid: int,
    value_sum: float | None,
    o2_sum: float | None,
    limit: float,
    min_valid: int,
    o2_reference: float | None,
) -> Judgement:
    """``judge`` from a period's counts and sums: what the engine gets from one SQL aggregate
    over every outlet, so both apply the very same rules. ``valid`` counts the samples
    ``judge`` calls valid; ``o2_sum`` is the O2 of those samples (O2 correction only)."""
    if total == 0:
        return Judgement(Verdict.NO_DATA, None, None, None, 0, 0, limit, None)
    measured = value_sum / valid if valid and value_sum is not None else None
    o2_mean = o2_sum / valid if valid and o2_sum is not None and o2_reference is not None else None
    if stopped * 2 > total:
        return Judgement(Verdict.STOPPED, None, measured, o2_mean, valid, total, limit, None)
    if valid < min_valid or measured is None:
        return Judgement(Verdict.INVALID, None, measured, o2_mean, valid, total, limit, None)
    mean = measured
    if o2_reference is not None and o2_mean is not None:
        mean = o2_correct(measured, o2_mean, o2_reference)
    verdict = Verdict.EXCEEDANCE if mean > limit else Verdict.COMPLIANT
    return Judgement(verdict, mean, measured, o2_mean, valid, total, limit, mean / limit - 1)


# HJ 663-2013 for GB 3095's ozone: an 8-hour moving mean needs 6 valid hourly means; a day's
# maximum is taken over the 17 windows ending 08:00 to 24:00 local time (hours 0-7 to 16-23)
# and needs 14 valid windows, unless the maximum found already exceeds the limit.
O3_WINDOW_HOURS: Final = 8
O3_MIN_VALID_HOURS_PER_WINDOW: Final = 6
O3_WINDOWS_PER_DAY: Final = 17
O3_MIN_VALID_WINDOWS: Final = 14


def judge_daily_max_8h(hours: Sequence[Sample | None], *, limit: float) -> Judgement:
    """Judge a day's maximum 8-hour moving mean (GB 3095 ozone) from its 24 hourly means,
    ``hours[i]`` for the hour starting i hours after local midnight (``None``: no value).

    ``mean`` is the maximum window mean and ``valid_count`` the number of valid windows."""
    if len(hours) != 24:
        raise ValueError(f"a day has 24 hourly means, not {len(hours)}")
    present = [h for h in hours if h is not None]
    if not present:
        return Judgement(Verdict.NO_DATA, None, None, None, 0, 0, limit, None)
    if sum(1 for h in present if h.flag is Flag.STOPPED) * 2 > len(present):
        return Judgement(Verdict.STOPPED, None, None, None, 0, O3_WINDOWS_PER_DAY, limit, None)
    means = []
    for first in range(O3_WINDOWS_PER_DAY):
        window = hours[first : first + O3_WINDOW_HOURS]
        valid = [h.value for h in window if h is not None and h.flag is Flag.NORMAL]
        if len(valid) >= O3_MIN_VALID_HOURS_PER_WINDOW:
            means.append(sum(valid) / len(valid))
    if not means:
        return Judgement(Verdict.INVALID, None, None, None, 0, O3_WINDOWS_PER_DAY, limit, None)
    highest = max(means)
    exceeds = highest > limit
    if len(means) < O3_MIN_VALID_WINDOWS and not exceeds:
        return Judgement(
            Verdict.INVALID, None, highest, None, len(means), O3_WINDOWS_PER_DAY, limit, None
        )
    verdict = Verdict.EXCEEDANCE if exceeds else Verdict.COMPLIANT
    return Judgement(
        verdict, highest, highest, None, len(means), O3_WINDOWS_PER_DAY, limit, highest / limit - 1
    )


class Severity(StrEnum):
    """By margin over the limit: how urgently an inspector should look."""

    MINOR = "minor"  # up to 20 % over
    MODERATE = "moderate"  # up to 50 % over
    SEVERE = "severe"  # up to 100 % over
    CRITICAL = "critical"  # more than twice the limit


def severity(margin: float) -> Severity:
    if margin <= 0.2:
        return Severity.MINOR
    if margin <= 0.5:
        return Severity.MODERATE
    if margin <= 1.0:
        return Severity.SEVERE
    return Severity.CRITICAL
