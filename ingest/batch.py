"""One batch of MQTT messages → one transaction of readings and dead letters."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, NamedTuple

import psycopg

from ingest.devices import DeviceDirectory
from ingest.formats import PARSERS
from ingest.topics import parse_topic
from store.dead_letters import DeadLetter, write_dead_letters
from store.readings import (
    StoredReading,
    UnknownValue,
    WriteResult,
    write_readings,
    write_unknown_values,
)
from store.schema import StorageMode

logger = logging.getLogger(__name__)


class Message(NamedTuple):
    """A received MQTT message, detached from paho so tests and replays can build one (a tuple:
    the ingestor builds one per message)."""

    topic: str
    payload: bytes


@dataclass
class BatchOutcome:
    messages: int = 0
    readings: int = 0
    write: WriteResult | None = None
    rejected: Counter[str] = field(default_factory=Counter)
    letters: list[DeadLetter] = field(default_factory=list)


_stored: Final = tuple.__new__


def _dead(topic: str, device: str | None, reason: str, detail: str, payload: bytes) -> DeadLetter:
    return DeadLetter(topic=topic, device_id=device, reason=reason, detail=detail, payload=payload)


@dataclass
class PreparedBatch:
    """A batch validated and stamped with registry keys, ready for one transaction."""

    messages: int = 0
    rows: list[StoredReading] = field(default_factory=list)
    unknown: list[UnknownValue] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def handle_batch(
    conn: psycopg.Connection,
    directory: DeviceDirectory,
    mode: StorageMode,
    messages: Sequence[Message],
    now: datetime,
    *,
    record_rejects: bool = True,
) -> BatchOutcome:
    """Validate and store ``messages`` in the caller's transaction; never raises on bad input.

    Rejects are written as dead letters unless ``record_rejects`` is false (a replay, whose
    messages are dead letters already); either way they are returned in the outcome.
    """
    prepared = prepare_batch(conn, directory, messages, now)
    return store_batch(conn, mode, prepared, record_rejects=record_rejects)


def prepare_batch(
    conn: psycopg.Connection, directory: DeviceDirectory, messages: Sequence[Message], now: datetime
) -> PreparedBatch:
    """The CPU half of a batch: parse and validate. ``conn`` serves only to reload the device
    directory when an unknown id shows up, so the ingestor can prepare one batch while the
    previous one commits on another connection."""
    out = PreparedBatch(messages=len(messages))
    rows, unknown, letters = out.rows, out.unknown, out.letters
    for msg in messages:
        target = parse_topic(msg.topic)
        if target is None:
            letters.append(
                _dead(msg.topic, None, "bad_topic", "not a device readings topic", msg.payload)
            )
            continue
        device_id, fmt = target
        device = directory.get(conn, device_id)
        if device is None:
            letters.append(
                _dead(
                    msg.topic,
                    device_id,
                    "unknown_device",
                    f"no device {device_id!r} in the registry",
                    msg.payload,
                )
            )
            continue
        parsed = PARSERS[fmt](msg.payload, device, now)
        unknown.extend(
            UnknownValue(u.time, device.device_key, u.code, u.field, u.value, u.flag)
            for u in parsed.unknown
        )
        device_key, site_key = device.device_key, device.site_key
        # StoredReading's fields in order, built as the tuple they are (the named tuple's
        # keyword constructor costs several times more, per reading).
        rows += [
            _stored(
                StoredReading, (time, device_key, site_key, pollutant, period, value, unit, flag)
            )
            for time, pollutant, period, value, unit, flag in parsed.readings
        ]
        if parsed.rejections:
            # One dead letter per message, named by its first reason, detailing every reject;
            # readings of the same message that passed are stored (replay is idempotent).
            reasons = sorted({r.reason for r in parsed.rejections})
            detail = "; ".join(
                f"{r.where}: {r.detail}" if r.where else r.detail for r in parsed.rejections
            )
            if parsed.readings:
                detail = f"{len(parsed.readings)} value(s) stored; rejected: {detail}"
            letters.append(
                _dead(msg.topic, device_id, parsed.rejections[0].reason, detail[:4000], msg.payload)
            )
            out.rejected.update(reasons)
    for letter in letters:
        if letter.reason in ("bad_topic", "unknown_device"):
            out.rejected[letter.reason] += 1
    return out


def store_batch(
    conn: psycopg.Connection,
    mode: StorageMode,
    prepared: PreparedBatch,
    *,
    record_rejects: bool = True,
) -> BatchOutcome:
    """The database half, in the caller's transaction."""
    outcome = BatchOutcome(messages=prepared.messages, rejected=prepared.rejected)
    outcome.write = write_readings(conn, prepared.rows, mode)
    write_unknown_values(conn, prepared.unknown)
    outcome.readings = len(prepared.rows)
    outcome.letters = prepared.letters
    if record_rejects:
        write_dead_letters(conn, prepared.letters)
    return outcome
