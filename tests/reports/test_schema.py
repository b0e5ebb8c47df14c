"""The citizen-report tables: replies append-only, contacts apart, the outbox shared."""

from __future__ import annotations

import psycopg
import pytest

from registry.loader import load_registry
from tests.conftest import EXAMPLE_REGISTRY


def _report(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "insert into citizen_reports (tracking_code, lon, lat, category, description,"
        " regulator_id, due_at) select 'code-1', 0, 0, 'smoke', 'black smoke', id,"
        " now() + interval '2 hours' from regulators order by id limit 1 returning id"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_replies_are_append_only(database_url: str) -> None:
    """A reply, once written, can be neither changed nor deleted."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = _report(conn)
        conn.execute(
            "insert into citizen_report_replies (report_id, regulator_id, body)"
            " select %s, regulator_id, 'on our way' from citizen_reports where id = %s",
            (report, report),
        )
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("update citizen_report_replies set body = 'nothing'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("delete from citizen_report_replies")


def test_outbox_row_is_about_an_episode_or_a_report(database_url: str) -> None:
    """A notification names exactly one subject: an episode or a report."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = _report(conn)
        conn.execute(
            "insert into notifications (report_id, regulator_id, kind, channel)"
            " select id, regulator_id, 'opened', 'mqtt' from citizen_reports where id = %s",
            (report,),
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "insert into notifications (regulator_id, kind, channel)"
                " select regulator_id, 'opened', 'mqtt' from citizen_reports"
            )


def test_merged_needs_an_episode(database_url: str) -> None:
    """A report is 'merged' exactly when it names the episode it was merged into."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with psycopg.connect(database_url, autocommit=True) as conn:
        _report(conn)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("update citizen_reports set status = 'merged'")
