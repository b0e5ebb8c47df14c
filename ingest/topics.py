"""MQTT topics devices publish to, and the device id and payload format each one names."""

from __future__ import annotations

import re
from typing import Final

PREFIX: Final = "sunlight/v1/devices"
READINGS: Final = "readings"  # JSON payload (docs/payload-format.md)
HJ212: Final = "hj212"  # one HJ 212-2017 frame per message
FORMATS: Final = (READINGS, HJ212)
READINGS_FILTER: Final = f"{PREFIX}/+/{READINGS}"
HJ212_FILTER: Final = f"{PREFIX}/+/{HJ212}"
INGEST_FILTERS: Final = (READINGS_FILTER, HJ212_FILTER)

# Matches registry.model.Identifier; anything else can't be a registered device.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def device_topic(device_id: str, fmt: str = READINGS) -> str:
    return f"{PREFIX}/{device_id}/{fmt}"


def readings_topic(device_id: str) -> str:
    return device_topic(device_id, READINGS)


def subscription(topic_filter: str, shared_group: str | None) -> str:
    """The filter to subscribe to; a shared group splits messages among ingestors."""
    return f"$share/{shared_group}/{topic_filter}" if shared_group else topic_filter


def parse_topic(topic: str) -> tuple[str, str] | None:
    """(device id, payload format) of a device topic, or None when the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != PREFIX or parts[4] not in FORMATS:
        return None
    return (parts[3], parts[4]) if _DEVICE_ID.match(parts[3]) else None


def device_from_topic(topic: str) -> str | None:
    parsed = parse_topic(topic)
    return parsed[0] if parsed else None
