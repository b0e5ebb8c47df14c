"""Issue scenario, on real parts: a power plant's SO2 (corrected to 6 % O2) over 35 mg/m³ for
three hours becomes one episode, one webhook and one e-mail to the district office, a reminder,
an escalation to the city office, and a public record; an hour of 40 valid minutes is invalid."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient

from alerts.service import floor_hour, run_alerts
from api.app import create_app
from registry.broker_auth import ALERTS, INGEST, BrokerAuth
from registry.loader import load_registry
from store.auth import create_token
from sunlight.brokers import free_port, wait_until
from sunlight.settings import Settings
from tests.alerts.loopback import READER, regulator_broker, smtp_server, subscribe, webhook_receiver
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.test_end_to_end import publish
from tests.processes import sunlight_process
from tests.servers import SecuredBroker

OUTLET, DEVICE, DISTRICT_OFFICE, CITY_OFFICE = (
    "lc-tpn-u1",
    "cems-lc-tpn-u1",
    "lc-eeb-dongshan",
    "lc-eeb",
)
SECRET = "s3cret-s3cret-s3cret"


class Clock:
    """The engine's clock: real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def registry_with_channels(tmp_path: Path, hook_url: str) -> Path:
    doc = yaml.safe_load(EXAMPLE_REGISTRY.read_text())
    for reg in doc["regulators"]:
        if reg["id"] == DISTRICT_OFFICE:
            reg["notify"] = {
                "webhook_url": hook_url,
                "webhook_secret": SECRET,
                "email": ["duty@dongshan.example"],
                "mqtt": True,
            }
        if reg["id"] == CITY_OFFICE:
            reg["notify"] = {"webhook_url": hook_url, "webhook_secret": SECRET, "mqtt": False}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def minutes_batch(base: datetime) -> bytes:
    """Four hours of minute data: three hours of SO2 30 mg/m³ at 9 % O2 (37.5 at 6 %), then an
    hour whose last 20 minutes are calibration (40 valid minutes)."""
    entries = []
    for m in range(240):
        flag = "C" if m >= 220 else "N"
        ts = (base + timedelta(minutes=m)).isoformat().replace("+00:00", "Z")
        entries.append(
            {
                "ts": ts,
                "readings": [
                    {
                        "pollutant": "so2",
                        "value": 30.0 if m < 180 else 60.0,
                        "unit": "mg/m3",
                        "flag": flag,
                    },
                    {"pollutant": "o2", "value": 9.0, "unit": "%", "flag": "N"},
                ],
            }
        )
    return json.dumps({"period": "minute", "batch": entries}).encode()


@pytest.fixture
def stored_minutes(database_url: str, broker: SecuredBroker, tmp_path: Path) -> datetime:
    """The minute data published over MQTT and stored by a real ingestor; yields the first hour."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    base = floor_hour(datetime.now(UTC)) - timedelta(hours=5)
    env = {
        "SUNLIGHT_DATABASE_URL": database_url,
        **broker.env(INGEST),
        "SUNLIGHT_MQTT_CLIENT_ID": f"ingest-alerts-{free_port()}",
        "SUNLIGHT_INGEST_BATCH_MS": "50",
    }
    log = tmp_path / "ingest.log"
    with sunlight_process(["ingest"], env, log) as proc:
        wait_until(
            lambda: "subscribed to" in log.read_text() or proc.poll() is not None, 30, "ingest"
        )
        publish(broker, [(f"sunlight/v1/devices/{DEVICE}/readings", minutes_batch(base))])

        def count() -> int:
            with psycopg.connect(database_url) as conn:
                return conn.execute("select count(*) from readings").fetchone()[0]  # type: ignore[index,no-any-return]

        wait_until(lambda: count() == 480, 30, "480 readings stored")
    return base


def test_power_plant_scenario(
    database_url: str, stored_minutes: datetime, broker_auth: BrokerAuth, tmp_path: Path
) -> None:
    """From minute data to episode, notifications, reminder, escalation and public record."""
    base = stored_minutes
    with (
        webhook_receiver(SECRET) as hook,
        smtp_server() as (inbox, smtp_port),
        regulator_broker(broker_auth) as (regulator_mqtt, reader_password),
        subscribe(
            regulator_mqtt.port, READER, reader_password, "sunlight/v1/regulators/#"
        ) as mqtt_in,
    ):
        load_registry(database_url, registry_with_channels(tmp_path, hook.url))
        settings = Settings(
            database_url=database_url,
            mqtt_url=regulator_mqtt.url,
            mqtt_credentials_file=broker_auth.credentials_file,
            mqtt_account=ALERTS,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            alerts_backfill_hours=6,
            alerts_gap_minutes=100_000,
            alerts_reminder_minutes=60,
            public_base_url="http://sunlight.example",
        )
        clock = Clock()
        stop = threading.Event()
        alerts = threading.Thread(
            target=run_alerts,
            args=(settings,),
            kwargs={"stop_event": stop, "clock": clock, "interval_s": 0.3},
        )
        alerts.start()
        try:

            def hook_kinds() -> list[str]:
                return [r.json()["kind"] for r in hook.requests]

            wait_until(
                lambda: (
                    hook_kinds() == ["opened"] and len(inbox.messages) == 1 and len(mqtt_in) == 1
                ),
                30,
                "one webhook, one e-mail, one MQTT message",
            )
            with psycopg.connect(database_url) as conn:
                verdicts = conn.execute(
                    "select start, verdict, valid_count, round(mean::numeric, 3) from judgements"
                    " where site_id = %s and pollutant = 'so2' and start >= %s order by start limit 4",
                    (OUTLET, base),
                ).fetchall()
                (episode,) = conn.execute(
                    "select id, regulator_id, hours, round(max_mean::numeric, 3), status, first_start"
                    " from episodes where kind = 'exceedance'"
                ).fetchall()
            assert [(v[1], v[2]) for v in verdicts] == [("exceedance", 60)] * 3 + [("invalid", 40)]
            assert [float(v[3]) for v in verdicts[:3]] == [37.5] * 3
            assert verdicts[3][3] is None  # an invalid hour is never averaged
            episode_id = episode[0]
            assert episode[1:5] == (DISTRICT_OFFICE, 3, 37.5, "notified")
            assert episode[5] == base
            opened = hook.requests[0]
            assert opened.verified
            assert opened.json()["episode"]["id"] == episode_id
            assert opened.headers["Idempotency-Key"] == str(opened.json()["id"])
            (_, rcpt, mail) = inbox.messages[0]
            assert rcpt == ["duty@dongshan.example"]
            assert f"episode {episode_id}" in mail["Subject"]
            assert mqtt_in[0][0] == f"sunlight/v1/regulators/{DISTRICT_OFFICE}/alerts"

            clock.offset = timedelta(minutes=61)  # nobody acknowledged: a reminder
            wait_until(lambda: "reminder" in hook_kinds(), 30, "a reminder")
            clock.offset = timedelta(minutes=121)  # past the 2 h deadline: the city is told
            wait_until(lambda: "escalation" in hook_kinds(), 30, "an escalation")
            escalation = next(r.json() for r in hook.requests if r.json()["kind"] == "escalation")
            assert escalation["regulator"] == CITY_OFFICE
            assert hook_kinds().count("opened") == 1
        finally:
            stop.set()
            alerts.join(30)

    with psycopg.connect(database_url) as conn:
        _, token = create_token(conn, DISTRICT_OFFICE, "inspector")
    with TestClient(create_app(Settings(database_url=database_url))) as api:
        r = api.post(
            f"/api/v1/regulator/episodes/{episode_id}/acknowledge",
            json={"note": "Inspector dispatched to the plant."},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        record = api.get(f"/api/v1/episodes/{episode_id}").json()
    assert record["status"] == "acknowledged"
    assert record["escalated_to"] == CITY_OFFICE
    assert record["seconds_to_acknowledge"] > 0
    kinds = [e["kind"] for e in record["timeline"]]
    for expected in ("opened", "notified", "escalated", "acknowledged"):
        assert expected in kinds, kinds
    ack = next(e for e in record["timeline"] if e["kind"] == "acknowledged")
    assert ack["note"] == "Inspector dispatched to the plant."
    assert ack["regulator_id"] == DISTRICT_OFFICE
    assert "inspector" not in json.dumps(record)  # the office is public, its staff are not
