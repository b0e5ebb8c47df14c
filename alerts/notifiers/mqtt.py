"""The MQTT channel: each office's alerts on its own topic of the Sunlight broker, QoS 1."""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any, ClassVar

import paho.mqtt.client as mqtt

from alerts.notifiers.base import DeliveryError, MqttTarget, Notification, Target
from sunlight.mqtt import make_client
from sunlight.settings import Settings

logger = logging.getLogger(__name__)

# CONNACK reasons that mean the account itself is wrong; a retry cannot fix them.
_REFUSED_FOR_GOOD = frozenset({134, 135})  # bad user name or password, not authorised


class MqttNotifier:
    """Publishes ``Notification.envelope_bytes()`` (retain false) and returns once the broker's
    PUBACK arrives. Connects on first use and keeps the connection; one that was lost or timed
    out is dropped whole and made afresh on the next send, so nothing queued inside a dead
    client is published later behind the dispatcher's back.

    On MQTT 3.1.1 a broker acknowledges even a publish its ACL drops, so the PUBACK proves the
    broker took the message, not that the account may write that topic: the ``sunlight-alerts``
    account's grant (``sunlight/v1/regulators/#``) must cover every target topic.
    """

    channel: ClassVar[str] = "mqtt"
    target_type: ClassVar[type[Target]] = MqttTarget

    def __init__(
        self, settings: Settings, *, client_id: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.settings = settings
        # Unique by default: two clients with one id would keep disconnecting each other.
        self.client_id = client_id or f"sunlight-alerts-notify-{secrets.token_hex(4)}"
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None

    def send(self, notification: Notification, target: Target) -> None:
        if not isinstance(target, MqttTarget):
            raise DeliveryError(f"not an MQTT target: {type(target).__name__}", retryable=False)
        body = notification.envelope_bytes()
        # One publish at a time: the PUBACK wait is per message, and reconnecting is not
        # something two threads should do at once.
        with self._lock:
            client = self._connected()
            info = client.publish(target.topic, body, qos=1, retain=False)
            try:
                info.wait_for_publish(self.timeout_s)
            except (RuntimeError, ValueError) as exc:
                self._drop()
                raise DeliveryError(f"publish failed: {exc}", retryable=True) from None
            if not info.is_published():
                self._drop()
                raise DeliveryError(f"no PUBACK within {self.timeout_s}s", retryable=True)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _connected(self) -> mqtt.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        self._drop()
        try:
            endpoint = self.settings.mqtt
        except ValueError as exc:  # e.g. the account is missing from the credentials file
            raise DeliveryError(f"broker settings: {exc}", retryable=False) from None
        client = make_client(self.settings, self.client_id, clean=True, manual_ack=False)
        connack = threading.Event()
        reasons: list[Any] = []

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            reasons.append(reason)
            connack.set()

        client.on_connect = on_connect
        try:
            client.connect(endpoint.host, endpoint.port, keepalive=30)
        except OSError as exc:
            raise DeliveryError(
                f"broker {endpoint.display} unreachable: {exc!r}", retryable=True
            ) from None
        client.loop_start()
        if not connack.wait(self.timeout_s):
            _stop(client)
            raise DeliveryError(f"no CONNACK within {self.timeout_s}s", retryable=True)
        reason = reasons[-1]
        if reason.is_failure:
            _stop(client)
            raise DeliveryError(
                f"broker {endpoint.display} refused {endpoint.username or 'anonymous'}: {reason}",
                retryable=reason.value not in _REFUSED_FOR_GOOD,
            )
        logger.info("notifier connected to %s as %s", endpoint.display, self.client_id)
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            _stop(self._client)
            self._client = None


def _stop(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()
