"""Episodes of exceedance or silence, their audit log, and the notification outbox."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from domain.errors import NotFound, SunlightError

Row = dict[str, Any]
LIVE = ("open", "notified", "acknowledged")


def live_episode(
    conn: psycopg.Connection, kind: str, site_id: str, pollutant: str, period: str
) -> Row | None:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select * from episodes where kind = %s and site_id = %s and pollutant = %s"
            " and period = %s and status <> 'resolved' for update",
            (kind, site_id, pollutant, period),
        )
        .fetchone()
    )


def last_resolved(
    conn: psycopg.Connection, kind: str, site_id: str, pollutant: str, period: str
) -> Row | None:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select * from episodes where kind = %s and site_id = %s and pollutant = %s"
            " and period = %s and status = 'resolved' order by resolved_at desc limit 1 for update",
            (kind, site_id, pollutant, period),
        )
        .fetchone()
    )


def add_event(
    conn: psycopg.Connection,
    episode_id: int,
    kind: str,
    *,
    actor: str = "system",
    regulator_id: str | None = None,
    note: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "insert into episode_events (episode_id, kind, actor, regulator_id, note, detail)"
        " values (%s, %s, %s, %s, %s, %s)",
        (episode_id, kind, actor, regulator_id, note, Jsonb(detail or {})),
    )


def open_episode(conn: psycopg.Connection, fields: Row) -> int:
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute(
        """
        insert into episodes (kind, site_id, pollutant, period, regulator_id, status, severity,
            first_start, last_end, hours, max_mean, limit_value)
        values (%(kind)s, %(site_id)s, %(pollutant)s, %(period)s, %(regulator_id)s, 'open',
            %(severity)s, %(first_start)s, %(last_end)s, %(hours)s, %(max_mean)s, %(limit_value)s)
        returning id
        """,
        fields,
    ).fetchone()
    assert row is not None
    add_event(conn, row[0], "opened", detail=_jsonable(fields))
    return int(row[0])


def extend_episode(
    conn: psycopg.Connection,
    episode: Row,
    *,
    end: datetime,
    mean: float | None,
    severity: str | None,
) -> None:
    conn.execute(
        """
        update episodes set last_end = greatest(last_end, %s), hours = hours + 1,
            max_mean = greatest(max_mean, %s), severity = coalesce(%s, severity)
        where id = %s
        """,
        (end, mean, severity, episode["id"]),
    )
    add_event(conn, episode["id"], "extended", detail={"until": end.isoformat(), "mean": mean})


def reopen_episode(
    conn: psycopg.Connection, episode: Row, *, end: datetime, mean: float | None
) -> None:
    conn.execute(
        """
        update episodes set status = 'open', resolved_at = null, acknowledged_at = null,
            reopened = reopened + 1, last_end = greatest(last_end, %s), hours = hours + 1,
            max_mean = greatest(max_mean, %s)
        where id = %s
        """,
        (end, mean, episode["id"]),
    )
    add_event(conn, episode["id"], "reopened", detail={"until": end.isoformat(), "mean": mean})


def channels_of(conn: psycopg.Connection, regulator_id: str) -> dict[str, Any]:
    """The office's configured channels: {"webhook": {...}, "email": [...], "mqtt": True}."""
    return channels_of_offices(conn, [regulator_id])[regulator_id]


def channels_of_offices(
    conn: psycopg.Connection, regulator_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``channels_of`` of several offices in one query, by office id."""
    wanted = sorted(set(regulator_ids))
    rows = conn.cursor(row_factory=tuple_row).execute(
        "select id, notify from regulators where id = any(%s)", (wanted,)
    )
    notify: dict[str, dict[str, Any]] = {regulator_id: n or {} for regulator_id, n in rows}
    return {regulator_id: _channels(notify.get(regulator_id, {})) for regulator_id in wanted}


def _channels(notify: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if notify.get("webhook_url"):
        out["webhook"] = {"url": notify["webhook_url"], "secret": notify.get("webhook_secret")}
    if notify.get("email"):
        out["email"] = list(notify["email"])
    if notify.get("mqtt", True):
        out["mqtt"] = True
    return out


def queue_notifications(
    conn: psycopg.Connection, episode_id: int, regulator_id: str, kind: str, seq: int = 0
) -> int:
    """One outbox row per channel of the office; a repeat of the same (kind, seq) is a no-op."""
    count = 0
    for channel in channels_of(conn, regulator_id):
        cur = conn.execute(
            "insert into notifications (episode_id, regulator_id, kind, seq, channel)"
            " values (%s, %s, %s, %s, %s) on conflict do nothing",
            (episode_id, regulator_id, kind, seq, channel),
        )
        count += cur.rowcount
    if count:
        add_event(
            conn,
            episode_id,
            "notification_queued",
            regulator_id=regulator_id,
            detail={"kind": kind, "seq": seq},
        )
    return count


# Many episodes at once: what the hourly judge needs for thousands of outlets in one hour. Each
# is one statement whatever the number of episodes, and keeps the order it is given (rows get
# their ids in that order), so a batch leaves the same rows as the one-by-one functions above
# called in the same order.

EpisodeKey = tuple[str, str, str]  # (site, pollutant, period)


def _keys(keys: Sequence[EpisodeKey]) -> tuple[list[str], list[str], list[str]]:
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


def live_episodes(
    conn: psycopg.Connection, kind: str, keys: Sequence[EpisodeKey]
) -> dict[EpisodeKey, Row]:
    """``live_episode`` of many keys, locked in id order (as ``awaiting_acknowledgement``
    locks them, so the two never wait on each other in a cycle)."""
    if not keys:
        return {}
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select * from episodes
        where kind = %s and status <> 'resolved' and (site_id, pollutant, period) in
            (select * from unnest(%s::text[], %s::text[], %s::text[]))
        order by id for update
        """,
            (kind, *_keys(keys)),
        )
        .fetchall()
    )
    return {(r["site_id"], r["pollutant"], r["period"]): r for r in rows}


def last_resolved_episodes(
    conn: psycopg.Connection, kind: str, keys: Sequence[EpisodeKey]
) -> dict[EpisodeKey, Row]:
    """``last_resolved`` of many keys, locked in id order."""
    if not keys:
        return {}
    rows = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select * from episodes
        where status = 'resolved' and id in (
            select distinct on (site_id, pollutant, period) id from episodes
            where kind = %s and status = 'resolved' and (site_id, pollutant, period) in
                (select * from unnest(%s::text[], %s::text[], %s::text[]))
            order by site_id, pollutant, period, resolved_at desc)
        order by id for update
        """,
            (kind, *_keys(keys)),
        )
        .fetchall()
    )
    return {(r["site_id"], r["pollutant"], r["period"]): r for r in rows}


def insert_episodes(conn: psycopg.Connection, episodes: Sequence[Row]) -> list[int]:
    """Open episodes (the fields of ``open_episode``), ids in the order given; their 'opened'
    events are the caller's (``opened_detail``), so all events of a batch keep one order."""
    if not episodes:
        return []
    columns = (
        ("kind", "text"),
        ("site_id", "text"),
        ("pollutant", "text"),
        ("period", "text"),
        ("regulator_id", "text"),
        ("severity", "text"),
        ("first_start", "timestamptz"),
        ("last_end", "timestamptz"),
        ("hours", "integer"),
        ("max_mean", "float8"),
        ("limit_value", "float8"),
    )
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        insert into episodes (kind, site_id, pollutant, period, regulator_id, status, severity,
            first_start, last_end, hours, max_mean, limit_value)
        select kind, site_id, pollutant, period, regulator_id, 'open', severity, first_start,
               last_end, hours, max_mean, limit_value
        from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::timestamptz[], %s::timestamptz[], %s::integer[], %s::float8[],
                    %s::float8[])
            with ordinality as v(kind, site_id, pollutant, period, regulator_id, severity,
                                 first_start, last_end, hours, max_mean, limit_value, n)
        order by n
        returning id, kind, site_id, pollutant, period
        """,
            [[e[name] for e in episodes] for name, _ in columns],
        )
        .fetchall()
    )
    # A new episode is live, and a live episode is one per key (episodes_one_live).
    ids = {(kind, site, pol, period): int(i) for i, kind, site, pol, period in rows}
    return [ids[(e["kind"], e["site_id"], e["pollutant"], e["period"])] for e in episodes]


def opened_detail(fields: Row) -> dict[str, Any]:
    """The detail of an episode's 'opened' event: the fields it was opened with."""
    return _jsonable(fields)


def extend_episodes(
    conn: psycopg.Connection,
    changes: Sequence[tuple[int, datetime, float | None, str | None]],
) -> None:
    """``extend_episode`` of many episodes: (id, end, mean, severity); events are the caller's."""
    if not changes:
        return
    conn.execute(
        """
        update episodes e set last_end = greatest(e.last_end, v.last_end), hours = e.hours + 1,
            max_mean = greatest(e.max_mean, v.mean), severity = coalesce(v.severity, e.severity)
        from unnest(%s::bigint[], %s::timestamptz[], %s::float8[], %s::text[])
            as v(id, last_end, mean, severity)
        where e.id = v.id
        """,
        [list(column) for column in zip(*changes, strict=True)],
    )


def reopen_episodes(
    conn: psycopg.Connection, changes: Sequence[tuple[int, datetime, float | None]]
) -> None:
    """``reopen_episode`` of many episodes: (id, end, mean); events are the caller's."""
    if not changes:
        return
    conn.execute(
        """
        update episodes e set status = 'open', resolved_at = null, acknowledged_at = null,
            reopened = e.reopened + 1, last_end = greatest(e.last_end, v.last_end),
            hours = e.hours + 1, max_mean = greatest(e.max_mean, v.mean)
        from unnest(%s::bigint[], %s::timestamptz[], %s::float8[]) as v(id, last_end, mean)
        where e.id = v.id
        """,
        [list(column) for column in zip(*changes, strict=True)],
    )


def insert_notifications(
    conn: psycopg.Connection, wanted: Sequence[tuple[int, str, str, int]]
) -> list[int]:
    """The outbox rows of ``queue_notifications`` for many (episode id, office, kind, seq), in
    the order given; returns how many rows each one added (0 for a repeat). The
    'notification_queued' events are the caller's."""
    if not wanted:
        return []
    channels = channels_of_offices(conn, [office for _, office, _, _ in wanted])
    rows = [
        (episode_id, office, kind, seq, channel)
        for episode_id, office, kind, seq in wanted
        for channel in channels[office]
    ]
    added: Counter[tuple[int, str, str, int]] = Counter()
    if rows:
        cur = conn.cursor(row_factory=tuple_row).execute(
            """
            insert into notifications (episode_id, regulator_id, kind, seq, channel)
            select episode_id, regulator_id, kind, seq, channel
            from unnest(%s::bigint[], %s::text[], %s::text[], %s::integer[], %s::text[])
                with ordinality as v(episode_id, regulator_id, kind, seq, channel, n)
            order by n
            on conflict do nothing
            returning episode_id, regulator_id, kind, seq
            """,
            [list(column) for column in zip(*rows, strict=True)],
        )
        added.update((int(e), office, kind, int(seq)) for e, office, kind, seq in cur)
    return [added[w] for w in wanted]


def add_events(
    conn: psycopg.Connection,
    events: Sequence[tuple[int, str, str | None, dict[str, Any]]],
) -> None:
    """``add_event`` of many system events (episode id, kind, office, detail), in that order.
    The details travel as one JSON document: one encoding instead of one per event."""
    if not events:
        return
    conn.execute(
        """
        insert into episode_events (episode_id, kind, actor, regulator_id, note, detail)
        select v.episode_id, v.kind, 'system', v.regulator_id, null, d.detail
        from unnest(%s::bigint[], %s::text[], %s::text[])
            with ordinality as v(episode_id, kind, regulator_id, n)
        join jsonb_array_elements(%s::jsonb) with ordinality as d(detail, n) using (n)
        order by n
        """,
        (
            [e[0] for e in events],
            [e[1] for e in events],
            [e[2] for e in events],
            Jsonb([e[3] for e in events]),
        ),
    )


def due_notifications(conn: psycopg.Connection, now: datetime, limit: int = 100) -> list[Row]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select n.*, e.kind as episode_kind, e.site_id, e.pollutant, e.period, e.status,
               e.severity, e.first_start, e.last_end, e.hours, e.max_mean, e.limit_value,
               e.regulator_id as office_in_charge
        from notifications n join episodes e on e.id = n.episode_id
        where n.status = 'pending' and n.next_attempt_at <= %s
        order by n.id limit %s for update of n skip locked
        """,
            (now, limit),
        )
        .fetchall()
    )


def record_attempt(
    conn: psycopg.Connection,
    notification: Row,
    *,
    ok: bool,
    detail: str,
    next_attempt_at: datetime | None,
) -> None:
    """Log one delivery attempt of an episode's notification, on the outbox and in the
    episode's audit log."""
    log_attempt(conn, notification, ok=ok, detail=detail, next_attempt_at=next_attempt_at)
    if ok and notification["kind"] == "opened":
        conn.execute(
            "update episodes set status = 'notified', notified_at = coalesce(notified_at, now())"
            " where id = %s and status = 'open'",
            (notification["episode_id"],),
        )
    add_event(
        conn,
        notification["episode_id"],
        "notified" if ok else "notification_failed",
        regulator_id=notification["regulator_id"],
        detail={
            "channel": notification["channel"],
            "kind": notification["kind"],
            "detail": detail[:500],
        },
    )


def log_attempt(
    conn: psycopg.Connection,
    notification: Row,
    *,
    ok: bool,
    detail: str,
    next_attempt_at: datetime | None,
) -> None:
    """Log one delivery attempt of any outbox notification (an episode's or a report's); one
    without a next attempt has failed for good."""
    conn.execute(
        "insert into notification_attempts (notification_id, ok, detail) values (%s, %s, %s)",
        (notification["id"], ok, detail[:2000]),
    )
    status = "sent" if ok else ("pending" if next_attempt_at is not None else "failed")
    conn.execute(
        """
        update notifications set attempts = attempts + 1, status = %s,
            sent_at = case when %s then now() else sent_at end,
            last_error = case when %s then null else %s end,
            next_attempt_at = coalesce(%s, next_attempt_at)
        where id = %s
        """,
        (status, ok, ok, detail[:2000], next_attempt_at, notification["id"]),
    )


def awaiting_acknowledgement(conn: psycopg.Connection) -> list[Row]:
    """Live episodes nobody acknowledged, with the office's deadline and parent."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select e.*, r.ack_deadline_minutes, r.parent_id
        from episodes e join regulators r on r.id = e.regulator_id
        where e.status in ('open', 'notified')
        order by e.id for update of e
        """
        )
        .fetchall()
    )


def mark_reminded(conn: psycopg.Connection, episode_id: int, now: datetime) -> int:
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "update episodes set reminders = reminders + 1, last_reminded_at = %s where id = %s"
            " returning reminders",
            (now, episode_id),
        )
        .fetchone()
    )
    assert row is not None
    return int(row[0])


def mark_escalated(conn: psycopg.Connection, episode_id: int, to: str, now: datetime) -> None:
    conn.execute(
        "update episodes set escalated_to = %s, escalated_at = %s where id = %s",
        (to, now, episode_id),
    )
    add_event(conn, episode_id, "escalated", regulator_id=to, detail={"to": to})


def _jsonable(fields: Row) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()}


_EPISODE_COLUMNS = """
    e.id, e.kind, e.site_id, e.pollutant, e.period, e.regulator_id, e.status, e.severity,
    e.first_start, e.last_end, e.hours, e.max_mean, e.limit_value, e.opened_at, e.notified_at,
    e.acknowledged_at, e.resolved_at, e.escalated_to, e.escalated_at, e.reminders, e.reopened,
    e.resolution,
    extract(epoch from e.acknowledged_at - e.opened_at)::float8 as seconds_to_acknowledge,
    extract(epoch from e.resolved_at - e.opened_at)::float8 as seconds_to_resolve
"""


def list_episodes(
    conn: psycopg.Connection,
    *,
    regulators: Sequence[str] | None = None,
    status: str | None = None,
    kind: str | None = None,
    site_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Row]]:
    """Episodes newest first with the total; ``regulators`` scopes to offices in charge or
    escalated to."""
    params = {
        "regs": list(regulators) if regulators is not None else None,
        "status": status,
        "kind": kind,
        "site": site_id,
        "limit": limit,
        "offset": offset,
    }
    where = """
        where (%(regs)s::text[] is null or e.regulator_id = any(%(regs)s)
               or e.escalated_to = any(%(regs)s))
          and (%(status)s::text is null or e.status = %(status)s)
          and (%(kind)s::text is null or e.kind = %(kind)s)
          and (%(site)s::text is null or e.site_id = %(site)s)
    """
    cur = conn.cursor(row_factory=dict_row)
    total = cur.execute("select count(*) as n from episodes e " + where, params).fetchone()  # noqa: S608
    rows = cur.execute(
        "select "  # noqa: S608 - constant text; values are parameters
        + _EPISODE_COLUMNS
        + " from episodes e "
        + where
        + " order by e.id desc limit %(limit)s offset %(offset)s",
        params,
    ).fetchall()
    return (int(total["n"]) if total else 0), rows


def get_episode(conn: psycopg.Connection, episode_id: int) -> Row:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select " + _EPISODE_COLUMNS + " from episodes e where e.id = %s",  # noqa: S608
            (episode_id,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no episode {episode_id}")
    return row


def public_timeline(conn: psycopg.Connection, episode_id: int) -> list[Row]:
    """The episode's events as the public sees them: when, what, which office, its notes —
    never who at the office."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select at, kind, regulator_id, note from episode_events"
            " where episode_id = %s order by id",
            (episode_id,),
        )
        .fetchall()
    )


class Conflict(SunlightError):
    status = 409
    code = "conflict"


class Forbidden(SunlightError):
    status = 403
    code = "forbidden"


def _episode_for(conn: psycopg.Connection, episode_id: int, jurisdiction: Sequence[str]) -> Row:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute("select * from episodes where id = %s for update", (episode_id,))
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no episode {episode_id}")
    if row["regulator_id"] not in jurisdiction and row["escalated_to"] not in jurisdiction:
        raise Forbidden(f"episode {episode_id} is outside your jurisdiction")
    return row


def acknowledge(
    conn: psycopg.Connection,
    episode_id: int,
    *,
    regulator_id: str,
    jurisdiction: Sequence[str],
    note: str | None,
    token_id: int,
) -> Row:
    row = _episode_for(conn, episode_id, jurisdiction)
    if row["status"] == "resolved":
        raise Conflict(f"episode {episode_id} is resolved")
    if row["status"] != "acknowledged":
        conn.execute(
            "update episodes set status = 'acknowledged', acknowledged_at = now() where id = %s",
            (episode_id,),
        )
        add_event(
            conn,
            episode_id,
            "acknowledged",
            actor="regulator",
            regulator_id=regulator_id,
            note=note,
            detail={"token": token_id},
        )
    return get_episode(conn, episode_id)


def add_note(
    conn: psycopg.Connection,
    episode_id: int,
    *,
    regulator_id: str,
    jurisdiction: Sequence[str],
    note: str,
    token_id: int,
) -> Row:
    _episode_for(conn, episode_id, jurisdiction)
    add_event(
        conn,
        episode_id,
        "note",
        actor="regulator",
        regulator_id=regulator_id,
        note=note,
        detail={"token": token_id},
    )
    return get_episode(conn, episode_id)


def resolve(
    conn: psycopg.Connection,
    episode_id: int,
    *,
    regulator_id: str,
    jurisdiction: Sequence[str],
    action: str,
    token_id: int,
) -> Row:
    row = _episode_for(conn, episode_id, jurisdiction)
    if row["status"] == "resolved":
        raise Conflict(f"episode {episode_id} is already resolved")
    conn.execute(
        "update episodes set status = 'resolved', resolved_at = now(), resolution = %s,"
        " acknowledged_at = coalesce(acknowledged_at, now()) where id = %s",
        (action, episode_id),
    )
    add_event(
        conn,
        episode_id,
        "resolved",
        actor="regulator",
        regulator_id=regulator_id,
        note=action,
        detail={"token": token_id},
    )
    return get_episode(conn, episode_id)


def create_silence(
    conn: psycopg.Connection,
    *,
    site_id: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    regulator_id: str,
    jurisdiction: Sequence[str],
) -> Row:
    """A planned shutdown of an outlet, registered in advance: no episodes while it lasts."""
    owner = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        select di.regulator_id from outlets o join enterprises e on e.id = o.enterprise_id
        join districts di on di.id = e.district_id where o.id = %s
        """,
            (site_id,),
        )
        .fetchone()
    )
    if owner is None:
        raise NotFound(f"no outlet {site_id!r}")
    if owner[0] not in jurisdiction:
        raise Forbidden(f"outlet {site_id} is outside your jurisdiction")
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "insert into silences (site_id, starts_at, ends_at, reason, created_by)"
            " values (%s, %s, %s, %s, %s) returning *",
            (site_id, starts_at, ends_at, reason, regulator_id),
        )
        .fetchone()
    )
    assert row is not None
    return row


def list_judgements(
    conn: psycopg.Connection,
    *,
    site_id: str,
    pollutant: str | None,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[Row]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select site_id, pollutant, period, start, mean, measured_mean, o2_mean, o2_reference,
               valid_count, total_count, limit_value, unit, standard, verdict, judged_at
        from judgements
        where site_id = %s and (%s::text is null or pollutant = %s) and start >= %s and start < %s
        order by start, pollutant, period limit %s
        """,
            (site_id, pollutant, pollutant, start, end, limit),
        )
        .fetchall()
    )
