"""Dead letters: every rejected message, kept with its raw bytes and the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes


def write_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> None:
    if not letters:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "insert into dead_letters (topic, device_id, reason, detail, payload)"
            " values (%s, %s, %s, %s, %s)",
            [(d.topic, d.device_id, d.reason, d.detail, d.payload) for d in letters],
        )


def count_by_reason(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("select reason, count(*) from dead_letters group by reason").fetchall()
    return {r[0]: r[1] for r in rows}
