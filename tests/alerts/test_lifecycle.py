"""Episode lifecycle on a real database: gaps, silences, reopening, jurisdiction, audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.service import Engine
from api.app import create_app
from registry.loader import load_registry
from store.auth import create_token
from sunlight.settings import Settings
from tests.alerts.test_scenario import Clock
from tests.conftest import EXAMPLE_REGISTRY
from tests.readings import write_minutes as write_readings_of

OUTLET, DEVICE, OFFICE = "lc-tpn-u1", "cems-lc-tpn-u1", "lc-eeb-dongshan"


def write_minutes(url: str, start: datetime, minutes: int, so2: float, o2: float = 6.0) -> None:
    write_readings_of(url, DEVICE, start, {"so2": (so2, "mg/m3"), "o2": (o2, "%")}, minutes)


def episodes(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select kind, site_id, status, hours, reopened from episodes order by id"
        ).fetchall()


@pytest.fixture
def engine(database_url: str) -> Engine:
    load_registry(database_url, EXAMPLE_REGISTRY)
    return Engine(
        Settings(database_url=database_url, alerts_backfill_hours=4, alerts_gap_minutes=60), Clock()
    )


def hour_ago(hours: int) -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)


def test_silent_monitor_is_a_gap_episode(engine: Engine, database_url: str) -> None:
    """A monitor that reported, then fell silent for over an hour, opens one gap episode; a
    back-fill arriving now is sending, not silence."""
    write_minutes(database_url, hour_ago(3), 60, 10.0)
    assert engine.gaps() == 0  # the minutes are old, but they just arrived
    engine.clock.offset = timedelta(hours=2, minutes=30)  # type: ignore[attr-defined]
    assert engine.gaps() == 1
    assert engine.gaps() == 0  # one episode, not one per check
    assert episodes(database_url) == [("gap", OUTLET, "open", 2, 0)]


def test_silenced_outlet_opens_no_episode(engine: Engine, database_url: str) -> None:
    """A planned shutdown registered in advance suppresses episodes while it lasts."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "insert into silences (site_id, starts_at, ends_at, reason, created_by)"
            " values (%s, %s, %s, 'annual overhaul', %s)",
            (OUTLET, hour_ago(6), hour_ago(-2), OFFICE),
        )
    write_minutes(database_url, hour_ago(3), 60, 90.0)
    engine.judge_hours()
    assert episodes(database_url) == []
    with psycopg.connect(database_url) as conn:
        verdict = conn.execute(
            "select verdict from judgements where site_id = %s and pollutant = 'so2' and start = %s",
            (OUTLET, hour_ago(3)),
        ).fetchone()
    assert verdict == ("exceedance",)  # still on the record


def test_recurrence_soon_after_resolution_reopens(engine: Engine, database_url: str) -> None:
    """An exceedance within the reopen window after resolution reopens the episode."""
    write_minutes(database_url, hour_ago(4), 60, 90.0)
    engine.judge_hours()
    assert episodes(database_url) == [("exceedance", OUTLET, "open", 1, 0)]
    with psycopg.connect(database_url) as conn:
        (episode_id,) = conn.execute("select id from episodes").fetchone()  # type: ignore[misc]
        conn.execute(
            "update episodes set status = 'resolved', resolved_at = now() where id = %s",
            (episode_id,),
        )
    write_minutes(database_url, hour_ago(2), 60, 90.0)
    engine.judge_hours()  # the late hour is re-judged from the queue
    assert episodes(database_url) == [("exceedance", OUTLET, "open", 2, 1)]


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def test_offices_act_only_within_jurisdiction(
    engine: Engine, database_url: str, api: TestClient
) -> None:
    """Another district's office gets 403; the office in charge acknowledges, notes, resolves;
    every action lands in an audit log nobody can edit."""
    write_minutes(database_url, hour_ago(3), 60, 90.0)
    engine.judge_hours()
    with psycopg.connect(database_url) as conn:
        (episode_id,) = conn.execute("select id from episodes").fetchone()  # type: ignore[misc]
        _, other = create_token(conn, "lc-eeb-nanhe", "someone")
        _, mine = create_token(conn, OFFICE, "duty")
    base = f"/api/v1/regulator/episodes/{episode_id}"
    r = api.post(f"{base}/acknowledge", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    auth = {"Authorization": f"Bearer {mine}"}
    assert api.post(f"{base}/acknowledge", headers=auth).status_code == 200
    assert (
        api.post(f"{base}/notes", json={"note": "Sampling ordered."}, headers=auth).status_code
        == 200
    )
    assert (
        api.post(
            f"{base}/resolve", json={"action": "Fined; scrubber repaired."}, headers=auth
        ).status_code
        == 200
    )
    assert api.post(f"{base}/resolve", json={"action": "again"}, headers=auth).status_code == 409
    assert api.post(f"{base}/notes", json={"note": ""}, headers=auth).status_code == 422
    assert (
        api.post("/api/v1/regulator/episodes/999999/acknowledge", headers=auth).status_code == 404
    )
    mine_list = api.get("/api/v1/regulator/episodes", headers=auth).json()
    assert [e["id"] for e in mine_list["results"]] == [episode_id]
    record = api.get(f"/api/v1/episodes/{episode_id}").json()
    assert record["status"] == "resolved"
    assert record["resolution"] == "Fined; scrubber repaired."
    with psycopg.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("update episode_events set note = 'rewritten'")
        conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("delete from episode_events")


def test_silences_are_registered_in_advance_within_jurisdiction(
    engine: Engine, database_url: str, api: TestClient
) -> None:
    """A silence must start in the future, end after it starts, and concern one's own outlet."""
    with psycopg.connect(database_url) as conn:
        _, mine = create_token(conn, OFFICE, "duty")
        _, other = create_token(conn, "lc-eeb-nanhe", "someone")
    start = datetime.now(UTC) + timedelta(days=1)
    body = {
        "site_id": OUTLET,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=2)).isoformat(),
        "reason": "annual overhaul",
    }
    assert (
        api.post(
            "/api/v1/regulator/silences", json=body, headers={"Authorization": f"Bearer {other}"}
        ).status_code
        == 403
    )
    r = api.post(
        "/api/v1/regulator/silences", json=body, headers={"Authorization": f"Bearer {mine}"}
    )
    assert r.status_code == 201, r.text
    past = {**body, "starts_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
    assert (
        api.post(
            "/api/v1/regulator/silences", json=past, headers={"Authorization": f"Bearer {mine}"}
        ).status_code
        == 422
    )
    naive = {**body, "starts_at": "2030-01-01T00:00:00"}
    assert (
        api.post(
            "/api/v1/regulator/silences", json=naive, headers={"Authorization": f"Bearer {mine}"}
        ).status_code
        == 422
    )
