"""Episodes, not noise: consecutive exceedance hours of one outlet and pollutant are one episode
(open → notified → acknowledged → resolved, reopened if it recurs soon after), and a monitor that
went quiet is one gap episode. Offices are reminded while they do not acknowledge, and the
parent office is told when the deadline passes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alerts.judge import Outcome
from domain.compliance import Verdict, severity
from store import compliance as compliance_store
from store import episodes as store
from store.episodes import EpisodeKey

logger = logging.getLogger(__name__)

EXCEEDANCE, GAP = "exceedance", "gap"


def apply_outcomes(
    conn: psycopg.Connection, outcomes: Sequence[Outcome], *, reopen_within: timedelta
) -> None:
    """Open, extend or reopen the episode each hour's (or day's) verdict belongs to.

    Set-based, a few statements whatever the number of outcomes (an hour of 10,000 outlets can
    open hundreds of episodes): the same rows, ids, audit events and outbox notifications as
    taking the outcomes one by one in their order. Outcomes about the same episode go in
    separate rounds, so a later one sees what an earlier one did."""
    batch: list[Outcome] = []
    seen: set[EpisodeKey] = set()
    for outcome in outcomes:
        key = _key(outcome)
        if key in seen:
            _apply(conn, batch, reopen_within)
            batch, seen = [], set()
        batch.append(outcome)
        seen.add(key)
    _apply(conn, batch, reopen_within)


def _key(outcome: Outcome) -> EpisodeKey:
    return (outcome.rule.site_id, outcome.rule.pollutant, outcome.rule.period)


def _counted(outcome: Outcome) -> bool:
    """An exceedance opens, extends or reopens an episode unless silenced (a planned
    shutdown) or already counted (the same hour judged again)."""
    return (
        outcome.judgement.verdict is Verdict.EXCEEDANCE
        and not outcome.silenced
        and outcome.previous != Verdict.EXCEEDANCE.value
    )


def _changed(outcome: Outcome) -> bool:
    """Late data turned an exceedance hour into another verdict: noted on the live episode."""
    return (
        outcome.judgement.verdict is not Verdict.EXCEEDANCE
        and outcome.previous == Verdict.EXCEEDANCE.value
    )


def _apply(conn: psycopg.Connection, outcomes: list[Outcome], reopen_within: timedelta) -> None:
    """``apply_outcomes`` of outcomes about distinct episodes."""
    # Most outcomes of an hour are neither an exceedance nor replace one: skipped at once.
    relevant = [
        o
        for o in outcomes
        if (o.judgement.verdict is Verdict.EXCEEDANCE or o.previous == Verdict.EXCEEDANCE.value)
        and (_counted(o) or _changed(o))
    ]
    if not relevant:
        return
    live = store.live_episodes(conn, EXCEEDANCE, [_key(o) for o in relevant])
    resolved = store.last_resolved_episodes(
        conn, EXCEEDANCE, [_key(o) for o in relevant if _counted(o) and _key(o) not in live]
    )
    # What happens to each outcome's episode, named as its audit event: (event, outcome, the
    # episode's row, or the fields of a new one).
    steps: list[tuple[str, Outcome, dict[str, Any]]] = []
    for o in relevant:
        episode, last = live.get(_key(o)), resolved.get(_key(o))
        if not _counted(o):
            if episode is not None:
                steps.append(("verdict_changed", o, episode))
        elif episode is not None:
            steps.append(("extended", o, episode))
        elif last is not None and o.start - last["last_end"] <= reopen_within:
            steps.append(("reopened", o, last))
        else:
            fields = {
                "kind": EXCEEDANCE,
                "site_id": o.rule.site_id,
                "pollutant": o.rule.pollutant,
                "period": o.rule.period,
                "regulator_id": o.rule.regulator_id,
                "severity": _severity(o),
                "first_start": o.start,
                "last_end": o.end,
                "hours": 1,
                "max_mean": o.judgement.mean,
                "limit_value": o.rule.limit,
            }
            steps.append(("opened", o, fields))
    new_ids = iter(store.insert_episodes(conn, [row for e, _, row in steps if e == "opened"]))
    ids = [next(new_ids) if e == "opened" else int(row["id"]) for e, _, row in steps]
    store.extend_episodes(
        conn,
        [
            (i, o.end, o.judgement.mean, _severity(o))
            for i, (e, o, _) in zip(ids, steps, strict=True)
            if e == "extended"
        ],
    )
    store.reopen_episodes(
        conn,
        [
            (i, o.end, o.judgement.mean)
            for i, (e, o, _) in zip(ids, steps, strict=True)
            if e == "reopened"
        ],
    )
    # A reopened episode's notifications are numbered by its reopening.
    notices = [
        (i, row["regulator_id"], e, row["reopened"] + 1 if e == "reopened" else 0)
        for i, (e, _, row) in zip(ids, steps, strict=True)
        if e in ("opened", "reopened")
    ]
    added = iter(store.insert_notifications(conn, notices))
    # The audit log in the outcomes' order: what happened to each episode, then the
    # notifications it queued, if any (a repeat of the same kind and seq queues none).
    events: list[tuple[int, str, str | None, dict[str, Any]]] = []
    for i, (e, o, row) in zip(ids, steps, strict=True):
        detail: dict[str, Any]
        if e == "verdict_changed":
            detail = {"start": o.start.isoformat(), "verdict": o.judgement.verdict.value}
        elif e == "opened":
            detail = store.opened_detail(row)
            logger.info(
                "episode %s opened: %s %s over %s",
                i,
                o.rule.site_id,
                o.rule.pollutant,
                o.rule.limit,
            )
        else:
            detail = {"until": o.end.isoformat(), "mean": o.judgement.mean}
        events.append((i, e, None, detail))
        if e in ("opened", "reopened") and next(added):
            seq = row["reopened"] + 1 if e == "reopened" else 0
            events.append((i, "notification_queued", row["regulator_id"], {"kind": e, "seq": seq}))
    store.add_events(conn, events)


def _severity(outcome: Outcome) -> str:
    assert outcome.judgement.margin is not None  # an exceedance has one
    return severity(outcome.judgement.margin).value


def check_gaps(conn: psycopg.Connection, now: datetime, *, after: timedelta) -> int:
    """Open a gap episode for every outlet whose monitor sent no valid data for ``after``.

    'Sent' is arrival: a device back-filling its buffer is sending, a device sending only
    flagged (invalid) values is not. Only outlets that have reported at least once are watched:
    a device never switched on is a registration matter, not evasion. Returns the number of
    episodes opened."""
    opened = 0
    quiet = compliance_store.silenced(conn, now - after, now)
    for site_id, regulator_id, _kind, valid_sent, any_time in compliance_store.last_valid_times(
        conn
    ):
        if any_time is None:
            continue
        since = valid_sent or any_time
        live = store.live_episode(conn, GAP, site_id, "", "")
        if now - since < after:
            if live is not None and live["last_end"] < since:
                conn.execute("update episodes set last_end = %s where id = %s", (since, live["id"]))
                store.add_event(conn, live["id"], "data_resumed", detail={"at": since.isoformat()})
            continue
        if live is not None or site_id in quiet:
            continue
        episode_id = store.open_episode(
            conn,
            {
                "kind": GAP,
                "site_id": site_id,
                "pollutant": "",
                "period": "",
                "regulator_id": regulator_id,
                "severity": None,
                "first_start": since,
                "last_end": now,
                "hours": int((now - since).total_seconds() // 3600),
                "max_mean": None,
                "limit_value": None,
            },
        )
        store.queue_notifications(conn, episode_id, regulator_id, "opened")
        opened += 1
    return opened


def remind_and_escalate(
    conn: psycopg.Connection, now: datetime, *, remind_every: timedelta
) -> None:
    """Reminders to the office while unacknowledged; escalation to the parent at the deadline."""
    for episode in store.awaiting_acknowledgement(conn):
        if episode["status"] == "notified":
            last = episode["last_reminded_at"] or episode["notified_at"]
            if last is not None and now - last >= remind_every:
                seq = store.mark_reminded(conn, episode["id"], now)
                store.queue_notifications(
                    conn, episode["id"], episode["regulator_id"], "reminder", seq
                )
        deadline = episode["opened_at"] + timedelta(minutes=episode["ack_deadline_minutes"])
        if now >= deadline and episode["escalated_to"] is None and episode["parent_id"]:
            store.mark_escalated(conn, episode["id"], episode["parent_id"], now)
            store.queue_notifications(conn, episode["id"], episode["parent_id"], "escalation")
