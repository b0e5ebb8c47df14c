"""How each regulator office answers: episodes and citizen reports received in a period, the
time it took to acknowledge (first reply) and to resolve (close), and the share answered within
its deadline.

Definitions, the same for every office and level:

- An item belongs to the office *in charge* of it (``regulator_id``), also after escalation.
  ``subtree`` rolls an office's own items up with those of every office below it (a city with
  its district branches); without it each office counts only its own.
- An item is *received* in the period when it was opened (episode) or received (report) in
  ``[start, end)``; the times below are those of the items received in the period.
- Minutes to acknowledge: ``acknowledged_at - opened_at`` (episodes); minutes to first reply:
  ``first_reply_at - received_at`` (reports). To resolve: ``resolved_at - opened_at``; to close:
  ``closed_at - received_at``. Median and 90th percentile are continuous percentiles
  (PostgreSQL ``percentile_cont``: linear interpolation between the two nearest values) of the
  items answered so far; unanswered items are not in them, but count in the deadline share.
- Within deadline: an episode acknowledged no later than ``opened_at`` plus its office's
  ``ack_deadline_minutes``; a report first replied to no later than its ``due_at``. The share's
  denominator is the items *due*: answered, or unanswered with the deadline passed at ``now``.
  Items still inside their deadline and unanswered are pending, in neither count.
- Open now: items of the office not resolved/closed at ``now``, whenever received.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from domain.errors import NotFound

Row = dict[str, Any]

_FIGURES = """
with recursive tree as (
    select id as root, id from regulators
    union all
    select t.root, r.id from regulators r join tree t on r.parent_id = t.id
), members as (
    select root, id from tree where %(subtree)s or root = id
), ep as (
    select m.root, e.status,
           extract(epoch from e.acknowledged_at - e.opened_at) / 60 as ack_min,
           extract(epoch from e.resolved_at - e.opened_at) / 60 as res_min,
           e.acknowledged_at is not null as answered,
           e.acknowledged_at <= e.opened_at + make_interval(mins => g.ack_deadline_minutes)
               as in_time,
           e.opened_at + make_interval(mins => g.ack_deadline_minutes) <= %(now)s as overdue
    from episodes e
    join members m on m.id = e.regulator_id
    join regulators g on g.id = e.regulator_id
    where e.opened_at >= %(start)s and e.opened_at < %(end)s
), rp as (
    select m.root,
           extract(epoch from c.first_reply_at - c.received_at) / 60 as reply_min,
           extract(epoch from c.closed_at - c.received_at) / 60 as close_min,
           c.first_reply_at is not null as answered,
           c.first_reply_at <= c.due_at as in_time,
           c.due_at <= %(now)s as overdue,
           c.closed_at is not null as closed
    from citizen_reports c
    join members m on m.id = c.regulator_id
    where c.received_at >= %(start)s and c.received_at < %(end)s
), ep_stats as (
    select root, count(*) as received,
           count(*) filter (where answered) as acknowledged,
           count(*) filter (where status = 'resolved') as resolved,
           percentile_cont(0.5) within group (order by ack_min) as ack_median,
           percentile_cont(0.9) within group (order by ack_min) as ack_p90,
           percentile_cont(0.5) within group (order by res_min) as resolve_median,
           percentile_cont(0.9) within group (order by res_min) as resolve_p90,
           count(*) filter (where in_time) as in_time,
           count(*) filter (where answered or overdue) as due
    from ep group by root
), rp_stats as (
    select root, count(*) as received,
           count(*) filter (where answered) as answered,
           count(*) filter (where closed) as closed,
           percentile_cont(0.5) within group (order by reply_min) as reply_median,
           percentile_cont(0.9) within group (order by reply_min) as reply_p90,
           percentile_cont(0.5) within group (order by close_min) as close_median,
           percentile_cont(0.9) within group (order by close_min) as close_p90,
           count(*) filter (where in_time) as in_time,
           count(*) filter (where answered or overdue) as due
    from rp group by root
), open_now as (
    select m.root,
           (select count(*) from episodes e
             where e.regulator_id = m.id and e.status <> 'resolved'
               and e.opened_at <= %(now)s) as episodes,
           (select count(*) from citizen_reports c
             where c.regulator_id = m.id and c.closed_at is null
               and c.received_at <= %(now)s) as reports
    from members m
), open_stats as (
    select root, sum(episodes)::bigint as episodes, sum(reports)::bigint as reports
    from open_now group by root
)
select g.id, g.name, g.name_zh, g.level, g.parent_id, g.ack_deadline_minutes,
       coalesce(es.received, 0) as episodes_received,
       coalesce(es.acknowledged, 0) as episodes_acknowledged,
       coalesce(es.resolved, 0) as episodes_resolved,
       es.ack_median, es.ack_p90, es.resolve_median, es.resolve_p90,
       coalesce(es.in_time, 0) as episodes_in_time, coalesce(es.due, 0) as episodes_due,
       coalesce(rs.received, 0) as reports_received,
       coalesce(rs.answered, 0) as reports_answered,
       coalesce(rs.closed, 0) as reports_closed,
       rs.reply_median, rs.reply_p90, rs.close_median, rs.close_p90,
       coalesce(rs.in_time, 0) as reports_in_time, coalesce(rs.due, 0) as reports_due,
       coalesce(os.episodes, 0) as episodes_open_now,
       coalesce(os.reports, 0) as reports_open_now
from regulators g
left join ep_stats es on es.root = g.id
left join rp_stats rs on rs.root = g.id
left join open_stats os on os.root = g.id
where (%(office)s::text is null or g.id = %(office)s)
  and (%(level)s::text is null or g.level = %(level)s)
order by case g.level when 'province' then 0 when 'city' then 1 else 2 end, g.id
"""


def figures(
    conn: psycopg.Connection,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    subtree: bool = False,
    office: str | None = None,
    level: str | None = None,
) -> list[Row]:
    """One row per office (or the one ``office``) with its figures for ``[start, end)``."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            _FIGURES,
            {
                "start": start,
                "end": end,
                "now": now,
                "subtree": subtree,
                "office": office,
                "level": level,
            },
        )
        .fetchall()
    )


def office(conn: psycopg.Connection, regulator_id: str) -> Row:
    """The office with its parent's and children's ids; ``NotFound`` if unknown."""
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            """
        select g.id, g.name, g.name_zh, g.level, g.parent_id, g.ack_deadline_minutes,
               coalesce(array(select c.id from regulators c where c.parent_id = g.id
                              order by c.id), '{}') as children
        from regulators g where g.id = %s
        """,
            (regulator_id,),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no regulator office {regulator_id!r}")
    return row
