"""Citizen reports: routing to an office, proof-of-work challenges, replies on the record, the
evidence around a report, and the report rows of the notification outbox.

Contacts are read by exactly one function, ``list_for_offices``, which only the authenticated
regulator API calls; every public query names its columns and none of them is the contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from domain.errors import NotFound, SunlightError, ValidationError
from domain.geo import EARTH_RADIUS_M
from domain.reports import Area, Photo, Placement, Status, due_at, new_tracking_code, place_point
from store import sites
from store.episodes import Forbidden, add_event, channels_of

Row = dict[str, Any]


class NoOffice(SunlightError):
    """No regulator is registered, so a report would have nobody to go to."""

    status = 503
    code = "no_regulator"


class ChallengeInvalid(ValidationError):
    code = "invalid_challenge"


class ChallengeUsed(SunlightError):
    status = 409
    code = "challenge_used"


# --- routing ------------------------------------------------------------------------------


def areas(conn: psycopg.Connection) -> list[Area]:
    return [Area(d["id"], d["regulator"], d["boundary"]) for d in sites.list_districts(conn)]


def _root_of(conn: psycopg.Connection, regulator_id: str | None) -> str | None:
    """The top of ``regulator_id``'s chain of parents; the first top office when None."""
    cur = conn.cursor(row_factory=tuple_row)
    if regulator_id is None:
        row = cur.execute(
            "select id from regulators where parent_id is null order by id limit 1"
        ).fetchone()
        return row[0] if row else None
    row = cur.execute(
        """
        with recursive chain(id, parent_id, depth) as (
            select id, parent_id, 0 from regulators where id = %s
            union all
            select r.id, r.parent_id, c.depth + 1 from regulators r
            join chain c on r.id = c.parent_id where c.depth < 100
        )
        select id from chain order by depth desc limit 1
        """,
        (regulator_id,),
    ).fetchone()
    return row[0] if row else None


def route(conn: psycopg.Connection, lon: float, lat: float) -> tuple[str | None, str]:
    """(district, office) for a point: the district's office, or outside every district the top
    office above the nearest district (with no districts at all, the first top office)."""
    placement: Placement = place_point(lon, lat, areas(conn))
    if placement.regulator_id is not None:
        return placement.district_id, placement.regulator_id
    office = _root_of(conn, placement.nearest_regulator_id)
    if office is None:
        raise NoOffice("no regulator is registered; reports cannot be routed")
    return None, office


# --- proof-of-work challenges -------------------------------------------------------------


def issue_challenge(
    conn: psycopg.Connection, nonce: str, difficulty: int, ttl: timedelta, now: datetime
) -> Row:
    # Spent and expired challenges are only kept a day, for diagnosis.
    conn.execute(
        "delete from citizen_report_challenges where expires_at < %s", (now - timedelta(days=1),)
    )
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "insert into citizen_report_challenges (nonce, difficulty, issued_at, expires_at)"
            " values (%s, %s, %s, %s) returning nonce, difficulty, expires_at",
            (nonce, difficulty, now, now + ttl),
        )
        .fetchone()
    )
    assert row is not None
    return row


def take_challenge(conn: psycopg.Connection, nonce: str, now: datetime) -> int:
    """The difficulty of a live, unspent challenge, locked until the transaction ends."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "select difficulty, expires_at, used_at from citizen_report_challenges"
            " where nonce = %s for update",
            (nonce,),
        )
        .fetchone()
    )
    if row is None:
        raise ChallengeInvalid("challenge: unknown; fetch one from POST /api/v1/reports/challenge")
    difficulty, expires_at, used_at = row
    if used_at is not None:
        raise ChallengeUsed("challenge: already used; each report needs a fresh challenge")
    if expires_at <= now:
        raise ChallengeInvalid("challenge: expired; fetch a fresh one")
    return int(difficulty)


def spend_challenge(conn: psycopg.Connection, nonce: str, now: datetime) -> None:
    conn.execute("update citizen_report_challenges set used_at = %s where nonce = %s", (now, nonce))


# --- reports ------------------------------------------------------------------------------


def create_report(
    conn: psycopg.Connection,
    *,
    lon: float,
    lat: float,
    category: str,
    description: str,
    observed_at: datetime | None,
    contact: str | None,
    photo: Photo | None,
    received_at: datetime,
) -> Row:
    """Store a report routed to its office, its private contact and photo apart, and queue the
    office's 'new report' notification. Returns the public row."""
    district_id, office = route(conn, lon, lat)
    deadline = (
        conn.cursor(row_factory=tuple_row)
        .execute("select ack_deadline_minutes from regulators where id = %s", (office,))
        .fetchone()
    )
    assert deadline is not None
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        insert into citizen_reports (tracking_code, received_at, observed_at, lon, lat, category,
            description, district_id, regulator_id, due_at, has_photo)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        returning id, tracking_code
        """,
            (
                new_tracking_code(),
                received_at,
                observed_at,
                lon,
                lat,
                category,
                description,
                district_id,
                office,
                due_at(received_at, int(deadline[0])),
                photo is not None,
            ),
        )
        .fetchone()
    )
    assert row is not None
    report_id, code = int(row[0]), str(row[1])
    if contact:
        conn.execute(
            "insert into citizen_report_contacts (report_id, contact) values (%s, %s)",
            (report_id, contact),
        )
    if photo is not None:
        conn.execute(
            "insert into citizen_report_photos (report_id, content_type, data, width, height)"
            " values (%s, %s, %s, %s, %s)",
            (report_id, photo.content_type, photo.data, photo.width, photo.height),
        )
    queue_notifications(conn, report_id, office, "opened")
    return get_report(conn, code)


# Every column the public may see: the exact point is here for the evidence and is rounded by
# the API before it is shown; the contact is not.
_PUBLIC = """
    r.id, r.tracking_code, r.received_at, r.observed_at, r.lon, r.lat, r.category,
    r.description, r.district_id, r.regulator_id, g.name as regulator_name,
    g.name_zh as regulator_name_zh, g.ack_deadline_minutes, r.status, r.episode_id, r.due_at,
    r.first_reply_at, r.closed_at, r.escalated_to, r.escalated_at, r.has_photo,
    extract(epoch from r.first_reply_at - r.received_at)::float8 as seconds_to_first_reply,
    case when r.first_reply_at is null then null else r.first_reply_at <= r.due_at end
        as answered_within_deadline
"""


def get_report(conn: psycopg.Connection, tracking_code: str) -> Row:
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select "  # noqa: S608 - constant text; values are parameters
            + _PUBLIC
            + " from citizen_reports r join regulators g on g.id = r.regulator_id"
            " where r.tracking_code = %s",
            (tracking_code,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound("no report with this tracking code")
    return row


def replies(conn: psycopg.Connection, report_id: int) -> list[Row]:
    """Every reply, oldest first, naming the office (never the person at it)."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select p.id, p.created_at, p.regulator_id, g.name as regulator_name,
               g.name_zh as regulator_name_zh, p.body, p.status, p.episode_id
        from citizen_report_replies p join regulators g on g.id = p.regulator_id
        where p.report_id = %s order by p.id
        """,
            (report_id,),
        )
        .fetchall()
    )


def photo(conn: psycopg.Connection, tracking_code: str) -> tuple[str, bytes]:
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "select p.content_type, p.data from citizen_report_photos p"
            " join citizen_reports r on r.id = p.report_id where r.tracking_code = %s",
            (tracking_code,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound("this report has no photo")
    return str(row[0]), bytes(row[1])


def list_reports(
    conn: psycopg.Connection,
    *,
    regulators: Sequence[str] | None = None,
    status: str | None = None,
    category: str | None = None,
    district: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    centre: tuple[float, float] | None = None,
    radius_m: float | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Row]]:
    """Reports newest first with the total; ``regulators`` scopes to the offices in charge or
    escalated to. ``centre`` is (lat, lon) as in the site lists."""
    west, south, east, north = bbox if bbox is not None else (None, None, None, None)
    lat0, lon0 = centre if centre is not None else (None, None)
    params = {
        "regs": list(regulators) if regulators is not None else None,
        "status": status,
        "category": category,
        "district": district,
        "west": west,
        "south": south,
        "east": east,
        "north": north,
        "lat0": lat0,
        "lon0": lon0,
        "radius": radius_m,
        "earth": EARTH_RADIUS_M,
        "start": start,
        "end": end,
        "limit": limit,
        "offset": offset,
    }
    where = """
        where (%(regs)s::text[] is null or r.regulator_id = any(%(regs)s)
               or r.escalated_to = any(%(regs)s))
          and (%(status)s::text is null or r.status = %(status)s)
          and (%(category)s::text is null or r.category = %(category)s)
          and (%(district)s::text is null or r.district_id = %(district)s)
          and (%(west)s::float8 is null or (r.lon between %(west)s and %(east)s
               and r.lat between %(south)s and %(north)s))
          and (%(lat0)s::float8 is null or 2 * %(earth)s * asin(least(1.0, sqrt(
               sin(radians(r.lat - %(lat0)s) / 2) ^ 2 + cos(radians(%(lat0)s))
               * cos(radians(r.lat)) * sin(radians(r.lon - %(lon0)s) / 2) ^ 2)))
               <= %(radius)s)
          and (%(start)s::timestamptz is null or r.received_at >= %(start)s)
          and (%(end)s::timestamptz is null or r.received_at < %(end)s)
    """
    cur = conn.cursor(row_factory=dict_row)
    total = cur.execute(
        "select count(*) as n from citizen_reports r " + where,  # noqa: S608 - constant text
        params,
    ).fetchone()
    rows = cur.execute(
        "select "  # noqa: S608 - constant text; values are parameters
        + _PUBLIC
        + " from citizen_reports r join regulators g on g.id = r.regulator_id "
        + where
        + " order by r.id desc limit %(limit)s offset %(offset)s",
        params,
    ).fetchall()
    return (int(total["n"]) if total else 0), rows


def list_for_offices(
    conn: psycopg.Connection,
    jurisdiction: Sequence[str],
    *,
    status: str | None,
    unanswered: bool,
    limit: int,
    offset: int,
) -> tuple[int, list[Row]]:
    """The office's view: its reports (or escalated to it) with the reporter's contact, for
    following up. Only the authenticated regulator API calls this."""
    params = {
        "regs": list(jurisdiction),
        "status": status,
        "unanswered": unanswered,
        "limit": limit,
        "offset": offset,
    }
    where = """
        where (r.regulator_id = any(%(regs)s) or r.escalated_to = any(%(regs)s))
          and (%(status)s::text is null or r.status = %(status)s)
          and (not %(unanswered)s or r.first_reply_at is null)
    """
    cur = conn.cursor(row_factory=dict_row)
    total = cur.execute(
        "select count(*) as n from citizen_reports r " + where,  # noqa: S608 - constant text
        params,
    ).fetchone()
    rows = cur.execute(
        "select "  # noqa: S608 - constant text; values are parameters
        + _PUBLIC
        + ", c.contact from citizen_reports r join regulators g on g.id = r.regulator_id"
        " left join citizen_report_contacts c on c.report_id = r.id "
        + where
        + " order by r.first_reply_at is not null, r.due_at, r.id limit %(limit)s"
        " offset %(offset)s",
        params,
    ).fetchall()
    return (int(total["n"]) if total else 0), rows


def reply(
    conn: psycopg.Connection,
    report_id: int,
    *,
    regulator_id: str,
    jurisdiction: Sequence[str],
    body: str,
    status: Status | None,
    episode_id: int | None,
    at: datetime,
) -> Row:
    """Append a public reply; with a status, it also sets the report's status (a later reply
    may change it again: every change stays on the record). The first reply stops the clock."""
    report = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select id, tracking_code, regulator_id, escalated_to from citizen_reports"
            " where id = %s for update",
            (report_id,),
        )
        .fetchone()
    )
    if report is None:
        raise NotFound(f"no report {report_id}")
    if report["regulator_id"] not in jurisdiction and report["escalated_to"] not in jurisdiction:
        raise Forbidden(f"report {report_id} is outside your jurisdiction")
    if status is Status.OPEN:
        raise ValidationError("status: a reply marks a report confirmed, unfounded or merged")
    if (status is Status.MERGED) != (episode_id is not None):
        raise ValidationError("episode_id is given exactly when the status is 'merged'")
    if episode_id is not None:
        episode = (
            conn.cursor(row_factory=tuple_row)
            .execute("select regulator_id, escalated_to from episodes where id = %s", (episode_id,))
            .fetchone()
        )
        if episode is None:
            raise NotFound(f"no episode {episode_id}")
        if episode[0] not in jurisdiction and episode[1] not in jurisdiction:
            raise Forbidden(f"episode {episode_id} is outside your jurisdiction")
    if episode_id is not None:
        # The episode's own record names the reports merged into it.
        add_event(
            conn,
            episode_id,
            "citizen_report_merged",
            actor="regulator",
            regulator_id=regulator_id,
            detail={"report_id": report_id, "tracking_code": report["tracking_code"]},
        )
    conn.execute(
        "insert into citizen_report_replies (report_id, created_at, regulator_id, body, status,"
        " episode_id) values (%s, %s, %s, %s, %s, %s)",
        (report_id, at, regulator_id, body, status.value if status else None, episode_id),
    )
    conn.execute(
        """
        update citizen_reports set first_reply_at = coalesce(first_reply_at, %(at)s),
            status = coalesce(%(status)s, status),
            episode_id = case when %(status)s::text is null then episode_id else %(episode)s end,
            closed_at = case when %(status)s::text is null then closed_at else %(at)s end
        where id = %(id)s
        """,
        {
            "at": at,
            "status": status.value if status else None,
            "episode": episode_id,
            "id": report_id,
        },
    )
    return get_report(conn, report["tracking_code"])


# --- reminders and escalation -------------------------------------------------------------


def awaiting_reply(conn: psycopg.Connection) -> list[Row]:
    """Reports nobody has answered, with the office's parent, locked for this run."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select r.id, r.regulator_id, r.due_at, r.reminded_at, r.escalated_at, g.parent_id
        from citizen_reports r join regulators g on g.id = r.regulator_id
        where r.first_reply_at is null and (r.reminded_at is null or r.escalated_at is null)
        order by r.id for update of r skip locked
        """
        )
        .fetchall()
    )


def mark_reminded(conn: psycopg.Connection, report_id: int, at: datetime) -> None:
    conn.execute("update citizen_reports set reminded_at = %s where id = %s", (at, report_id))


def mark_escalated(conn: psycopg.Connection, report_id: int, to: str | None, at: datetime) -> None:
    conn.execute(
        "update citizen_reports set escalated_at = %s, escalated_to = %s where id = %s",
        (at, to, report_id),
    )


# --- the outbox ---------------------------------------------------------------------------


def queue_notifications(
    conn: psycopg.Connection, report_id: int, regulator_id: str, kind: str, seq: int = 0
) -> int:
    """One outbox row per channel of the office; a repeat of the same kind is a no-op."""
    count = 0
    for channel in channels_of(conn, regulator_id):
        cur = conn.execute(
            "insert into notifications (report_id, regulator_id, kind, seq, channel)"
            " values (%s, %s, %s, %s, %s) on conflict do nothing",
            (report_id, regulator_id, kind, seq, channel),
        )
        count += cur.rowcount
    return count


def due_notifications(conn: psycopg.Connection, now: datetime, limit: int = 100) -> list[Row]:
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select n.*, r.tracking_code, r.received_at, r.category, r.description, r.lon, r.lat,
               r.district_id, r.status as report_status, r.due_at,
               r.regulator_id as office_in_charge
        from notifications n join citizen_reports r on r.id = n.report_id
        where n.status = 'pending' and n.next_attempt_at <= %s
        order by n.id limit %s for update of n skip locked
        """,
            (now, limit),
        )
        .fetchall()
    )


# --- evidence -----------------------------------------------------------------------------


def station_hours(
    conn: psycopg.Connection, station_ids: Sequence[str], start: datetime, end: datetime
) -> list[Row]:
    """Hourly means of the stations in [start, end), minute means preferred over samples."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select distinct on (d.site_id, h.pollutant, h.hour)
               d.site_id as station, h.pollutant, h.hour, h.mean, h.unit, h.n_valid
        from readings_hourly h join devices d on d.key = h.device_key
        where d.site_id = any(%s) and h.hour >= %s and h.hour < %s
          and h.period in ('minute', 'sample')
        order by d.site_id, h.pollutant, h.hour, (h.period = 'minute') desc
        """,
            (list(station_ids), start, end),
        )
        .fetchall()
    )


def station_positions(conn: psycopg.Connection) -> list[Row]:
    """Every station's place, for finding the nearest (names for showing them)."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute("select id, name, name_zh, lon, lat from stations order by id")
        .fetchall()
    )


def enterprises_in_box(
    conn: psycopg.Connection, west: float, south: float, east: float, north: float
) -> list[Row]:
    """Enterprises inside a lon/lat box: the cheap first cut before exact distances."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "select id, name, name_zh, industry, lon, lat from enterprises"
            " where lon between %s and %s and lat between %s and %s order by id",
            (west, east, south, north),
        )
        .fetchall()
    )
