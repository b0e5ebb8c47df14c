"""Replaying dead letters whose cause was fixed (a device registered later, a unit corrected).

Each letter is re-run through the same path as live messages. Writes are idempotent, so a
replay never duplicates a reading; a letter is marked replayed only when nothing in it is
rejected any more, otherwise its reason and detail are updated to the current ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from domain.hj212 import salvage_fields
from ingest.batch import Message, handle_batch
from ingest.devices import DeviceDirectory
from ingest.gateway import GATEWAY_TOPIC
from ingest.topics import HJ212, device_topic
from store import dead_letters
from store.db import connect
from store.readings import refresh_late_aggregate
from store.schema import storage_mode

logger = logging.getLogger(__name__)


def _route(conn: psycopg.Connection, directory: DeviceDirectory, topic: str, payload: bytes) -> str:
    """The device topic a letter belongs to. Frames the TCP gateway refused (e.g. an MN nobody
    had registered yet) go to the topic of the device that now has that MN."""
    if topic != GATEWAY_TOPIC:
        return topic
    mn = salvage_fields(payload).get("MN")
    device = directory.by_mn(conn, mn) if mn else None
    return device_topic(device.id, HJ212) if device else topic


@dataclass
class ReplayResult:
    replayed: int = 0
    still_rejected: int = 0
    readings: int = 0


def replay_dead_letters(
    database_url: str,
    *,
    device_id: str | None = None,
    reason: str | None = None,
    limit: int = 10_000,
    default_timezone: str = "+08:00",
) -> ReplayResult:
    result = ReplayResult()
    directory = DeviceDirectory(min_reload_s=0, default_timezone=default_timezone)
    with connect(database_url) as conn:
        mode = storage_mode(conn)
        if mode is None:
            raise RuntimeError("database is not migrated: run 'sunlight db migrate'")
        directory.load(conn)
        conn.commit()
        for letter_id, original_topic, payload in dead_letters.pending(
            conn, device_id=device_id, reason=reason, limit=limit
        ):
            now = datetime.now(UTC)
            topic = _route(conn, directory, original_topic, payload)
            with conn.transaction():
                outcome = handle_batch(
                    conn, directory, mode, [Message(topic, payload)], now, record_rejects=False
                )
                if outcome.letters:
                    letter = outcome.letters[0]
                    dead_letters.update_outcome(conn, letter_id, letter.reason, letter.detail)
                    result.still_rejected += 1
                else:
                    dead_letters.mark_replayed(conn, letter_id)
                    result.replayed += 1
                result.readings += outcome.readings
            if outcome.write and outcome.write.touched_hours:
                refresh_late_aggregate(database_url, mode, outcome.write.touched_hours, now)
    logger.info(
        "replayed %d dead letters (%d readings); %d still rejected",
        result.replayed,
        result.readings,
        result.still_rejected,
    )
    return result
