"""Unanswered reports in the alerts engine, with a clock the test moves: the office is told of
a new report, reminded once before the deadline, and its parent told once after it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg
import yaml

from alerts.service import Engine
from domain.reports import Status
from registry.loader import load_registry
from store import reports as store
from sunlight.settings import Settings
from tests.alerts.loopback import webhook_receiver
from tests.alerts.test_scenario import Clock
from tests.conftest import EXAMPLE_REGISTRY
from tests.reports.helpers import CONTACT

SECRET = "report-hook-secret"
PORT_OFFICE, CITY = "lc-eeb-gangkou", "lc-eeb"  # Gangkou answers within 60 minutes


def registry_with_webhooks(tmp_path: Path, url: str) -> Path:
    doc = yaml.safe_load(EXAMPLE_REGISTRY.read_text())
    for reg in doc["regulators"]:
        if reg["id"] in (PORT_OFFICE, CITY):
            reg["notify"] = {"webhook_url": url, "webhook_secret": SECRET, "mqtt": False}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def new_report(url: str, clock: Clock, lon: float = 116.50, lat: float = 39.88) -> dict:
    with psycopg.connect(url) as conn:
        return store.create_report(
            conn,
            lon=lon,
            lat=lat,
            category="odour",
            description="Sweet chemical smell by the port gate",
            observed_at=None,
            contact=CONTACT,
            photo=None,
            received_at=clock(),
        )


def kinds(hook: object) -> list[tuple[str, str, int]]:
    return [
        (r.json()["kind"], r.json()["regulator"], r.json()["report"]["id"])
        for r in hook.requests  # type: ignore[attr-defined]
    ]


def test_reminder_then_escalation_once_each(database_url: str, tmp_path: Path) -> None:
    """New report → the office; 30 min before due → one reminder; past due → the parent once;
    later runs send nothing more. No message carries the reporter's contact."""
    with webhook_receiver(SECRET) as hook:
        load_registry(database_url, registry_with_webhooks(tmp_path, hook.url))
        clock = Clock()
        engine = Engine(Settings(database_url=database_url), clock)
        report = new_report(database_url, clock)
        rid = report["id"]
        assert engine.reports() == 1
        assert kinds(hook) == [("report_opened", PORT_OFFICE, rid)]
        for minutes, expected in (
            (20, []),
            (31, [("report_reminder", PORT_OFFICE, rid)]),
            (45, []),
            (61, [("report_escalation", CITY, rid)]),
            (600, []),
        ):
            before = len(hook.requests)
            clock.offset = timedelta(minutes=minutes)
            engine.reports()
            assert kinds(hook)[before:] == expected, minutes
        assert all(r.verified for r in hook.requests)
        assert all(CONTACT.encode() not in r.body for r in hook.requests)
        body = hook.requests[-1].json()
        assert body["report"]["url"].endswith(f"/reports/{report['tracking_code']}")
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "select escalated_to, reminded_at is not null from citizen_reports where id = %s",
                (rid,),
            ).fetchone()
            assert row == (CITY, True)
            sent = conn.execute(
                "select kind, count(*) from notifications where report_id = %s and status = 'sent'"
                " group by kind order by kind",
                (rid,),
            ).fetchall()
            assert sent == [("escalation", 1), ("opened", 1), ("reminder", 1)]


def test_answered_report_is_neither_reminded_nor_escalated(
    database_url: str, tmp_path: Path
) -> None:
    """A reply before the reminder stops the clock: no reminder, no escalation."""

    with webhook_receiver(SECRET) as hook:
        load_registry(database_url, registry_with_webhooks(tmp_path, hook.url))
        clock = Clock()
        engine = Engine(Settings(database_url=database_url), clock)
        report = new_report(database_url, clock)
        with psycopg.connect(database_url) as conn:
            store.reply(
                conn,
                report["id"],
                regulator_id=PORT_OFFICE,
                jurisdiction=(PORT_OFFICE,),
                body="Checked the gate: a tanker was venting; stopped.",
                status=Status.CONFIRMED,
                episode_id=None,
                at=clock() + timedelta(minutes=10),
            )
        clock.offset = timedelta(hours=5)
        engine.reports()
        assert [k for k, _, _ in kinds(hook)] == ["report_opened"]
