"""Episodes opened, extended, reopened and noted set-based (``alerts.lifecycle.apply_outcomes``)
leave exactly the rows the one-by-one version left: the same episodes, audit events and outbox
notifications, with the same ids in the same order."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.judge import Outcome
from alerts.lifecycle import apply_outcomes
from domain.compliance import Judgement, Verdict, severity
from registry.loader import load_registry
from store import episodes as store
from store.compliance import Rule, permit_rules
from tests.conftest import EXAMPLE_REGISTRY
from tests.servers import PostgresCluster

REOPEN = timedelta(hours=6)
HOUR = timedelta(hours=1)
_names = itertools.count()


def apply_one_by_one(conn: psycopg.Connection, outcome: Outcome) -> None:
    """The reference: how each outcome was applied before batching, one statement at a time
    through the store's single-episode functions."""
    rule, j = outcome.rule, outcome.judgement
    key = ("exceedance", rule.site_id, rule.pollutant, rule.period)
    if j.verdict is not Verdict.EXCEEDANCE:
        if outcome.previous == Verdict.EXCEEDANCE.value:
            live = store.live_episode(conn, *key)
            if live is not None:
                store.add_event(
                    conn,
                    live["id"],
                    "verdict_changed",
                    detail={"start": outcome.start.isoformat(), "verdict": j.verdict.value},
                )
        return
    if outcome.silenced or outcome.previous == Verdict.EXCEEDANCE.value:
        return
    assert j.margin is not None
    level = severity(j.margin).value
    live = store.live_episode(conn, *key)
    if live is not None:
        store.extend_episode(conn, live, end=outcome.end, mean=j.mean, severity=level)
        return
    last = store.last_resolved(conn, *key)
    if last is not None and outcome.start - last["last_end"] <= REOPEN:
        store.reopen_episode(conn, last, end=outcome.end, mean=j.mean)
        store.queue_notifications(
            conn, last["id"], last["regulator_id"], "reopened", last["reopened"] + 1
        )
        return
    episode_id = store.open_episode(
        conn,
        {
            "kind": "exceedance",
            "site_id": rule.site_id,
            "pollutant": rule.pollutant,
            "period": rule.period,
            "regulator_id": rule.regulator_id,
            "severity": level,
            "first_start": outcome.start,
            "last_end": outcome.end,
            "hours": 1,
            "max_mean": j.mean,
            "limit_value": rule.limit,
        },
    )
    store.queue_notifications(conn, episode_id, rule.regulator_id, "opened")


@pytest.fixture
def databases(pg_cluster: PostgresCluster) -> Iterator[tuple[str, str]]:
    """Two databases with the example registry: one applies in batches, one one by one."""
    urls = []
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        for _ in range(2):
            name = f"batch{next(_names)}"
            conn.execute(f"create database {name} template sunlight_template")
            urls.append(pg_cluster.url(name))
    try:
        for url in urls:
            load_registry(url, EXAMPLE_REGISTRY)
            with psycopg.connect(url) as conn:
                # Offices with several channels, and one with none (no notification queued).
                for office, notify in (
                    ("lc-eeb-dongshan", {"webhook_url": "https://h.example/x", "email": ["a@b.c"]}),
                    ("lc-eeb-nanhe", {"mqtt": False}),
                ):
                    conn.execute(
                        "update regulators set notify = %s where id = %s", (Jsonb(notify), office)
                    )
        yield urls[0], urls[1]
    finally:
        with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
            for url in urls:
                conn.execute(f"drop database {url.rsplit('/', 1)[1]} with (force)")


def outcome(
    rule: Rule, start: datetime, ratio: float | None, previous: str | None, silenced: bool = False
) -> Outcome:
    """``ratio`` × the limit as the hour's mean; None: too few valid minutes."""
    if ratio is None:
        j = Judgement(Verdict.INVALID, None, None, None, 10, 60, rule.limit, None)
    else:
        verdict = Verdict.EXCEEDANCE if ratio > 1 else Verdict.COMPLIANT
        mean = rule.limit * ratio
        j = Judgement(verdict, mean, mean, None, 60, 60, rule.limit, ratio - 1)
    return Outcome(rule, start, start + HOUR, j, previous, silenced)


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the lifecycle writes, without the clock's columns (each database has its own
    transaction time)."""
    with psycopg.connect(url) as conn:
        return {
            "episodes": conn.execute(
                "select id, kind, site_id, pollutant, period, regulator_id, status, severity,"
                " first_start, last_end, hours, max_mean, limit_value, reopened,"
                " resolved_at is null, acknowledged_at is null from episodes order by id"
            ).fetchall(),
            "events": conn.execute(
                "select id, episode_id, kind, actor, regulator_id, note, detail"
                " from episode_events order by id"
            ).fetchall(),
            "notifications": conn.execute(
                "select id, episode_id, report_id, regulator_id, kind, seq, channel, status,"
                " attempts from notifications order by id"
            ).fetchall(),
        }


def test_batched_outcomes_leave_the_rows_of_one_by_one(databases: tuple[str, str]) -> None:
    """Hours with every case: new episodes (offices with two, one or no channels), live ones
    extended, recently resolved ones reopened (numbered notifications), long-resolved ones
    replaced, silenced and already-counted hours ignored, verdicts changed by late data, and the
    same rule twice in one call (a later hour sees the episode the earlier one opened)."""
    batched, reference = databases
    with psycopg.connect(batched) as conn:
        rules = [r for r in permit_rules(conn) if r.period == "hour"]
    assert len(rules) >= 12
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)

    def both(apply: Callable[[psycopg.Connection], None]) -> None:
        for url in (batched, reference):
            with psycopg.connect(url) as conn, conn.transaction():
                apply(conn)

    def step(outcomes: list[Outcome]) -> None:
        with psycopg.connect(batched) as conn, conn.transaction():
            apply_outcomes(conn, outcomes, reopen_within=REOPEN)
        with psycopg.connect(reference) as conn, conn.transaction():
            for o in outcomes:
                apply_one_by_one(conn, o)

    # Hour 0: rules 0-7 exceed, the rest comply.
    step([outcome(r, t0, 1.3 if i < 8 else 0.5, None) for i, r in enumerate(rules)])
    # Episodes of rules 2 and 3 resolved (3 long ago); rule 1's acknowledged.
    both(
        lambda conn: conn.execute(
            "update episodes set status = 'resolved', resolved_at = now(),"
            " acknowledged_at = now(), last_end = case when site_id = %s and pollutant = %s"
            " then last_end - interval '12 hours' else last_end end"
            " where (site_id, pollutant) in ((%s, %s), (%s, %s))",
            (rules[3].site_id, rules[3].pollutant, *_key(rules[2]), *_key(rules[3])),
        )
    )
    both(
        lambda conn: conn.execute(
            "update episodes set status = 'acknowledged', acknowledged_at = now()"
            " where site_id = %s and pollutant = %s",
            _key(rules[1]),
        )
    )
    t1 = t0 + HOUR
    step(
        [
            outcome(rules[0], t1, 2.5, None),  # extended, severity raised
            outcome(rules[1], t1, 1.1, None),  # extended while acknowledged
            outcome(rules[2], t1, 1.6, None),  # reopened: notified again, seq 1
            outcome(rules[3], t1, 1.2, None),  # resolved 12 h before: a new episode
            outcome(rules[4], t0, 0.4, Verdict.EXCEEDANCE.value),  # late data: changed
            outcome(rules[5], t0, None, Verdict.EXCEEDANCE.value),  # late data: invalid now
            outcome(rules[6], t0, 1.4, Verdict.EXCEEDANCE.value),  # already counted
            outcome(rules[8], t1, 1.9, None, silenced=True),  # planned shutdown
            outcome(rules[9], t0, 0.9, Verdict.COMPLIANT.value),  # nothing to do
            outcome(rules[10], t1, 0.2, Verdict.EXCEEDANCE.value),  # changed, no live episode
            outcome(rules[11], t1, 1.05, None),  # new
            outcome(rules[11], t1 + HOUR, 1.5, None),  # the same rule again: extended
            outcome(rules[7], t1 + HOUR, 1.2, None),  # extended, after the repeat
        ]
    )
    # Reopened again, later: the next notification number.
    both(
        lambda conn: conn.execute(
            "update episodes set status = 'resolved', resolved_at = now()"
            " where site_id = %s and pollutant = %s and status <> 'resolved'",
            _key(rules[2]),
        )
    )
    step([outcome(rules[2], t1 + 2 * HOUR, 1.3, None), outcome(rules[0], t1 + HOUR, 1.2, None)])

    got, expected = rows(batched), rows(reference)
    assert got == expected
    kinds = [kind for _, _, kind, *_ in got["events"]]
    for kind in ("opened", "extended", "reopened", "verdict_changed", "notification_queued"):
        assert kind in kinds
    seqs = {(kind, seq) for _, _, _, _, kind, seq, *_ in got["notifications"]}
    assert {("opened", 0), ("reopened", 1), ("reopened", 2)} <= seqs


def _key(rule: Rule) -> tuple[str, str]:
    return (rule.site_id, rule.pollutant)
