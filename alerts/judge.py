"""Judging one hour or one day of every rule: values from the store, verdicts from the domain.

Rules are data: the permit limits in the registry and GB 3095 for stations. Each judgement is
recorded, compliant ones too, so the public record shows every hour, not only violations.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

import psycopg

from domain.ambient import DAILY_MAX_8H, ambient_limits
from domain.compliance import (
    MAX_CORRECTABLE_O2,
    MIN_VALID_HOURS,
    MIN_VALID_MINUTES,
    Judgement,
    Sample,
    judge,
    judge_daily_max_8h,
    judge_totals,
)
from domain.readings import Flag, flags_from_mask
from store import compliance as store
from store.compliance import MinuteCounts, Rule

HOUR = timedelta(hours=1)


class Outcome(NamedTuple):
    """A rule's judgement of one hour or day, and what it replaced (a NamedTuple, as
    ``store.compliance.Rule``: tens of thousands an hour)."""

    rule: Rule
    start: datetime
    end: datetime
    judgement: Judgement
    previous: str | None  # the verdict this judgement replaced, when re-judged
    silenced: bool


def rules(conn: psycopg.Connection, period: str) -> list[Rule]:
    """Every rule with the given averaging period: outlets' permit limits, stations' GB 3095."""
    out = [r for r in store.permit_rules(conn) if r.period == period]
    for station, zone, regulator in store.stations(conn):
        out.extend(
            Rule(
                station,
                "station",
                lim.pollutant,
                lim.period.value,
                lim.value,
                lim.unit,
                lim.standard,
                None,
                regulator,
                zone,
            )
            for lim in ambient_limits(zone)
            if lim.period.value == period
        )
    return out


def _row(rule: Rule, start: datetime, j: Judgement) -> tuple[object, ...]:
    """A judgement as recorded, in ``store.JUDGEMENT_COLUMNS`` order."""
    return (
        rule.site_id,
        rule.pollutant,
        rule.period,
        start,
        rule.limit,
        rule.unit,
        rule.standard,
        rule.o2_reference,
        j.mean,
        j.measured_mean,
        j.o2_mean,
        j.valid_count,
        j.total_count,
        j.verdict.value,
    )


def _record(
    conn: psycopg.Connection, start: datetime, end: datetime, judged: list[tuple[Rule, Judgement]]
) -> list[Outcome]:
    """Record every judgement at once and pair each with the verdict it replaced."""
    replaced = store.record_judgements(conn, [_row(rule, start, j) for rule, j in judged])
    quiet = store.silenced(conn, start, end)
    return [
        Outcome(
            rule,
            start,
            end,
            j,
            replaced.get((rule.site_id, rule.pollutant, rule.period)),
            rule.site_id in quiet,
        )
        for rule, j in judged
    ]


def judge_minutes(counts: MinuteCounts, *, limit: float, o2_reference: float | None) -> Judgement:
    """``domain.compliance.judge`` of an hour's minutes, from their counts and sums (SQL
    counted valid minutes as ``judge`` does: flag N, and with O2 correction a valid,
    correctable O2 in the same minute)."""
    if o2_reference is None:
        valid, value_sum, o2_sum = counts.valid, counts.valid_sum, None
    else:
        valid, value_sum, o2_sum = counts.valid_with_o2, counts.valid_with_o2_sum, counts.o2_sum
    return judge_totals(
        total=counts.total,
        stopped=counts.stopped,
        valid=valid,
        value_sum=value_sum,
        o2_sum=o2_sum,
        limit=limit,
        min_valid=MIN_VALID_MINUTES,
        o2_reference=o2_reference,
    )


def judge_hour(conn: psycopg.Connection, start: datetime) -> list[Outcome]:
    """HJ 75: each hourly rule on its valid minutes (≥ 45), O2-corrected where the permit says.

    A device that reports hourly means itself (HJ 212 CN 2061) is judged on those when it sent
    no minutes. Set-based: the minutes of every site are counted in one query and every
    judgement is recorded by one COPY and one upsert, so an hour costs a few round trips
    whatever the number of rules."""
    end = start + HOUR
    hour_rules = rules(conn, "hour")
    pollutants = sorted({r.pollutant for r in hour_rules})
    minutes = store.minute_counts(conn, pollutants, start, end, MAX_CORRECTABLE_O2)
    reported = store.reported_values(conn, "hour", start, end)
    judged = []
    for rule in hour_rules:
        counts = minutes.get((rule.site_id, rule.pollutant))
        if counts is not None:
            j = judge_minutes(counts, limit=rule.limit, o2_reference=rule.o2_reference)
        else:
            o2 = reported.get((rule.site_id, "o2"), [])
            samples = [
                Sample(v, Flag(f), o2[0][1] if o2 else None, Flag(o2[0][2]) if o2 else None)
                for _, v, f in reported.get((rule.site_id, rule.pollutant), [])[:1]
            ]
            j = judge(samples, limit=rule.limit, min_valid=1, o2_reference=rule.o2_reference)
        judged.append((rule, j))
    return _record(conn, start, end, judged)


def judge_day(conn: psycopg.Connection, start: datetime, end: datetime) -> list[Outcome]:
    """Daily rules (wastewater, GB 3095 24 h, O2-corrected daily permit limits) on valid
    hourly means (≥ 20 hours); GB 3095's daily ozone limit on the day's maximum 8-hour mean.

    An hour is valid when the device reported it with flag N, or when its minutes made a
    valid hourly mean (≥ 45 valid minutes); an hour short of minutes counts as invalid. Where
    the permit judges O2-corrected values, an hour also needs a valid O2 hourly mean, and the
    day's mean is corrected as ``judge`` corrects an hour's (the record says it was)."""
    day_rules = rules(conn, "day")
    pollutants = {r.pollutant for r in day_rules}
    if any(r.o2_reference is not None for r in day_rules):
        pollutants.add("o2")
    rollups = store.hourly_rollups(conn, sorted(pollutants), start, end)
    reported = store.reported_values(conn, "hour", start, end)
    judged = []
    for rule in day_rules:
        hours = _hourly_samples(rollups, reported, (rule.site_id, rule.pollutant))
        if rule.o2_reference is not None:
            o2 = _hourly_samples(rollups, reported, (rule.site_id, "o2"))
            hours = {
                hour: Sample(
                    s.value,
                    s.flag,
                    o2[hour].value if hour in o2 else None,
                    o2[hour].flag if hour in o2 else None,
                )
                for hour, s in hours.items()
            }
        if rule.site_kind == "station" and rule.pollutant in DAILY_MAX_8H:
            by_hour = [hours.get(start + i * HOUR) for i in range(24)]
            j = judge_daily_max_8h(by_hour, limit=rule.limit)
        else:
            j = judge(
                list(hours.values()),
                limit=rule.limit,
                min_valid=MIN_VALID_HOURS,
                o2_reference=rule.o2_reference,
            )
        judged.append((rule, j))
    return _record(conn, start, end, judged)


def _hourly_samples(
    rollups: dict[store.Key, list[tuple[datetime, float | None, int, int]]],
    reported: dict[store.Key, list[tuple[datetime, float, str]]],
    key: store.Key,
) -> dict[datetime, Sample]:
    """One site's hourly means of one pollutant in a day: from its minutes (valid with ≥ 45
    valid minutes, else flagged by what made them invalid) or as the device reported them."""
    hours: dict[datetime, Sample] = {}
    for hour, mean, n_valid, mask in rollups.get(key, []):
        if mean is not None and n_valid >= MIN_VALID_MINUTES:
            hours[hour] = Sample(mean, Flag.NORMAL)
        else:
            bad = [f for f in flags_from_mask(mask) if f != "N"]
            hours[hour] = Sample(mean or 0.0, Flag(bad[0]) if bad else Flag.COMMS)
    for hour, value, flag in reported.get(key, []):
        hours[hour] = Sample(value, Flag(flag))
    return hours
