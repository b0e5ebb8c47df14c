"""Dead letters: regulators list them within their jurisdiction; fixed causes are replayed once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from ingest.batch import Message, handle_batch
from ingest.devices import DeviceDirectory
from registry.loader import load_registry
from store.auth import create_token, revoke_token
from store.schema import storage_mode
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY

TS = "2026-11-20T08:00:00Z"


def receive(database_url: str, device: str, payload: dict[str, object] | bytes) -> None:
    """Run one message through the ingest path (as the ingestor does) and commit."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with psycopg.connect(database_url) as conn:
        mode = storage_mode(conn)
        assert mode is not None
        with conn.transaction():
            handle_batch(
                conn,
                DeviceDirectory(min_reload_s=0),
                mode,
                [Message(f"sunlight/v1/devices/{device}/readings", raw)],
                datetime.now(UTC),
            )


def reading(pollutant: str = "pm25", unit: str = "ug/m3") -> dict[str, object]:
    return {"ts": TS, "readings": [{"pollutant": pollutant, "value": 12.0, "unit": unit}]}


def replay(database_url: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "sunlight", "dead-letters", "replay", *args],
        env={"SUNLIGHT_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def test_device_registered_later_is_replayed_once(database_url: str, tmp_path: Path) -> None:
    """Readings of an unregistered device are stored when it is registered and replayed, once."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    receive(database_url, "aqms-new", reading())
    receive(database_url, "aqms-new", reading() | {"ts": "2026-11-20T08:01:00Z"})
    assert "replayed 0 dead letter(s)" in replay(database_url)
    doc = yaml.safe_load(EXAMPLE_REGISTRY.read_text())
    doc["stations"][0]["devices"].append({"id": "aqms-new"})
    changed = tmp_path / "registry.yaml"
    changed.write_text(yaml.safe_dump(doc, allow_unicode=True))
    load_registry(database_url, changed)
    assert "replayed 2 dead letter(s), 2 reading(s) stored; 0 still rejected" in replay(
        database_url
    )
    assert "replayed 0 dead letter(s)" in replay(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from readings").fetchone() == (2,)
        assert conn.execute(
            "select count(*) from dead_letters where replayed_at is not null"
        ).fetchone() == (2,)


def test_replay_keeps_what_is_still_wrong(database_url: str) -> None:
    """A letter that still fails stays pending, with its current reason."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    receive(database_url, "aqms-lc-old-town", reading("pm25", "furlongs"))
    out = replay(database_url, "--reason", "bad_unit")
    assert "replayed 0 dead letter(s), 0 reading(s) stored; 1 still rejected" in out
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select reason, replayed_at from dead_letters").fetchone() == (
            "bad_unit",
            None,
        )


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    load_registry(database_url, EXAMPLE_REGISTRY)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def token_for(database_url: str, regulator: str) -> tuple[int, str]:
    with psycopg.connect(database_url) as conn:
        return create_token(conn, regulator, "inspector on duty")


def test_regulators_see_only_their_jurisdiction(api: TestClient, database_url: str) -> None:
    """A district office sees its districts' letters, the city its children's, the province all."""
    receive(database_url, "aqms-lc-old-town", b"{broken")  # Nanhe district
    receive(database_url, "aqms-lc-industrial-park", b"{broken")  # Gangkou district
    receive(database_url, "who-knows", reading())  # no such device: no district
    seen = {}
    for office in ("lc-eeb-nanhe", "lc-eeb-gangkou", "lc-eeb", "aurora-deeb"):
        _, token = token_for(database_url, office)
        r = api.get("/api/v1/regulator/dead-letters", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        seen[office] = sorted(x["device_id"] for x in r.json()["results"])
        assert r.json()["meta"]["found"] == len(seen[office])
    assert seen == {
        "lc-eeb-nanhe": ["aqms-lc-old-town"],
        "lc-eeb-gangkou": ["aqms-lc-industrial-park"],
        "lc-eeb": ["aqms-lc-industrial-park", "aqms-lc-old-town"],
        "aurora-deeb": ["aqms-lc-industrial-park", "aqms-lc-old-town", "who-knows"],
    }
    _, token = token_for(database_url, "lc-eeb")
    r = api.get(
        "/api/v1/regulator/dead-letters",
        params={"reason": "bad_json", "device": "aqms-lc-old-town"},
        headers={"Authorization": f"Bearer {token}"},
    )
    (letter,) = r.json()["results"]
    assert letter["payload_text"] == "{broken"
    assert letter["received_at"].endswith("Z")


def test_tokens_are_required_and_revocable(api: TestClient, database_url: str) -> None:
    """No token, a forged token or a revoked token gets 401 problem+json; secrets are hashed."""
    token_id, token = token_for(database_url, "lc-eeb")
    for header in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": token[:-2] + "xx"},
        {"Authorization": f"Bearer {token[:-2]}xx"},
        {"Authorization": "Bearer slt_99999_abc"},
    ):
        r = api.get("/api/v1/regulator/dead-letters", headers=header)
        assert r.status_code == 401, header
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (
        api.get(
            "/api/v1/regulator/dead-letters", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("select secret_sha256 from regulator_tokens").fetchone()[0]  # type: ignore[index]
        assert token.split("_", 2)[2].encode() not in bytes(stored)
        assert revoke_token(conn, token_id)
    assert (
        api.get(
            "/api/v1/regulator/dead-letters", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )


def test_frame_from_an_unregistered_logger_is_replayed_after_registration(
    database_url: str, tmp_path: Path
) -> None:
    """A frame the TCP gateway refused for an unknown MN is stored once that MN is registered."""
    from domain.hj212 import CpData, Frame, build_frame, make_flag
    from ingest.gateway import GATEWAY_TOPIC
    from store.dead_letters import DeadLetter, write_dead_letters

    load_registry(database_url, EXAMPLE_REGISTRY)
    frame = Frame(
        qn="20261120160000000",
        st="31",
        cn="2051",
        pw="123456",
        mn="NEWLOGGER0001",
        flag=make_flag(reply=False),
        cp=CpData(data_time="20261120160000", pollutants={"a21026": {"Avg": "12.0", "Flag": "N"}}),
    )
    with psycopg.connect(database_url) as conn:
        write_dead_letters(
            conn, [DeadLetter(GATEWAY_TOPIC, None, "unknown_mn", "no device", build_frame(frame))]
        )
    assert "0 reading(s) stored; 1 still rejected" in replay(database_url)
    doc = yaml.safe_load(EXAMPLE_REGISTRY.read_text())
    doc["enterprises"][0]["outlets"][0]["devices"].append(
        {"id": "cems-new-logger", "mn": "NEWLOGGER0001", "hj212_password": "123456"}
    )
    changed = tmp_path / "registry.yaml"
    changed.write_text(yaml.safe_dump(doc, allow_unicode=True))
    load_registry(database_url, changed)
    assert "replayed 1 dead letter(s), 1 reading(s) stored" in replay(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select pollutant, value, time from readings").fetchone() == (
            "so2",
            12.0,
            datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        )
