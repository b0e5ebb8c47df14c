"""Sending the notification outbox: each due row once per channel, attempts logged, backoff kept.

Rows are locked while they are sent (``for update skip locked``), so no two senders take one;
each is committed as soon as it is sent, and a crash between sending and committing resends
that one notification with the same idempotency key (the row id), which receivers use to drop
the duplicate.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg

from alerts.messages import compose
from alerts.notifiers.base import Notification, Notifier, notifier_class, targets_for
from alerts.notifiers.dispatch import attempt_once
from alerts.notifiers.email import SmtpConfig
from store import episodes as store
from sunlight.settings import Settings

logger = logging.getLogger(__name__)


class Dispatcher:
    BATCH = 100  # notifications per run at most, as before: the next run takes the rest

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._notifiers: dict[str, Notifier] = {}

    def notifier(self, channel: str) -> Notifier | None:
        """The channel's notifier, made once and kept (connections reused); None for e-mail
        without an SMTP relay configured."""
        if channel not in self._notifiers:
            cls: Any = notifier_class(channel)
            if channel == "email":
                if not self.settings.smtp_host:
                    return None
                self._notifiers[channel] = cls(
                    SmtpConfig(
                        host=self.settings.smtp_host,
                        port=self.settings.smtp_port,
                        sender=self.settings.smtp_sender,
                        starttls=self.settings.smtp_starttls,
                        username=self.settings.smtp_username,
                        password=self.settings.smtp_password,
                    )
                )
            elif channel == "mqtt":
                self._notifiers[channel] = cls(self.settings)
            else:
                self._notifiers[channel] = cls()
        return self._notifiers[channel]

    def send_due(self, conn: psycopg.Connection, now: datetime) -> int:
        """Attempt every due notification once; return how many were delivered."""
        delivered = 0
        # One transaction per notification: a crash resends at most the one in flight (with
        # its idempotency key), never every earlier one of the run.
        for _ in range(self.BATCH):
            with conn.transaction():
                rows = store.due_notifications(conn, now, limit=1)
                if not rows:
                    break
                row = rows[0]
                subject, text, payload = compose(row, self.settings.public_base_url)
                notification = Notification(
                    id=row["id"],
                    regulator_id=row["regulator_id"],
                    kind=row["kind"],
                    subject=subject,
                    body_text=text,
                    payload=payload,
                )
                channel = row["channel"]
                target = targets_for(
                    row["regulator_id"], store.channels_of(conn, row["regulator_id"])
                ).get(channel)
                notifier = self.notifier(channel)
                if target is None or notifier is None:
                    store.record_attempt(
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
                store.record_attempt(
                    conn,
                    row,
                    ok=outcome.ok,
                    detail=outcome.detail,
                    next_attempt_at=outcome.next_attempt_at,
                )
                delivered += int(outcome.ok)
        return delivered

    def close(self) -> None:
        for notifier in self._notifiers.values():
            try:
                notifier.close()
            except Exception:
                logger.exception("closing a notifier failed")
