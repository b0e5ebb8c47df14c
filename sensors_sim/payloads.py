"""The JSON device messages the simulator publishes: topic, body, and the pure generator of both.

Message format (one per device per interval, topic ``sunlight/v1/devices/{device_id}/readings``)::

    {"ts": "2026-11-23T10:00:00Z", "period": "minute",
     "readings": [{"pollutant": "so2", "value": 31.2, "unit": "mg/m3", "flag": "N"}, ...]}
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.readings import Period
from registry.model import Registry
from sensors_sim.events import device_state
from sensors_sim.profiles import device_readings
from sensors_sim.sites import SimDevice, sim_devices

logger = logging.getLogger(__name__)

TOPIC_TEMPLATE = "sunlight/v1/devices/{device_id}/readings"

_PERIOD_BY_INTERVAL = {60.0: Period.MINUTE, 3600.0: Period.HOUR, 86400.0: Period.DAY}


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One message ready to publish; ``body`` is the JSON document as a dict."""

    device_id: str
    topic: str
    time: datetime
    body: dict[str, Any]

    def encode(self) -> bytes:
        """The UTF-8 JSON payload, compact."""
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


def topic_for(device_id: str) -> str:
    """The topic a device publishes its readings on."""
    return TOPIC_TEMPLATE.format(device_id=device_id)


def format_ts(t: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: whole seconds, or milliseconds when there are any."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("message times must be timezone-aware")
    utc = t.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def period_for_interval(interval_s: float) -> Period:
    """What the values are averages over: minute data at 60 s, instantaneous samples otherwise."""
    return _PERIOD_BY_INTERVAL.get(float(interval_s), Period.SAMPLE)


def reading_rng(seed: int, device_id: str, t: datetime) -> random.Random:
    """The rng of one device at one instant: independent of which other devices ran before."""
    return random.Random(f"{seed}|{device_id}|{format_ts(t)}")


def messages_at(
    devices: Iterable[SimDevice],
    t: datetime,
    *,
    seed: int = 0,
    period: Period = Period.MINUTE,
) -> Iterator[DeviceMessage]:
    """The messages every non-silent device sends for simulated time ``t``; pure and repeatable."""
    ts = format_ts(t)
    for device in devices:
        state = device_state(device, t, seed=seed)
        if state.silent:
            continue
        readings = device_readings(device, t, reading_rng(seed, device.device_id, t), state)
        body = {
            "ts": ts,
            "period": period.value,
            "readings": [
                {"pollutant": r.pollutant, "value": r.value, "unit": r.unit, "flag": r.flag.value}
                for r in readings
            ],
        }
        yield DeviceMessage(device.device_id, topic_for(device.device_id), t, body)


def registry_messages_at(
    registry: Registry,
    t: datetime,
    *,
    seed: int = 0,
    default_timezone: str = "+08:00",
    period: Period = Period.MINUTE,
) -> list[DeviceMessage]:
    """``messages_at`` for every device of a registry: the one-call form for tests and tools."""
    devices = sim_devices(registry, seed=seed, default_timezone=default_timezone)
    return list(messages_at(devices, t, seed=seed, period=period))
