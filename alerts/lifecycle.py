"""Episodes, not noise: consecutive exceedance hours of one outlet and pollutant are one episode
(open → notified → acknowledged → resolved, reopened if it recurs soon after), and a monitor that
went quiet is one gap episode. Offices are reminded while they do not acknowledge, and the
parent office is told when the deadline passes."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import psycopg

from alerts.judge import Outcome
from domain.compliance import Verdict, severity
from store import compliance as compliance_store
from store import episodes as store

logger = logging.getLogger(__name__)

EXCEEDANCE, GAP = "exceedance", "gap"


def apply_outcome(conn: psycopg.Connection, outcome: Outcome, *, reopen_within: timedelta) -> None:
    """Open, extend or reopen the episode an hour's (or day's) verdict belongs to."""
    rule, j = outcome.rule, outcome.judgement
    key = (EXCEEDANCE, rule.site_id, rule.pollutant, rule.period)
    if j.verdict is not Verdict.EXCEEDANCE:
        if outcome.previous == Verdict.EXCEEDANCE.value:
            live = store.live_episode(conn, *key)
            if live is not None:  # late data turned an exceedance hour into another verdict
                store.add_event(
                    conn,
                    live["id"],
                    "verdict_changed",
                    detail={"start": outcome.start.isoformat(), "verdict": j.verdict.value},
                )
        return
    if outcome.silenced or outcome.previous == Verdict.EXCEEDANCE.value:
        return  # a planned shutdown, or an hour already counted
    assert j.margin is not None
    level = severity(j.margin).value
    live = store.live_episode(conn, *key)
    if live is not None:
        store.extend_episode(conn, live, end=outcome.end, mean=j.mean, severity=level)
        return
    last = store.last_resolved(conn, *key)
    if last is not None and outcome.start - last["last_end"] <= reopen_within:
        store.reopen_episode(conn, last, end=outcome.end, mean=j.mean)
        store.queue_notifications(
            conn, last["id"], last["regulator_id"], "reopened", last["reopened"] + 1
        )
        return
    episode_id = store.open_episode(
        conn,
        {
            "kind": EXCEEDANCE,
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
    logger.info(
        "episode %s opened: %s %s over %s", episode_id, rule.site_id, rule.pollutant, rule.limit
    )


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
