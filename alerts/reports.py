"""Citizen reports in the scheduled jobs: the office is told of each new report, reminded once
before its reply is due, and its parent office is told once when the deadline passes — through
the same outbox, channels and retries as episodes (report rows of ``notifications``).

Notifications carry the report, never the reporter's contact: the office reads that through
the authenticated API.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg

from alerts.dispatch import Dispatcher
from alerts.notifiers.base import Notification, targets_for
from alerts.notifiers.dispatch import attempt_once
from domain.reports import CATEGORY_LABELS, Category
from store import reports as store
from store.episodes import channels_of, log_attempt

logger = logging.getLogger(__name__)

_TITLES = {
    "opened": "New citizen report",
    "reminder": "Reminder: reply due for citizen report",
    "escalation": "Escalated: unanswered citizen report",
}


def remind_and_escalate(
    conn: psycopg.Connection, now: datetime, *, remind_before: timedelta
) -> tuple[int, int]:
    """Reminders and escalations for unanswered reports, each at most once per report.

    The reminder goes to the office in charge ``remind_before`` the reply is due; at the
    deadline the parent office is told. A top office has nobody above it: its lateness is
    recorded (``escalated_at``) and shows on the public record as overdue."""
    reminded = escalated = 0
    for report in store.awaiting_reply(conn):
        if report["reminded_at"] is None and now >= report["due_at"] - remind_before:
            store.mark_reminded(conn, report["id"], now)
            store.queue_notifications(conn, report["id"], report["regulator_id"], "reminder")
            reminded += 1
        if report["escalated_at"] is None and now >= report["due_at"]:
            parent = report["parent_id"]
            store.mark_escalated(conn, report["id"], parent, now)
            if parent:
                store.queue_notifications(conn, report["id"], parent, "escalation")
            escalated += 1
            logger.info(
                "report %s unanswered past its deadline; escalated to %s", report["id"], parent
            )
    return reminded, escalated


def _iso(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def compose(row: dict[str, Any], public_url: str | None) -> tuple[str, str, dict[str, Any]]:
    """(subject, plain text, JSON payload) for an outbox row joined with its report."""
    kind = row["kind"]
    category = CATEGORY_LABELS[Category(row["category"])][0]
    subject = f"[Sunlight] {_TITLES.get(kind, kind)} {row['report_id']}: {category}"
    base = public_url.rstrip("/") if public_url else ""
    page = f"{base}/reports/{row['tracking_code']}"
    lines = [
        subject,
        "",
        f"Received: {_iso(row['received_at'])}  reply due by: {_iso(row['due_at'])}",
        f"Where: {row['lat']:.5f} N, {row['lon']:.5f} E (district {row['district_id'] or 'none'})",
        f"Office in charge: {row['office_in_charge']}",
        "",
        str(row["description"]),
        "",
    ]
    if kind == "escalation":
        lines.append("The office in charge did not reply within its deadline.")
    lines.append(f"Public record: {page}")
    lines.append(f"Reply with POST {base}/api/v1/regulator/reports/{row['report_id']}/replies")
    payload = {
        "notification_id": row["id"],
        "kind": kind,
        "regulator": row["regulator_id"],
        "report": {
            "id": row["report_id"],
            "tracking_code": row["tracking_code"],
            "category": row["category"],
            "description": row["description"],
            "lon": row["lon"],
            "lat": row["lat"],
            "district": row["district_id"],
            "status": row["report_status"],
            "received_at": _iso(row["received_at"]),
            "due_at": _iso(row["due_at"]),
            "office_in_charge": row["office_in_charge"],
            "url": page,
        },
    }
    return subject, "\n".join(lines) + "\n", payload


def send_due(conn: psycopg.Connection, dispatcher: Dispatcher, now: datetime) -> int:
    """Attempt every due report notification once; return how many were delivered."""
    delivered = 0
    with conn.transaction():
        for row in store.due_notifications(conn, now):
            subject, text, payload = compose(row, dispatcher.settings.public_base_url)
            notification = Notification(
                id=row["id"],
                regulator_id=row["regulator_id"],
                # Its own kinds, so a receiver never takes a report for an episode.
                kind=f"report_{row['kind']}",
                subject=subject,
                body_text=text,
                payload=payload,
            )
            channel = row["channel"]
            target = targets_for(row["regulator_id"], channels_of(conn, row["regulator_id"])).get(
                channel
            )
            notifier = dispatcher.notifier(channel)  # shares the episodes' connections
            if target is None or notifier is None:
                log_attempt(
                    conn,
                    row,
                    ok=False,
                    next_attempt_at=None,
                    detail=f"channel {channel} is not configured for {row['regulator_id']}",
                )
                continue
            outcome = attempt_once(
                notification, channel, target, notifier, attempt=row["attempts"] + 1
            )
            log_attempt(
                conn,
                row,
                ok=outcome.ok,
                detail=outcome.detail,
                next_attempt_at=outcome.next_attempt_at,
            )
            delivered += int(outcome.ok)
    return delivered


def run(conn: psycopg.Connection, dispatcher: Dispatcher, now: datetime) -> int:
    """One pass of the reports job: reminders and escalations, then sending."""
    remind_before = timedelta(minutes=dispatcher.settings.reports_remind_before_minutes)
    with conn.transaction():
        remind_and_escalate(conn, now, remind_before=remind_before)
    return send_due(conn, dispatcher, now)
