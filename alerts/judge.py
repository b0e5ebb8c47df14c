"""Judging one hour or one day of every rule: values from the store, verdicts from the domain.

Rules are data: the permit limits in the registry and GB 3095 for stations. Each judgement is
recorded, compliant ones too, so the public record shows every hour, not only violations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from domain.ambient import ambient_limits
from domain.compliance import MIN_VALID_HOURS, MIN_VALID_MINUTES, Judgement, Sample, judge
from domain.readings import Flag, flags_from_mask
from store import compliance as store
from store.compliance import Rule

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Outcome:
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


def _flag(text: str | None) -> Flag | None:
    try:
        return Flag(text) if text else None
    except ValueError:
        return Flag.FAULT


def _record(conn: psycopg.Connection, rule: Rule, start: datetime, j: Judgement) -> str | None:
    return store.upsert_judgement(
        conn,
        {
            "site_id": rule.site_id,
            "pollutant": rule.pollutant,
            "period": rule.period,
            "start": start,
            "limit_value": rule.limit,
            "unit": rule.unit,
            "standard": rule.standard,
            "o2_reference": rule.o2_reference,
            "mean": j.mean,
            "measured_mean": j.measured_mean,
            "o2_mean": j.o2_mean,
            "valid_count": j.valid_count,
            "total_count": j.total_count,
            "verdict": j.verdict.value,
        },
    )


def judge_hour(conn: psycopg.Connection, start: datetime) -> list[Outcome]:
    """HJ 75: each hourly rule on its valid minutes (≥ 45), O2-corrected where the permit says.

    A device that reports hourly means itself (HJ 212 CN 2061) is judged on those when it sent
    no minutes."""
    end = start + HOUR
    hour_rules = rules(conn, "hour")
    pollutants = sorted({r.pollutant for r in hour_rules})
    minutes = store.minute_values(conn, pollutants, start, end)
    reported = store.reported_values(conn, "hour", start, end)
    quiet = store.silenced(conn, start, end)
    outcomes = []
    for rule in hour_rules:
        key = (rule.site_id, rule.pollutant)
        if key in minutes:
            samples = [Sample(v, Flag(f), o2, _flag(of)) for v, f, o2, of in minutes[key]]
            j = judge(
                samples,
                limit=rule.limit,
                min_valid=MIN_VALID_MINUTES,
                o2_reference=rule.o2_reference,
            )
        else:
            o2 = reported.get((rule.site_id, "o2"), [])
            samples = [
                Sample(v, Flag(f), o2[0][1] if o2 else None, Flag(o2[0][2]) if o2 else None)
                for _, v, f in reported.get(key, [])[:1]
            ]
            j = judge(samples, limit=rule.limit, min_valid=1, o2_reference=rule.o2_reference)
        previous = _record(conn, rule, start, j)
        outcomes.append(Outcome(rule, start, end, j, previous, rule.site_id in quiet))
    return outcomes


def judge_day(conn: psycopg.Connection, start: datetime, end: datetime) -> list[Outcome]:
    """Daily rules (wastewater, GB 3095 24 h) on valid hourly means (≥ 20 hours).

    An hour is valid when the device reported it with flag N, or when its minutes made a
    valid hourly mean (≥ 45 valid minutes); an hour short of minutes counts as invalid."""
    day_rules = rules(conn, "day")
    rollups = store.hourly_rollups(conn, start, end)
    reported = store.reported_values(conn, "hour", start, end)
    quiet = store.silenced(conn, start, end)
    outcomes = []
    for rule in day_rules:
        key = (rule.site_id, rule.pollutant)
        hours: dict[datetime, Sample] = {}
        for hour, mean, n_valid, mask in rollups.get(key, []):
            if mean is not None and n_valid >= MIN_VALID_MINUTES:
                hours[hour] = Sample(mean, Flag.NORMAL)
            else:
                bad = [f for f in flags_from_mask(mask) if f != "N"]
                hours[hour] = Sample(mean or 0.0, Flag(bad[0]) if bad else Flag.COMMS)
        for hour, value, flag in reported.get(key, []):
            hours[hour] = Sample(value, Flag(flag))
        j = judge(list(hours.values()), limit=rule.limit, min_valid=MIN_VALID_HOURS)
        previous = _record(conn, rule, start, j)
        outcomes.append(Outcome(rule, start, end, j, previous, rule.site_id in quiet))
    return outcomes
