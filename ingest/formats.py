"""Payload formats by topic suffix: each turns a message's bytes into readings and rejections.

A new format is one parser and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from ingest.devices import DeviceInfo
from ingest.hj212 import parse_hj212_payload
from ingest.payloads import Parsed, parse_json_payload
from ingest.topics import HJ212, READINGS

Parser = Callable[[bytes, DeviceInfo, datetime], Parsed]


def _json(payload: bytes, device: DeviceInfo, now: datetime) -> Parsed:
    return parse_json_payload(payload, device.medium, now)


PARSERS: Final[dict[str, Parser]] = {
    READINGS: _json,
    HJ212: parse_hj212_payload,
}
