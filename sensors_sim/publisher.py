"""Publishing to the broker: a paho-mqtt 2.x client that sends QoS 1 and knows what is unacked."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, Protocol

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sunlight.settings import MqttEndpoint

logger = logging.getLogger(__name__)

QOS = 1


class PublishError(ConnectionError):
    """The broker could not be reached or refused the connection; carries its reason code."""

    def __init__(self, message: str, *, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class Publisher(Protocol):
    """Where the simulator sends messages; ``MqttPublisher`` in production, a list in tests."""

    def publish(self, topic: str, payload: bytes) -> bool:
        """Queue one message; False if it was dropped (cancelled while waiting, or refused)."""
        ...


class MqttPublisher:
    """One MQTT connection publishing at QoS 1, with a bound on unacknowledged messages.

    paho queues without limit while the broker is slow; ``max_pending`` makes ``publish`` wait
    for acknowledgements instead, so a stalled broker slows the simulator rather than filling
    memory. Setting ``cancel`` ends such a wait (the message is then dropped).
    """

    def __init__(
        self,
        endpoint: MqttEndpoint,
        *,
        client_id: str,
        keepalive_s: int = 30,
        max_pending: int = 1000,
        cancel: threading.Event | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.max_pending = max_pending
        self._cancel = cancel or threading.Event()
        self._keepalive_s = keepalive_s
        self._lock = threading.Condition()
        self._sent = 0
        self._acked = 0
        self._connected = threading.Event()
        self._connect_result: ReasonCode | None = None
        self._closing = False
        self._client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
        )
        if endpoint.username is not None:
            self._client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            self._client.tls_set()
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    # -- paho callbacks (network thread): log, never raise --------------------------------------
    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connect_result = reason_code
        if reason_code.is_failure:
            logger.error("broker %s refused the connection: %s", self.endpoint.display, reason_code)
        else:
            logger.info("connected to %s", self.endpoint.display)
        self._connected.set()

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self._closing:
            logger.warning("lost %s (%s); reconnecting", self.endpoint.display, reason_code)

    def _on_publish(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._acked += 1
            self._lock.notify_all()

    # -- API ------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Messages handed to paho and not yet acknowledged by the broker."""
        with self._lock:
            return self._sent - self._acked

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and start the network thread; raise ``PublishError`` if it does not work."""
        try:
            self._client.connect(self.endpoint.host, self.endpoint.port, self._keepalive_s)
        except OSError as exc:
            raise PublishError(f"cannot reach {self.endpoint.display}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self._stop_loop()
            raise PublishError(f"no CONNACK from {self.endpoint.display} within {timeout_s} s")
        result = self._connect_result
        if result is not None and result.is_failure:
            self._stop_loop()
            raise PublishError(
                f"{self.endpoint.display} refused the connection: {result}",
                reason_code=result.value,
            )

    def publish(self, topic: str, payload: bytes) -> bool:
        """Send at QoS 1, first waiting while ``max_pending`` messages are unacknowledged."""
        with self._lock:
            while self._sent - self._acked >= self.max_pending:
                if self._cancel.is_set():
                    return False
                if not self._lock.wait(timeout=1.0):
                    logger.debug("waiting for the broker: %d unacked", self._sent - self._acked)
            self._sent += 1
        info = self._client.publish(topic, payload, qos=QOS)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            # NO_CONN is fine: paho keeps QoS 1 messages and sends them after reconnecting.
            with self._lock:
                self._sent -= 1
            logger.warning("could not queue a message on %s: %s", topic, info.rc)
            return False
        return True

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every published message is acknowledged; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._sent <= self._acked, timeout=timeout_s)

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Wait (bounded) for outstanding acknowledgements, then disconnect cleanly."""
        if not self.flush(flush_timeout_s):
            logger.warning("closing with %d unacknowledged messages", self.pending)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(flush_timeout_s=0.0 if exc_type is not None else 5.0)
