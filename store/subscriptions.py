"""Citizens' subscriptions, the claiming of public events to fan out, and the subscribers'
outbox. Targets (addresses, URLs) and tokens are read only by the sender and by token look-ups;
no query here serves them to the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from domain.errors import NotFound, SunlightError, ValidationError
from domain.subscriptions import Scope, ScopeKind

Row = dict[str, Any]

EPISODE_EVENT_KINDS = {
    "opened": "episode_opened",
    "reopened": "episode_reopened",
    "resolved": "episode_resolved",
}


class Gone(SunlightError):
    """A token that existed but can no longer be used (an expired confirmation)."""

    status = 410
    code = "gone"


def check_scope_exists(conn: psycopg.Connection, scope: Scope) -> None:
    """``ValidationError`` when the enterprise or district the scope names is not registered."""
    cur = conn.cursor(row_factory=tuple_row)
    if scope.kind is ScopeKind.ENTERPRISE:
        found = cur.execute(
            "select 1 from enterprises where id = %s", (scope.enterprise_id,)
        ).fetchone()
        if found is None:
            raise ValidationError(f"no enterprise {scope.enterprise_id!r}", reason="unknown")
    elif scope.kind is ScopeKind.DISTRICT:
        found = cur.execute(
            "select 1 from districts where id = %s", (scope.district_id,)
        ).fetchone()
        if found is None:
            raise ValidationError(f"no district {scope.district_id!r}", reason="unknown")


def recent_for_target(conn: psycopg.Connection, kind: str, target: str, since: datetime) -> int:
    """How many subscriptions were made for this target since ``since`` (a flood guard)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "select count(*) from subscriptions where kind = %s and target = %s"
            " and created_at >= %s",
            (kind, target, since),
        )
        .fetchone()
    )
    return int(row[0]) if row else 0


def create(
    conn: psycopg.Connection,
    *,
    kind: str,
    target: str,
    secret: str | None,
    scope: Scope,
    lang: str,
    confirm_token: str,
    confirm_expires_at: datetime,
    unsubscribe_token: str,
) -> int:
    """A new, unconfirmed subscription and its opt-in message in the outbox; returns its id."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        insert into subscriptions (kind, target, secret, scope, enterprise_id, district_id, lon,
            lat, radius_m, lang, confirm_token, confirm_expires_at, unsubscribe_token)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id
        """,
            (
                kind,
                target,
                secret,
                scope.kind.value,
                scope.enterprise_id,
                scope.district_id,
                scope.lon,
                scope.lat,
                scope.radius_m,
                lang,
                confirm_token,
                confirm_expires_at,
                unsubscribe_token,
            ),
        )
        .fetchone()
    )
    assert row is not None
    subscription_id = int(row[0])
    queue(conn, subscription_id, "confirm", "confirm")
    return subscription_id


def confirm(conn: psycopg.Connection, token: str, now: datetime) -> Row:
    """Confirm the subscription holding ``token``; confirming twice is harmless."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        "select id, kind, scope, lang, confirmed_at, confirm_expires_at, unsubscribed_at"
        " from subscriptions where confirm_token = %s for update",
        (token,),
    ).fetchone()
    if row is None:
        raise NotFound("no subscription with this confirmation token")
    if row["unsubscribed_at"] is not None:
        raise Gone("this subscription was cancelled; subscribe again")
    if row["confirmed_at"] is None:
        if row["confirm_expires_at"] is not None and now > row["confirm_expires_at"]:
            raise Gone("this confirmation link has expired; subscribe again")
        row = cur.execute(
            "update subscriptions set confirmed_at = %s where id = %s"
            " returning id, kind, scope, lang, confirmed_at, unsubscribed_at",
            (now, row["id"]),
        ).fetchone()
        assert row is not None
    return row


def unsubscribe(conn: psycopg.Connection, token: str, now: datetime) -> Row:
    """End the subscription holding ``token`` and drop its unsent messages; idempotent."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        "update subscriptions set unsubscribed_at = coalesce(unsubscribed_at, %s)"
        " where unsubscribe_token = %s returning id, kind, scope, unsubscribed_at",
        (now, token),
    ).fetchone()
    if row is None:
        raise NotFound("no subscription with this unsubscribe token")
    cur.execute(
        "update subscriber_deliveries set status = 'cancelled', last_error = 'unsubscribed'"
        " where subscription_id = %s and status = 'pending'",
        (row["id"],),
    )
    return row


def end_gone(conn: psycopg.Connection, subscription_id: int, now: datetime) -> None:
    """End a subscription whose target said it no longer exists (a mailbox refused for good,
    a webhook answering 410 Gone), and drop its unsent messages."""
    conn.execute(
        "update subscriptions set unsubscribed_at = coalesce(unsubscribed_at, %s) where id = %s",
        (now, subscription_id),
    )
    conn.execute(
        "update subscriber_deliveries set status = 'cancelled', last_error = 'target gone'"
        " where subscription_id = %s and status = 'pending'",
        (subscription_id,),
    )


def find_by_unsubscribe_token(conn: psycopg.Connection, token: str) -> Row:
    """What the unsubscribe page may show: kind, scope and state, never the target."""
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select id, kind, scope, enterprise_id, district_id, radius_m, lang, confirmed_at,"
            " unsubscribed_at from subscriptions where unsubscribe_token = %s",
            (token,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound("no subscription with this unsubscribe token")
    return row


def active(conn: psycopg.Connection) -> list[Row]:
    """Every confirmed, live subscription with its scope, for matching events."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select id, scope, enterprise_id, district_id, lon, lat, radius_m, confirmed_at"
            " from subscriptions where confirmed_at is not null and unsubscribed_at is null"
            " order by id"
        )
        .fetchall()
    )


def queue(
    conn: psycopg.Connection,
    subscription_id: int,
    event_key: str,
    kind: str,
    *,
    episode_id: int | None = None,
    reply_id: int | None = None,
    due_at: datetime | None = None,
) -> bool:
    """One outbox row per subscription and event, due at ``due_at`` (default: now); a repeat
    is a no-op. True when queued."""
    cur = conn.execute(
        "insert into subscriber_deliveries (subscription_id, event_key, kind, episode_id,"
        " reply_id, next_attempt_at) values (%s, %s, %s, %s, %s, coalesce(%s, now()))"
        " on conflict do nothing",
        (subscription_id, event_key, kind, episode_id, reply_id, due_at),
    )
    return cur.rowcount == 1


def claim_episode_events(conn: psycopg.Connection, since: datetime, limit: int = 500) -> list[Row]:
    """Claim episode openings, recurrences and resolutions not yet fanned out (and no older
    than ``since``), with the place each happened. A claim is a row in ``subscription_fanout``
    committed with the deliveries it leads to: a concurrent claimer waits, then skips it."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        with candidates as (
            select ev.id, ev.at, ev.kind, ev.episode_id from episode_events ev
            where ev.kind in ('opened', 'reopened', 'resolved') and ev.at >= %(since)s
              and not exists (select 1 from subscription_fanout f
                              where f.source = 'episode_event' and f.source_id = ev.id)
            order by ev.id limit %(limit)s
        ), claimed as (
            insert into subscription_fanout (source, source_id, event_at)
            select 'episode_event', id, at from candidates
            on conflict do nothing returning source_id
        )
        select c.id as event_id, c.at, c.kind, c.episode_id,
               ent.id as enterprise_id, coalesce(ent.district_id, st.district_id) as district_id,
               coalesce(ent.lon, st.lon) as lon, coalesce(ent.lat, st.lat) as lat
        from candidates c join claimed k on k.source_id = c.id
        join episodes ep on ep.id = c.episode_id
        left join outlets o on o.id = ep.site_id
        left join enterprises ent on ent.id = o.enterprise_id
        left join stations st on st.id = ep.site_id
        order by c.id
        """,
            {"since": since, "limit": limit},
        )
        .fetchall()
    )


def claim_report_replies(conn: psycopg.Connection, since: datetime, limit: int = 500) -> list[Row]:
    """Claim offices' replies to citizen reports not yet fanned out, with the report's place
    and, when the reply or report points at an episode, that episode's enterprise."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        with candidates as (
            select r.id, r.created_at as at, r.report_id, r.episode_id
            from citizen_report_replies r
            where r.created_at >= %(since)s
              and not exists (select 1 from subscription_fanout f
                              where f.source = 'report_reply' and f.source_id = r.id)
            order by r.id limit %(limit)s
        ), claimed as (
            insert into subscription_fanout (source, source_id, event_at)
            select 'report_reply', id, at from candidates
            on conflict do nothing returning source_id
        )
        select c.id as reply_id, c.at, c.report_id, cr.district_id, cr.lon, cr.lat,
               ent.id as also_enterprise_id
        from candidates c join claimed k on k.source_id = c.id
        join citizen_reports cr on cr.id = c.report_id
        left join episodes ep on ep.id = coalesce(c.episode_id, cr.episode_id)
        left join outlets o on o.id = ep.site_id
        left join enterprises ent on ent.id = o.enterprise_id
        left join stations st on st.id = ep.site_id
        order by c.id
        """,
            {"since": since, "limit": limit},
        )
        .fetchall()
    )


def due(conn: psycopg.Connection, now: datetime, limit: int = 100) -> list[Row]:
    """Pending deliveries whose time has come, locked for this sender, with their
    subscription (target, secret, tokens, language)."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select d.id, d.subscription_id, d.kind, d.event_key, d.episode_id, d.reply_id,
               d.attempts, s.kind as channel, s.target, s.secret, s.scope, s.enterprise_id,
               s.district_id, s.lon, s.lat, s.radius_m, s.lang, s.confirm_token,
               s.unsubscribe_token, s.confirmed_at, s.unsubscribed_at
        from subscriber_deliveries d join subscriptions s on s.id = d.subscription_id
        where d.status = 'pending' and d.next_attempt_at <= %s
        order by d.id limit %s for update of d skip locked
        """,
            (now, limit),
        )
        .fetchall()
    )


def episode_summary(conn: psycopg.Connection, episode_id: int) -> Row:
    """The public facts of an episode a subscriber is told."""
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select ep.id, ep.kind, ep.site_id, ep.pollutant, ep.period, ep.status, ep.severity,
               ep.first_start, ep.last_end, ep.hours, ep.max_mean, ep.limit_value,
               ep.opened_at, ep.resolved_at, ep.resolution, ep.regulator_id,
               ent.id as enterprise_id, ent.name as enterprise_name,
               ent.name_zh as enterprise_name_zh,
               coalesce(ent.district_id, st.district_id) as district_id
        from episodes ep
        left join outlets o on o.id = ep.site_id
        left join enterprises ent on ent.id = o.enterprise_id
        left join stations st on st.id = ep.site_id
        where ep.id = %s
        """,
            (episode_id,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no episode {episode_id}")
    return row


def reply_summary(conn: psycopg.Connection, reply_id: int) -> Row:
    """The public facts of a reply to a report: never the reporter's contact."""
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select r.id, r.created_at, r.regulator_id, r.body, r.status as reply_status,
               r.episode_id, cr.tracking_code, cr.category, cr.received_at, cr.status,
               cr.district_id, cr.lon, cr.lat
        from citizen_report_replies r join citizen_reports cr on cr.id = r.report_id
        where r.id = %s
        """,
            (reply_id,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no reply {reply_id}")
    return row


def record_attempt(
    conn: psycopg.Connection,
    delivery_id: int,
    *,
    ok: bool,
    detail: str,
    next_attempt_at: datetime | None,
    cancel: bool = False,
) -> None:
    """Log one attempt; without a next attempt a failed delivery has failed for good."""
    conn.execute(
        "insert into subscriber_delivery_attempts (delivery_id, ok, detail) values (%s, %s, %s)",
        (delivery_id, ok, detail[:2000]),
    )
    if cancel:
        status = "cancelled"
    elif ok:
        status = "sent"
    else:
        status = "pending" if next_attempt_at is not None else "failed"
    conn.execute(
        """
        update subscriber_deliveries set attempts = attempts + 1, status = %s,
            sent_at = case when %s then now() else sent_at end,
            last_error = case when %s then null else %s end,
            next_attempt_at = coalesce(%s, next_attempt_at)
        where id = %s
        """,
        (status, ok, ok, detail[:2000], next_attempt_at, delivery_id),
    )


def prune_fanout(conn: psycopg.Connection, before: datetime) -> int:
    """Forget claims of events older than anything still scanned."""
    return conn.execute("delete from subscription_fanout where event_at < %s", (before,)).rowcount


def erase_spent_targets(conn: psycopg.Connection, now: datetime) -> int:
    """Forget the address or URL of every subscription that can no longer send: unsubscribed,
    or never confirmed before its link expired. The row stays (its links still answer
    'unsubscribed' or 'expired'); what it was sent to does not. Returns how many were erased."""
    erased = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        update subscriptions set target = ''
        where target <> '' and (unsubscribed_at is not null
              or (confirmed_at is null and confirm_expires_at < %s))
        returning id
        """,
            (now,),
        )
        .fetchall()
    )
    ids = [row[0] for row in erased]
    if ids:
        conn.execute(
            "update subscriber_deliveries set status = 'cancelled', last_error = 'target erased'"
            " where subscription_id = any(%s) and status = 'pending'",
            (ids,),
        )
    return len(ids)
