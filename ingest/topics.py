"""MQTT topics devices publish to, and the device id each one names."""

from __future__ import annotations

import re
from typing import Final

PREFIX: Final = "sunlight/v1/devices"
READINGS_SUFFIX: Final = "readings"
READINGS_FILTER: Final = f"{PREFIX}/+/{READINGS_SUFFIX}"

# Matches registry.model.Identifier; anything else can't be a registered device.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def readings_topic(device_id: str) -> str:
    return f"{PREFIX}/{device_id}/{READINGS_SUFFIX}"


def subscription(topic_filter: str, shared_group: str | None) -> str:
    """The filter to subscribe to; a shared group splits messages among ingestors."""
    return f"$share/{shared_group}/{topic_filter}" if shared_group else topic_filter


def device_from_topic(topic: str) -> str | None:
    """The device id a readings topic names, or None when the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != PREFIX or parts[4] != READINGS_SUFFIX:
        return None
    return parts[3] if _DEVICE_ID.match(parts[3]) else None
