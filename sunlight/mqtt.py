"""MQTT clients built the same way by every service: credentials, TLS, reconnect backoff."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sunlight.settings import Settings


def make_client(
    settings: Settings, client_id: str, *, clean: bool, manual_ack: bool
) -> mqtt.Client:
    """A paho client configured from settings (credentials, TLS, reconnect backoff)."""
    endpoint = settings.mqtt
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
