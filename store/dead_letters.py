"""Dead letters: every rejected message, kept with its raw bytes and the reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row


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
            # The same bytes again on the same topic (a redelivery after the ingestor died
            # between commit and acknowledgement, or a logger resending): one row, counted.
            "insert into dead_letters as d (topic, device_id, reason, detail, payload)"
            " values (%s, %s, %s, %s, %s)"
            " on conflict (topic, payload_sha256) where replayed_at is null"
            " do update set arrivals = d.arrivals + 1",
            [(d.topic, d.device_id, d.reason, d.detail, d.payload) for d in letters],
        )


def count_by_reason(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("select reason, count(*) from dead_letters group by reason").fetchall()
    return {r[0]: r[1] for r in rows}


def pending(
    conn: psycopg.Connection,
    *,
    device_id: str | None = None,
    reason: str | None = None,
    limit: int = 10_000,
) -> list[tuple[int, str, bytes]]:
    """Dead letters not yet replayed, oldest first: (id, topic, payload)."""
    rows = conn.execute(
        """
        select id, topic, payload from dead_letters
        where replayed_at is null
          and (%(device)s::text is null or device_id = %(device)s)
          and (%(reason)s::text is null or reason = %(reason)s)
        order by id
        limit %(limit)s
        """,
        {"device": device_id, "reason": reason, "limit": limit},
    ).fetchall()
    return [(r[0], r[1], bytes(r[2])) for r in rows]


def mark_replayed(conn: psycopg.Connection, letter_id: int) -> None:
    conn.execute("update dead_letters set replayed_at = now() where id = %s", (letter_id,))


def update_outcome(conn: psycopg.Connection, letter_id: int, reason: str, detail: str) -> None:
    """A replay that still fails records why it fails now (the cause may have changed)."""
    conn.execute(
        "update dead_letters set reason = %s, detail = %s where id = %s",
        (reason, detail, letter_id),
    )


def list_for_regulators(
    conn: psycopg.Connection,
    *,
    regulators: Sequence[str],
    include_unassigned: bool,
    device_id: str | None,
    reason: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[dict[str, Any]]]:
    """Dead letters of devices in the offices' districts, newest first, with the total count.

    Letters naming no registered device belong to no district; only top-level offices see them.
    """
    params = {
        "regs": list(regulators),
        "unassigned": include_unassigned,
        "device": device_id,
        "reason": reason,
        "limit": limit,
        "offset": offset,
    }
    scope = """
        from dead_letters dl
        left join devices d on d.id = dl.device_id
        left join stations st on st.id = d.site_id
        left join outlets o on o.id = d.site_id
        left join enterprises e on e.id = o.enterprise_id
        left join districts di on di.id = coalesce(st.district_id, e.district_id)
        where (di.regulator_id = any(%(regs)s) or (di.id is null and %(unassigned)s))
          and (%(device)s::text is null or dl.device_id = %(device)s)
          and (%(reason)s::text is null or dl.reason = %(reason)s)
    """
    cur = conn.cursor(row_factory=dict_row)
    total = cur.execute("select count(*) as n " + scope, params).fetchone()
    rows = cur.execute(
        "select dl.id, dl.received_at, dl.topic, dl.device_id, dl.reason, dl.detail,"
        " dl.payload, dl.replayed_at, dl.arrivals "
        + scope
        + " order by dl.id desc limit %(limit)s offset %(offset)s",
        params,
    ).fetchall()
    return (int(total["n"]) if total else 0), rows
