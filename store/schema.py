"""The schema, as numbered migrations, for both storage paths.

TimescaleDB and plain PostgreSQL share every table and column; only the storage of ``readings``
and its hourly rollup differ. The path is chosen once, at migration time, and recorded in
``sunlight_meta`` so every process afterwards knows which one it talks to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

logger = logging.getLogger(__name__)

# Arbitrary constant: one migrator at a time, whichever service starts first.
MIGRATION_LOCK_ID = 0x53554E4C  # "SUNL"


class StorageMode(StrEnum):
    TIMESCALEDB = "timescaledb"
    POSTGRES = "postgres"


@dataclass(frozen=True, slots=True)
class Options:
    """Migration-time choices that shape the SQL."""

    mode: StorageMode
    retention_days: int
    compress_after_days: int


Statements = Callable[[Options], Sequence[str | sql.Composed]]


def _nothing(_: Options) -> Sequence[str]:
    return []


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: Statements
    # Run after the migration commits: statements TimescaleDB refuses inside a transaction.
    afterwards: Statements = _nothing


def _registry(_: Options) -> Sequence[str]:
    return [
        """
        create table regulators (
            id text primary key,
            name text not null,
            name_zh text,
            level text not null check (level in ('province', 'city', 'district')),
            parent_id text references regulators(id) deferrable initially deferred,
            ack_deadline_minutes integer not null default 120 check (ack_deadline_minutes > 0)
        )""",
        """
        create table districts (
            id text primary key,
            name text not null,
            name_zh text,
            regulator_id text not null references regulators(id),
            boundary jsonb not null  -- GeoJSON Polygon geometry, WGS 84
        )""",
        # Stations and outlets are both "sites": the place a device measures.
        """
        create table sites (
            key integer generated always as identity primary key,
            id text not null unique,
            kind text not null check (kind in ('station', 'outlet'))
        )""",
        """
        create table enterprises (
            id text primary key,
            name text not null,
            name_zh text,
            industry text not null,
            district_id text not null references districts(id),
            lon double precision not null check (lon between -180 and 180),
            lat double precision not null check (lat between -90 and 90)
        )""",
        """
        create table outlets (
            id text primary key references sites(id),
            enterprise_id text not null references enterprises(id),
            name text not null,
            name_zh text,
            kind text not null check (kind in ('gas', 'water')),
            reference_o2 double precision check (reference_o2 >= 0 and reference_o2 < 21)
        )""",
        """
        create table permit_limits (
            outlet_id text not null references outlets(id) on delete cascade,
            pollutant text not null,
            period text not null check (period in ('hour', 'day')),
            value double precision not null check (value > 0),
            unit text not null,
            standard text not null,
            o2_corrected boolean not null default false,
            primary key (outlet_id, pollutant, period)
        )""",
        """
        create table stations (
            id text primary key references sites(id),
            name text not null,
            name_zh text,
            district_id text not null references districts(id),
            lon double precision not null check (lon between -180 and 180),
            lat double precision not null check (lat between -90 and 90),
            zone smallint not null default 2 check (zone in (1, 2))
        )""",
        """
        create table devices (
            key integer generated always as identity primary key,
            id text not null unique,
            site_id text not null references sites(id),
            mn text unique,
            hj212_password text,
            timezone text
        )""",
        """
        create table dead_letters (
            id bigint generated always as identity primary key,
            received_at timestamptz not null default now(),
            topic text not null,
            device_id text,
            reason text not null,
            detail text not null,
            payload bytea not null,
            replayed_at timestamptz
        )""",
        "create index dead_letters_device_reason on dead_letters (device_id, reason, received_at)",
    ]


# The hourly rollup's columns, identical on both paths so one query API reads either. One row
# per series and hour: a device moved to another site, or a unit changed, mid-hour keeps one.
_ROLLUP_SELECT = """
    select device_key, max(site_key) as site_key, pollutant, period, max(unit) as unit,
           {bucket} as hour,
           count(*) as n,
           count(*) filter (where flag = 'N') as n_valid,
           avg({value}) filter (where flag = 'N') as mean,
           min({value}) filter (where flag = 'N') as min,
           max({value}) filter (where flag = 'N') as max,
           avg({value}) as mean_all,
           bit_or(case flag when 'N' then 1 when 'F' then 2 when 'M' then 4 when 'S' then 8
                            when 'D' then 16 when 'C' then 32 when 'T' then 64 when 'B' then 128
                            else 0 end) as flags_mask
    from {table}
    where period in ('sample', 'minute')
"""


def _hourly_aggregate(value: str, table: str) -> list[str]:
    """TimescaleDB: ``readings_hourly`` as a continuous aggregate of ``table``, its index and
    refresh policy (late data beyond the policy's window is refreshed by the writer)."""
    bucket = "time_bucket(interval '1 hour', time)"
    return [
        # One index on the series and hour instead of one per grouping column.
        "create materialized view readings_hourly"
        " with (timescaledb.continuous, timescaledb.materialized_only = false,"
        " timescaledb.create_group_indexes = false) as"
        + _ROLLUP_SELECT.format(bucket=bucket, value=value, table=table)
        + f" group by device_key, pollutant, period, {bucket} with no data",
        "create index readings_hourly_series on readings_hourly"
        " (device_key, pollutant, period, hour)",
        "select add_continuous_aggregate_policy('readings_hourly',"
        " start_offset => interval '3 days', end_offset => interval '1 hour',"
        " schedule_interval => interval '10 minutes')",
    ]


def _readings(opts: Options) -> Sequence[str | sql.Composed]:
    common: list[str | sql.Composed] = [
        "create type averaging_period as enum ('sample', 'minute', 'hour', 'day')",
        # Narrow types on purpose: this is the table that grows. Site and device are integer
        # keys; the flag is one character (HJ 212-2017 data flags).
        """
        create table readings (
            time timestamptz not null,
            device_key integer not null,
            site_key integer not null,
            pollutant text not null,
            period averaging_period not null,
            value double precision not null,
            unit text not null,
            flag char(1) not null,
            primary key (device_key, pollutant, period, time)
        )""",
        # The newest value per site, pollutant and period: what lists and maps show.
        """
        create table latest_readings (
            site_key integer not null,
            pollutant text not null,
            period averaging_period not null,
            device_key integer not null,
            time timestamptz not null,
            value double precision not null,
            unit text not null,
            flag char(1) not null,
            -- When the device last *sent* a flag-N value (a back-fill counts as sending): a
            -- monitor sending only invalid data is as silent as one sending nothing.
            valid_received_at timestamptz,
            primary key (site_key, pollutant, period)
        )""",
    ]
    if opts.mode is StorageMode.TIMESCALEDB:
        return [
            *common,
            "select create_hypertable('readings', 'time', chunk_time_interval => interval '1 day')",
            # Segment by series so a compressed chunk answers one device's pollutant quickly.
            """
            alter table readings set (
                timescaledb.compress,
                timescaledb.compress_segmentby = 'device_key, pollutant, period',
                timescaledb.compress_orderby = 'time desc'
            )""",
            sql.SQL("select add_compression_policy('readings', {}::interval)").format(
                sql.Literal(f"{opts.compress_after_days} days")
            ),
            sql.SQL("select add_retention_policy('readings', {}::interval)").format(
                sql.Literal(f"{opts.retention_days} days")
            ),
            *_hourly_aggregate(value="value", table="readings"),
        ]
    return [
        *common,
        """
        create table readings_hourly (
            device_key integer not null,
            site_key integer not null,
            pollutant text not null,
            period averaging_period not null,
            unit text not null,
            hour timestamptz not null,
            n integer not null,
            n_valid integer not null,
            mean double precision,
            min double precision,
            max double precision,
            mean_all double precision not null,
            flags_mask integer not null,
            primary key (device_key, pollutant, period, hour)
        )""",
    ]


def _tokens(_: Options) -> Sequence[str]:
    return [
        # A token is 'slt_<id>_<secret>'; only SHA-256 of the secret is kept, and it is compared
        # in constant time after the row is found by id.
        """
        create table regulator_tokens (
            id integer generated always as identity primary key,
            regulator_id text not null references regulators(id),
            label text not null,
            secret_sha256 bytea not null,
            created_at timestamptz not null default now(),
            revoked_at timestamptz
        )""",
    ]


def _unknown_values(_: Options) -> Sequence[str]:
    return [
        # Values under HJ 212 codes outside Sunlight's table: kept as sent (raw text), so nothing
        # a data logger reports is lost, and stored apart so no unit is guessed for them.
        """
        create table unknown_values (
            time timestamptz not null,
            device_key integer not null,
            code text not null,
            field text not null,
            value text not null,
            flag char(1),
            received_at timestamptz not null default now(),
            primary key (device_key, code, field, time)
        )""",
    ]


def _compliance(_: Options) -> Sequence[str]:
    return [
        # Where each office wants to be told: {"webhook": {"url", "secret"}, "email": [...],
        # "mqtt": true}; loaded from the registry.
        "alter table regulators add column notify jsonb not null default '{}'",
        # Every judgement, compliant hours included, so the disclosure shows the whole record.
        """
        create table judgements (
            site_id text not null references sites(id),
            pollutant text not null,
            period text not null check (period in ('hour', 'day')),
            start timestamptz not null,
            limit_value double precision not null,
            unit text not null,
            standard text not null,
            o2_reference double precision,
            mean double precision,
            measured_mean double precision,
            o2_mean double precision,
            valid_count integer not null,
            total_count integer not null,
            verdict text not null
                check (verdict in ('compliant', 'exceedance', 'invalid', 'stopped', 'no_data')),
            judged_at timestamptz not null default now(),
            primary key (site_id, pollutant, period, start)
        )""",
        "create index judgements_exceedances on judgements (start) where verdict = 'exceedance'",
        """
        create table episodes (
            id bigint generated always as identity primary key,
            kind text not null check (kind in ('exceedance', 'gap')),
            site_id text not null references sites(id),
            pollutant text not null default '',
            period text not null default '',
            regulator_id text not null references regulators(id),
            status text not null
                check (status in ('open', 'notified', 'acknowledged', 'resolved')),
            severity text,
            first_start timestamptz not null,
            last_end timestamptz not null,
            hours integer not null default 0,
            max_mean double precision,
            limit_value double precision,
            opened_at timestamptz not null default now(),
            notified_at timestamptz,
            acknowledged_at timestamptz,
            resolved_at timestamptz,
            escalated_to text references regulators(id),
            escalated_at timestamptz,
            reminders integer not null default 0,
            last_reminded_at timestamptz,
            reopened integer not null default 0,
            resolution text
        )""",
        # At most one live episode per outlet, pollutant, period and kind.
        "create unique index episodes_one_live on episodes (kind, site_id, pollutant, period)"
        " where status <> 'resolved'",
        "create index episodes_regulator on episodes (regulator_id, status)",
        # The audit log of every episode: appended to, never changed.
        """
        create table episode_events (
            id bigint generated always as identity primary key,
            episode_id bigint not null references episodes(id),
            at timestamptz not null default now(),
            kind text not null,
            actor text not null,
            regulator_id text references regulators(id),
            note text,
            detail jsonb not null default '{}'
        )""",
        "create index episode_events_episode on episode_events (episode_id, id)",
        """
        create function sunlight_append_only() returns trigger language plpgsql as $$
        begin
            raise exception '% is append-only', tg_table_name;
        end $$""",
        "create trigger episode_events_append_only before update or delete on episode_events"
        " for each row execute function sunlight_append_only()",
        # Notifications are rows first, sent after: the outbox makes 'one notification per
        # episode' survive a crash (a resend carries the same idempotency key).
        """
        create table notifications (
            id bigint generated always as identity primary key,
            episode_id bigint not null references episodes(id),
            regulator_id text not null references regulators(id),
            kind text not null,
            seq integer not null default 0,
            channel text not null,
            status text not null default 'pending'
                check (status in ('pending', 'sent', 'failed')),
            attempts integer not null default 0,
            next_attempt_at timestamptz not null default now(),
            created_at timestamptz not null default now(),
            sent_at timestamptz,
            last_error text,
            unique (episode_id, regulator_id, kind, seq, channel)
        )""",
        "create index notifications_due on notifications (next_attempt_at)"
        " where status = 'pending'",
        """
        create table notification_attempts (
            id bigint generated always as identity primary key,
            notification_id bigint not null references notifications(id),
            at timestamptz not null default now(),
            ok boolean not null,
            detail text not null
        )""",
        """
        create table silences (
            id bigint generated always as identity primary key,
            site_id text not null references sites(id),
            starts_at timestamptz not null,
            ends_at timestamptz not null check (ends_at > starts_at),
            reason text not null,
            created_by text not null references regulators(id),
            created_at timestamptz not null default now()
        )""",
        # Watermarks of the scheduled jobs: what has been judged through.
        """
        create table job_state (
            job text primary key,
            done_through timestamptz not null,
            updated_at timestamptz not null default now()
        )""",
        # Hours whose readings changed after they were judged (late data): judged again.
        """
        create table rejudge_queue (
            site_key integer not null,
            hour timestamptz not null,
            primary key (site_key, hour)
        )""",
    ]


def _reports(_: Options) -> Sequence[str]:
    return [
        # A citizen's report of what they see or smell: public except for the contact, which
        # lives in its own table so no public query can select it by accident.
        """
        create table citizen_reports (
            id bigint generated always as identity primary key,
            tracking_code text not null unique,
            received_at timestamptz not null default now(),
            lon double precision not null check (lon between -180 and 180),
            lat double precision not null check (lat between -90 and 90),
            category text not null
                check (category in ('smoke', 'odour', 'water', 'noise', 'dust', 'other')),
            description text not null,
            district_id text references districts(id),
            regulator_id text not null references regulators(id),
            status text not null default 'open'
                check (status in ('open', 'confirmed', 'unfounded', 'merged')),
            episode_id bigint references episodes(id),
            due_at timestamptz not null,
            first_reply_at timestamptz,
            closed_at timestamptz,
            escalated_at timestamptz,
            escalated_to text references regulators(id),
            reminded_at timestamptz,
            observed_at timestamptz,
            has_photo boolean not null default false,
            check ((status = 'merged') = (episode_id is not null))
        )""",
        "create index citizen_reports_regulator on citizen_reports (regulator_id, status)",
        "create index citizen_reports_received on citizen_reports (received_at)",
        "create index citizen_reports_unanswered on citizen_reports (due_at)"
        " where first_reply_at is null",
        """
        create table citizen_report_contacts (
            report_id bigint primary key references citizen_reports(id),
            contact text not null
        )""",
        # Photos as re-encoded by the API (metadata stripped), never the bytes as uploaded.
        """
        create table citizen_report_photos (
            report_id bigint primary key references citizen_reports(id),
            content_type text not null,
            data bytea not null,
            width integer not null,
            height integer not null
        )""",
        """
        create table citizen_report_replies (
            id bigint generated always as identity primary key,
            report_id bigint not null references citizen_reports(id),
            created_at timestamptz not null default now(),
            regulator_id text not null references regulators(id),
            body text not null,
            status text check (status in ('confirmed', 'unfounded', 'merged')),
            episode_id bigint references episodes(id)
        )""",
        "create index citizen_report_replies_report on citizen_report_replies (report_id, id)",
        "create trigger citizen_report_replies_append_only before update or delete"
        " on citizen_report_replies for each row execute function sunlight_append_only()",
        # Proof-of-work challenges: issued by the API, each accepted once, then spent.
        """
        create table citizen_report_challenges (
            nonce text primary key,
            difficulty integer not null check (difficulty between 0 and 64),
            issued_at timestamptz not null default now(),
            expires_at timestamptz not null,
            used_at timestamptz
        )""",
        "create index citizen_report_challenges_expiry on citizen_report_challenges (expires_at)",
        # The outbox serves reports too: a row is about an episode or about a report, never
        # both, and shares the id sequence, so every channel's idempotency key stays unique.
        "alter table notifications alter column episode_id drop not null",
        "alter table notifications add column report_id bigint references citizen_reports(id)",
        "alter table notifications add constraint notifications_subject"
        " check (num_nonnulls(episode_id, report_id) = 1)",
        "create unique index notifications_one_per_report on notifications"
        " (report_id, regulator_id, kind, seq, channel) where report_id is not null",
    ]


def _wide_readings(opts: Options) -> Sequence[str]:
    """Plain PostgreSQL: one row per device, period and minute instead of one per value.

    A row per value pays PostgreSQL's tuple header (24 bytes) and a primary-key entry for every
    number; a device's minute of 8-10 pollutants in one row pays them once. ``readings`` becomes
    a view with the same columns, so every query reads either path alike. TimescaleDB keeps
    narrow rows: its compression stores each series column-wise, and its continuous aggregate
    needs the hypertable itself.
    """
    if opts.mode is StorageMode.TIMESCALEDB:
        return []
    return [
        # (pollutant, canonical unit) pairs as small integers; a value's unit travels with it.
        """
        create table reading_codes (
            id smallint generated always as identity primary key,
            pollutant text not null,
            unit text not null,
            unique (pollutant, unit)
        )""",
        # Column order packs the fixed-width columns before the arrays (no alignment padding).
        # codes are ascending; vals and flags (one HJ 212 flag character per value) follow them.
        """
        create table reading_rows (
            time timestamptz not null,
            device_key integer not null,
            site_key integer not null,
            period averaging_period not null,
            codes smallint[] not null,
            vals double precision[] not null,
            flags text not null,
            primary key (device_key, period, time),
            check (cardinality(codes) = cardinality(vals) and cardinality(vals) = length(flags))
        )""",
        # Merge a resent or partial minute into the stored one: a new value for a pollutant
        # replaces the old one (whatever its unit), pollutants not resent are kept.
        """
        create function reading_rows_merge(
            old_codes smallint[], old_vals double precision[], old_flags text,
            new_codes smallint[], new_vals double precision[], new_flags text,
            out codes smallint[], out vals double precision[], out flags text)
        language sql stable as $$
            with n as (
                select u.code, u.val, substr(new_flags, u.i::integer, 1) as flag, c.pollutant
                from unnest(new_codes, new_vals) with ordinality as u(code, val, i)
                join reading_codes c on c.id = u.code
            ), o as (
                select u.code, u.val, substr(old_flags, u.i::integer, 1) as flag
                from unnest(old_codes, old_vals) with ordinality as u(code, val, i)
                join reading_codes c on c.id = u.code
                where c.pollutant not in (select pollutant from n)
            ), m as (
                select code, val, flag from n union all select code, val, flag from o
            )
            select array_agg(code order by code), array_agg(val order by code),
                   string_agg(flag, '' order by code)
            from m
        $$""",
        """
        insert into reading_codes (pollutant, unit)
        select distinct pollutant, unit from readings order by 1, 2""",
        """
        insert into reading_rows (time, device_key, site_key, period, codes, vals, flags)
        select r.time, r.device_key, max(r.site_key), r.period,
               array_agg(c.id order by c.id), array_agg(r.value order by c.id),
               string_agg(r.flag, '' order by c.id)
        from readings r join reading_codes c using (pollutant, unit)
        group by r.device_key, r.period, r.time""",
        "drop table readings",
        """
        create view readings as
        select r.time, r.device_key, r.site_key, c.pollutant, r.period, u.value, c.unit,
               substr(r.flags, u.i::integer, 1)::char(1) as flag
        from reading_rows r
        cross join lateral unnest(r.codes, r.vals) with ordinality as u(code, value, i)
        join reading_codes c on c.id = u.code""",
        # Running sums, so a new minute adds to its hour instead of recomputing it.
        "alter table readings_hourly add column sum_valid double precision not null default 0",
        "alter table readings_hourly add column sum_all double precision not null default 0",
        "update readings_hourly set sum_valid = coalesce(mean * n_valid, 0),"
        " sum_all = mean_all * n",
    ]


def _subscriptions(_: Options) -> Sequence[str]:
    return [
        # A citizen's standing request to be told about a place. The target (an address or a
        # URL) is never served publicly; the tokens are capabilities sent only to the target.
        """
        create table subscriptions (
            id bigint generated always as identity primary key,
            kind text not null check (kind in ('email', 'webhook')),
            target text not null,
            secret text,
            scope text not null check (scope in ('enterprise', 'district', 'radius')),
            enterprise_id text references enterprises(id),
            district_id text references districts(id),
            lon double precision check (lon between -180 and 180),
            lat double precision check (lat between -90 and 90),
            radius_m double precision check (radius_m > 0),
            lang text not null default 'en' check (lang in ('en', 'zh')),
            confirm_token text unique,
            confirm_expires_at timestamptz,
            confirmed_at timestamptz,
            unsubscribe_token text not null unique,
            created_at timestamptz not null default now(),
            unsubscribed_at timestamptz,
            check ((kind = 'webhook') = (secret is not null)),
            check ((scope = 'enterprise') = (enterprise_id is not null)),
            check ((scope = 'district') = (district_id is not null)),
            check ((scope = 'radius') = (lon is not null and lat is not null
                                         and radius_m is not null))
        )""",
        "create index subscriptions_active on subscriptions (scope)"
        " where confirmed_at is not null and unsubscribed_at is null",
        "create index subscriptions_target on subscriptions (kind, target, created_at)",
        # Which public events (episode_events, citizen_report_replies) have been fanned out:
        # claimed once, in the transaction that queues their deliveries, whatever the commit
        # order of the rows that produced them.
        """
        create table subscription_fanout (
            source text not null check (source in ('episode_event', 'report_reply')),
            source_id bigint not null,
            event_at timestamptz not null,
            fanned_at timestamptz not null default now(),
            primary key (source, source_id)
        )""",
        # The fan-out scans recent public events every few seconds.
        "create index episode_events_public on episode_events (at)"
        " where kind in ('opened', 'reopened', 'resolved')",
        "create index citizen_report_replies_created on citizen_report_replies (created_at)",
        # The subscribers' outbox, apart from the offices' notifications: one row per
        # subscription and event, sent with retries and backoff.
        """
        create table subscriber_deliveries (
            id bigint generated always as identity primary key,
            subscription_id bigint not null references subscriptions(id),
            event_key text not null,
            kind text not null check (kind in ('confirm', 'episode_opened', 'episode_reopened',
                                               'episode_resolved', 'report_reply')),
            episode_id bigint references episodes(id),
            reply_id bigint references citizen_report_replies(id),
            status text not null default 'pending'
                check (status in ('pending', 'sent', 'failed', 'cancelled')),
            attempts integer not null default 0,
            next_attempt_at timestamptz not null default now(),
            created_at timestamptz not null default now(),
            sent_at timestamptz,
            last_error text,
            unique (subscription_id, event_key)
        )""",
        "create index subscriber_deliveries_due on subscriber_deliveries (next_attempt_at)"
        " where status = 'pending'",
        """
        create table subscriber_delivery_attempts (
            id bigint generated always as identity primary key,
            delivery_id bigint not null references subscriber_deliveries(id),
            at timestamptz not null default now(),
            ok boolean not null,
            detail text not null
        )""",
    ]


def _api_indexes(_: Options) -> Sequence[str]:
    return [
        # An enterprise's episodes, newest first, without reading every episode ever opened.
        "create index episodes_site on episodes (site_id, id)",
        # Episodes opened in the last 30 days (compliance status, district summary).
        "create index episodes_opened on episodes (opened_at)",
    ]


def _dead_letters_once(_: Options) -> Sequence[str]:
    """A dead letter stored once per topic and payload until it is replayed; ``arrivals``
    counts how often those bytes came.

    An ingestor killed after committing a batch but before acknowledging it gets the batch again
    from the broker; readings merge idempotently, and now so do the rejects. Copies already
    stored are folded into the earliest, their number kept in ``arrivals``.
    """
    return [
        "alter table dead_letters add column payload_sha256 bytea"
        " generated always as (sha256(payload)) stored",
        "alter table dead_letters add column arrivals integer not null default 1"
        " check (arrivals > 0)",
        """
        update dead_letters d set arrivals = c.copies
        from (select min(id) as id, count(*) as copies from dead_letters
              where replayed_at is null group by topic, payload_sha256 having count(*) > 1) c
        where d.id = c.id""",
        """
        delete from dead_letters d using dead_letters e
        where d.replayed_at is null and e.replayed_at is null and d.topic = e.topic
          and d.payload_sha256 = e.payload_sha256 and d.id > e.id""",
        "create unique index dead_letters_once on dead_letters (topic, payload_sha256)"
        " where replayed_at is null",
    ]


# A value's millionths when they give back exactly the same double, else null. Decimal values
# as devices send them (HJ 212 values are decimal text) almost always fit. One expression, no
# FROM: PostgreSQL inlines it into the insert (a function body it cannot inline costs ~5 µs a
# row, a third of the write's time).
_MICRO_UNITS = """
    create function micro_units(v double precision) returns bigint
    language sql immutable parallel safe as $$
        select case when abs(v) < 9e12::float8
                     and round(v * 1e6::float8)::bigint::float8 / 1e6::float8 = v
                    then round(v * 1e6::float8)::bigint end
    $$"""
# Exactly the double that was stored: the check in micro_units is the same division.
READING_VALUE = (
    "case when value_micro is null then value else value_micro::float8 / 1e6::float8 end"
)


def _exact_values(opts: Options) -> Sequence[str]:
    """TimescaleDB: values stored as integer millionths, so compression can shrink them.

    Compression encodes float columns with Gorilla (XOR of neighbouring doubles), which saves
    little on decimal measurements: 25.13 and 25.16 share few bits as doubles. As integers
    (25130000, 25160000) the same series compresses by delta-of-delta to a byte or two. The
    hypertable becomes ``reading_values``: ``value_micro`` where the value is exactly so many
    millionths (the check is a round trip, so nothing is ever rounded), else null and the
    double in ``value`` (rows stored before this migration keep theirs there). ``readings``
    becomes a view with the same columns as before, and the continuous aggregate is rebuilt
    over it.

    Where ``value_micro`` holds the value, ``value`` holds NaN, never a reading (non-finite
    values are refused at ingest), and compressed to nothing: not null, because TimescaleDB
    before 2.18 refuses ``DROP NOT NULL`` (and new constraints) on a hypertable with
    compression enabled, and the docker-compose deployment runs 2.17.
    """
    if opts.mode is not StorageMode.TIMESCALEDB:
        return []
    return [
        "alter table readings rename to reading_values",
        "alter table reading_values add column value_micro bigint",
        _MICRO_UNITS,
        "drop materialized view readings_hourly",
        "create view readings as select time, device_key, site_key, pollutant, period,"  # noqa: S608
        f" {READING_VALUE} as value, unit, flag from reading_values",
        *_hourly_aggregate(value=READING_VALUE, table="reading_values"),
    ]


def _judgements_unchecked(_: Options) -> Sequence[str]:
    """Judgements without a per-row foreign-key check on their site.

    The rules engine writes 40,000 judgements an hour for 10,000 outlets, and PostgreSQL checks
    a foreign key with a trigger per row: measured, 60 % of recording them. The invariant holds
    without it: the engine judges only rules read from ``permit_limits`` (whose outlets reference
    ``sites``) in the same transaction, and sites are never deleted (the registry loader inserts
    and updates them; a site leaving the registry keeps its history).
    """
    return ["alter table judgements drop constraint if exists judgements_site_id_fkey"]


def _room_for_hot_updates(opts: Options) -> Sequence[str]:
    """Half of each page left free in the tables every ingest batch updates row by row.

    Every batch updates one ``latest_readings`` row per site and pollutant and, on plain
    PostgreSQL, one ``readings_hourly`` row per device and pollutant: about one row update per
    reading. On full pages (fillfactor 100) almost none can stay on their page, so each writes
    new index entries and a row version elsewhere, and the tables bloat until vacuum catches
    up; with room on the page they are heap-only updates. Measured (3 M readings, durable):
    99 % same-page updates instead of 2-21 %, WAL 1.1 GB instead of 2.0 GB, database CPU per
    reading 17.2 µs instead of 23.6. Existing pages keep their layout until rewritten.
    """
    statements = ["alter table latest_readings set (fillfactor = 50)"]
    if opts.mode is StorageMode.POSTGRES:  # a continuous aggregate on TimescaleDB
        statements.append("alter table readings_hourly set (fillfactor = 50)")
    return statements


def _refill_hourly_aggregate(opts: Options) -> Sequence[str]:
    """The rebuilt continuous aggregate starts empty: materialise all stored history once."""
    if opts.mode is not StorageMode.TIMESCALEDB:
        return []
    return ["call refresh_continuous_aggregate('readings_hourly', null, null)"]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "registry and dead letters", _registry),
    Migration(2, "readings, hourly rollup, latest values", _readings),
    Migration(3, "regulator API tokens", _tokens),
    Migration(4, "values under unknown HJ 212 codes", _unknown_values),
    Migration(5, "compliance: judgements, episodes, audit log, notifications", _compliance),
    Migration(6, "readings as one row per device and minute (plain PostgreSQL)", _wide_readings),
    Migration(7, "citizen reports", _reports),
    Migration(8, "subscriptions", _subscriptions),
    Migration(9, "indexes for the public API", _api_indexes),
    Migration(10, "dead letters stored once per topic and payload", _dead_letters_once),
    Migration(
        11,
        "readings' values as exact integers of millionths (TimescaleDB)",
        _exact_values,
        afterwards=_refill_hourly_aggregate,
    ),
    Migration(12, "judgements without a per-row foreign-key check", _judgements_unchecked),
    Migration(13, "room on the page for ingest's row updates", _room_for_hot_updates),
)


def _bootstrap(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        create table if not exists schema_migrations (
            version integer primary key,
            name text not null,
            applied_at timestamptz not null default now()
        )"""
    )
    conn.execute(
        "create table if not exists sunlight_meta (key text primary key, value text not null)"
    )


def timescaledb_available(conn: psycopg.Connection) -> bool:
    """True when the extension is installed or installable in this database.

    The extension must also be preloaded (``shared_preload_libraries``), else ``create
    extension`` fails; we check both so 'auto' falls back cleanly instead of failing. Only
    superusers and pg_read_all_settings may read ``shared_preload_libraries``; for other roles
    the loader's own setting, defined only when it is preloaded, stands in.
    """
    row = conn.execute(
        "select exists (select 1 from pg_available_extensions where name = 'timescaledb'),"
        " coalesce(case when pg_has_role('pg_read_all_settings', 'usage')"
        " then current_setting('shared_preload_libraries') end,"
        " case when current_setting('timescaledb.bgw_launcher_poll_time', true) is not null"
        " then 'timescaledb' end, '')"
    ).fetchone()
    assert row is not None
    available, preload = row
    return bool(available) and "timescaledb" in preload


def storage_mode(conn: psycopg.Connection) -> StorageMode | None:
    """The path recorded at migration time, or None before the first migration."""
    cur = conn.cursor(row_factory=tuple_row)
    if not _has_table(conn, "sunlight_meta"):
        return None
    row = cur.execute("select value from sunlight_meta where key = 'storage'").fetchone()
    return StorageMode(row[0]) if row else None


def _has_table(conn: psycopg.Connection, name: str) -> bool:
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute("select to_regclass(%s) is not null", (name,)).fetchone()
    return bool(row and row[0])


def _choose_mode(conn: psycopg.Connection, wanted: str) -> StorageMode:
    recorded = storage_mode(conn)
    if recorded is not None:
        if wanted not in ("auto", recorded.value):
            raise RuntimeError(
                f"this database was migrated for {recorded.value}; cannot switch to {wanted}"
            )
        return recorded
    has_tsdb = timescaledb_available(conn)
    if wanted == "timescaledb" and not has_tsdb:
        raise RuntimeError(
            "SUNLIGHT_STORAGE=timescaledb but the extension is not available and preloaded"
        )
    mode = (
        StorageMode.TIMESCALEDB
        if has_tsdb and wanted in ("auto", "timescaledb")
        else StorageMode.POSTGRES
    )
    conn.execute(
        "insert into sunlight_meta (key, value) values ('storage', %s)"
        " on conflict (key) do nothing",
        (mode.value,),
    )
    return mode


def migrate(
    url: str,
    *,
    storage: str = "auto",
    retention_days: int = 1825,
    compress_after_days: int = 7,
    up_to: int | None = None,
) -> list[int]:
    """Apply every pending migration in order; return the versions applied (none on re-run).

    ``up_to`` stops after that version: how upgrade tests build a database as an older release
    of Sunlight left it.
    """
    applied: list[int] = []
    with psycopg.connect(url, autocommit=True, application_name="sunlight-migrate") as conn:
        conn.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            with conn.transaction():
                _bootstrap(conn)
                mode = _choose_mode(conn, storage)
            if mode is StorageMode.TIMESCALEDB:
                conn.execute("create extension if not exists timescaledb")
            done = {r[0] for r in conn.execute("select version from schema_migrations")}
            opts = Options(mode, retention_days, compress_after_days)
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                if up_to is not None and migration.version > up_to:
                    break
                logger.info(
                    "applying migration %s: %s (%s)", migration.version, migration.name, mode
                )
                with conn.transaction():
                    for statement in migration.statements(opts):
                        conn.execute(statement)
                    conn.execute(
                        "insert into schema_migrations (version, name) values (%s, %s)",
                        (migration.version, migration.name),
                    )
                for statement in migration.afterwards(opts):
                    conn.execute(statement)
                applied.append(migration.version)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied
