"""Device messages without a broker: topics, JSON shape, UTC timestamps, gaps, flags, seeds."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from domain.offsets import parse_utc_offset
from domain.readings import Flag, Period
from registry.model import Registry, read_registry_file
from sensors_sim.events import device_state
from sensors_sim.payloads import (
    format_ts,
    messages_at,
    period_for_interval,
    registry_messages_at,
    topic_for,
)
from sensors_sim.sites import SimDevice, sim_devices

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registry.yaml"
T = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The example registry."""
    return read_registry_file(EXAMPLE)


@pytest.fixture(scope="module")
def devices(registry: Registry) -> tuple[SimDevice, ...]:
    """Simulated devices of the example registry with seed 0."""
    return sim_devices(registry, seed=0)


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (datetime(2026, 11, 23, 10, 0, tzinfo=UTC), "2026-11-23T10:00:00Z"),
        (
            datetime(2026, 11, 23, 18, 0, tzinfo=timezone(timedelta(hours=8))),
            "2026-11-23T10:00:00Z",
        ),
        (datetime(2026, 11, 23, 10, 0, 0, 250000, tzinfo=UTC), "2026-11-23T10:00:00.250Z"),
    ],
)
def test_timestamps_are_utc_with_z(t: datetime, text: str) -> None:
    """Any aware time is written in UTC with a trailing Z."""
    assert format_ts(t) == text


def test_naive_time_is_refused() -> None:
    """A naive time has no place in a message."""
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2026, 11, 23, 10, 0))


@pytest.mark.parametrize(
    ("text", "delta"),
    [("+08:00", timedelta(hours=8)), ("-03:30", -timedelta(hours=3, minutes=30))],
)
def test_parse_utc_offset(text: str, delta: timedelta) -> None:
    """Device clock offsets from the registry parse to timedeltas."""
    assert parse_utc_offset(text) == delta


@pytest.mark.parametrize(
    ("interval", "period"),
    [(60, Period.MINUTE), (3600, Period.HOUR), (86400, Period.DAY), (10, Period.SAMPLE)],
)
def test_period_follows_the_interval(interval: float, period: Period) -> None:
    """Minute data at 60 s steps, samples at odd steps."""
    assert period_for_interval(interval) == period


def test_one_message_per_device_on_its_topic(registry: Registry) -> None:
    """Every device not in a gap sends one message on sunlight/v1/devices/<id>/readings."""
    messages = registry_messages_at(registry, T)
    all_ids = [d.id for d, _, _ in registry.devices()]
    ids = [m.device_id for m in messages]
    assert len(ids) == len(set(ids))
    assert set(ids) <= set(all_ids)
    assert len(ids) >= len(all_ids) - 2
    for message in messages:
        assert message.topic == f"sunlight/v1/devices/{message.device_id}/readings"
        assert message.topic == topic_for(message.device_id)


def test_body_is_the_documented_json(registry: Registry) -> None:
    """The encoded payload has ts, period and readings of pollutant/value/unit/flag."""
    message = registry_messages_at(registry, T)[0]
    body = json.loads(message.encode())
    assert body["ts"] == "2026-11-23T10:00:00Z"
    assert body["period"] == "minute"
    assert body["readings"]
    for reading in body["readings"]:
        assert set(reading) == {"pollutant", "value", "unit", "flag"}
        assert isinstance(reading["value"], float)
        assert reading["flag"] in {f.value for f in Flag}


def test_same_seed_same_messages(registry: Registry) -> None:
    """Two runs with one seed produce identical payloads; another seed differs."""
    a = [m.encode() for m in registry_messages_at(registry, T, seed=5)]
    b = [m.encode() for m in registry_messages_at(registry, T, seed=5)]
    c = [m.encode() for m in registry_messages_at(registry, T, seed=6)]
    assert a == b
    assert a != c


def test_a_device_does_not_depend_on_the_others(devices: tuple[SimDevice, ...]) -> None:
    """A device's message is the same whether or not other devices were generated first."""
    alone = list(messages_at(devices[-1:], T))
    together = list(messages_at(devices, T))
    assert alone
    assert alone[0] == together[-1]


def test_gaps_and_flags_are_occasional(devices: tuple[SimDevice, ...]) -> None:
    """Over a week of minutes: a few silent minutes, some C and M flags, ≥ 95 % normal."""
    counts: Counter[str] = Counter()
    silent = total = 0
    start = datetime(2026, 11, 16, tzinfo=UTC)
    for minute in range(0, 7 * 24 * 60, 5):
        t = start + timedelta(minutes=minute)
        for device in devices:
            state = device_state(device, t, seed=0)
            total += 1
            if state.silent:
                silent += 1
            else:
                counts[state.flag.value] += 1
    assert 0 < silent / total < 0.05
    assert counts["C"] > 0
    assert counts["M"] > 0
    assert counts["N"] / sum(counts.values()) >= 0.95
    assert set(counts) <= {"N", "C", "M"}


def test_flag_applies_to_every_reading(devices: tuple[SimDevice, ...]) -> None:
    """During a calibration every reading of the message carries C."""
    start = datetime(2026, 11, 23, tzinfo=UTC)
    device = devices[0]
    t = next(
        start + timedelta(minutes=m)
        for m in range(24 * 60)
        if device_state(device, start + timedelta(minutes=m), seed=0).flag is Flag.CALIBRATION
    )
    (message,) = messages_at([device], t)
    assert {r["flag"] for r in message.body["readings"]} == {"C"}
