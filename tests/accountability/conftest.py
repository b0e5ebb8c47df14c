"""The crafted record every accountability test reads (see test_record.py for the times)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.loader import load_registry
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY

# For windows a day wide or more around crafted times; the record itself reads the clock.
NOW = datetime.now(UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def episode(
    conn: psycopg.Connection,
    office: str,
    opened: datetime,
    ack_after: float | None = None,
    resolve_after: float | None = None,
) -> None:
    acknowledged = opened + minutes(ack_after) if ack_after is not None else None
    resolved = opened + minutes(resolve_after) if resolve_after is not None else None
    conn.execute(
        "insert into episodes (kind, site_id, pollutant, period, regulator_id, status,"
        " first_start, last_end, opened_at, acknowledged_at, resolved_at)"
        " values ('exceedance', 'lc-tpg-u1', %s, 'hour', %s, %s, %s, %s, %s, %s, %s)",
        (
            secrets.token_hex(4),  # one live episode per pollutant: keep them apart
            office,
            "resolved" if resolved else ("acknowledged" if acknowledged else "notified"),
            opened,
            opened,
            opened,
            acknowledged,
            resolved,
        ),
    )


def report(
    conn: psycopg.Connection,
    office: str,
    received: datetime,
    due_after: float,
    reply_after: float | None = None,
    close_after: float | None = None,
) -> None:
    conn.execute(
        "insert into citizen_reports (tracking_code, received_at, lon, lat, category,"
        " description, regulator_id, status, due_at, first_reply_at, closed_at)"
        " values (%s, %s, 116.47, 39.84, 'smoke', 'black smoke', %s, %s, %s, %s, %s)",
        (
            secrets.token_hex(6),
            received,
            office,
            "confirmed" if close_after is not None else "open",
            received + minutes(due_after),
            received + minutes(reply_after) if reply_after is not None else None,
            received + minutes(close_after) if close_after is not None else None,
        ),
    )


def record(database_url: str) -> None:
    """The example registry and the crafted episodes and reports."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    now = datetime.now(UTC)  # not NOW: the pending items must be minutes old when read
    day = now - timedelta(days=10)
    with psycopg.connect(database_url) as conn:
        for ack, res in [(10, 100), (20, 200), (30, 300), (90, 400)]:
            episode(conn, "lc-eeb-gangkou", day, ack, res)
        episode(conn, "lc-eeb-gangkou", now - timedelta(days=5))  # overdue
        episode(conn, "lc-eeb-gangkou", now - minutes(30))  # pending, inside its deadline
        episode(conn, "lc-eeb-gangkou", now - timedelta(days=40), 5, 6)
        episode(conn, "lc-eeb-nanhe", day, 40, 50)  # deadline 120 (the default)
        episode(conn, "lc-eeb", day, 300, 500)  # deadline 480
        report(conn, "lc-eeb-gangkou", day, 120, 30, 600)
        report(conn, "lc-eeb-gangkou", day, 120, 150, 1000)
        report(conn, "lc-eeb-gangkou", day, 120)  # overdue
        report(conn, "lc-eeb-gangkou", now - minutes(10), 120)  # pending


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    record(database_url)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client
