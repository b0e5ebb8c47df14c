"""Notification channels (signed webhook, e-mail, MQTT) and their delivery with retries."""

from __future__ import annotations

from alerts.notifiers.base import (
    NOTIFIERS,
    DeliveryError,
    EmailTarget,
    MqttTarget,
    Notification,
    Notifier,
    Target,
    WebhookTarget,
    notifier_class,
    targets_for,
)
from alerts.notifiers.dispatch import Attempt, Outcome, attempt_once, backoff, deliver

__all__ = [
    "NOTIFIERS",
    "Attempt",
    "DeliveryError",
    "EmailTarget",
    "MqttTarget",
    "Notification",
    "Notifier",
    "Outcome",
    "Target",
    "WebhookTarget",
    "attempt_once",
    "backoff",
    "deliver",
    "notifier_class",
    "targets_for",
]
