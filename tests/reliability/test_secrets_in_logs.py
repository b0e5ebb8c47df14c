"""Secrets never reach the logs of the real service processes: the database password in its
URL, broker passwords, regulator and subscription tokens, webhook secrets and the SMTP
password, through normal work and failures alike, at DEBUG level."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from alerts.service import floor_hour
from domain.hj212 import build_frame
from registry.broker_auth import GATEWAY, INGEST, load_credentials
from registry.loader import load_registry
from store.auth import create_token
from sunlight.brokers import free_port, port_open, wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.test_end_to_end import publish
from tests.integration.test_hj212 import minute_frame
from tests.processes import sunlight_process
from tests.readings import write_minutes
from tests.reliability.gateway import exchange
from tests.servers import SecuredBroker


@pytest.mark.timeout(120)
def test_no_secret_in_any_service_log(
    database_url: str, broker: SecuredBroker, tmp_path: Path
) -> None:
    """Ingest, gateway, alerts and API run at DEBUG through good and bad input and failing
    channels; none of the secrets they hold or are shown appears in their output."""
    db_password = "dbpw-" + secrets.token_hex(8)
    url = database_url.replace("postgres@", f"postgres:{db_password}@")  # trust auth ignores it
    webhook_secret = "whsec-" + secrets.token_hex(8)
    smtp_password = "smtppw-" + secrets.token_hex(8)
    doc = yaml.safe_load(EXAMPLE_REGISTRY.read_text())
    dead_port = free_port()  # nothing listens: every delivery fails and is logged
    for reg in doc["regulators"]:
        reg["notify"] = {
            "webhook_url": f"http://127.0.0.1:{dead_port}/hook",
            "webhook_secret": webhook_secret,
            "email": ["duty@example.org"],
            "mqtt": False,
        }
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(doc, allow_unicode=True))
    load_registry(database_url, registry)
    start = floor_hour(datetime.now(UTC)) - timedelta(hours=2)
    write_minutes(
        database_url,
        "cems-lc-tpn-u1",
        start,
        {"so2": (900.0, "mg/m3"), "o2": (6.0, "%")},
        minutes=120,
    )
    with psycopg.connect(database_url) as conn:
        _, token = create_token(conn, "lc-eeb", "log test")
    api_port, gateway_port = free_port(), free_port()
    common = {
        "SUNLIGHT_DATABASE_URL": url,
        "SUNLIGHT_LOG_LEVEL": "DEBUG",
        "SUNLIGHT_SMTP_HOST": "127.0.0.1",
        "SUNLIGHT_SMTP_PORT": str(dead_port),
        "SUNLIGHT_SMTP_USERNAME": "alerts",
        "SUNLIGHT_SMTP_PASSWORD": smtp_password,
        "SUNLIGHT_API_PORT": str(api_port),
        "SUNLIGHT_GATEWAY_PORT": str(gateway_port),
        "SUNLIGHT_ALERTS_BACKFILL_HOURS": "3",
        "SUNLIGHT_ALERTS_GAP_MINUTES": "100000",
        "SUNLIGHT_INGEST_BATCH_MS": "50",
        "SUNLIGHT_MQTT_CLIENT_ID": f"logs-{api_port}",
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("ingest", "gateway", "alerts", "api")}
    with (
        sunlight_process(["ingest"], {**common, **broker.env(INGEST)}, logs["ingest"]),
        sunlight_process(["hj212-gateway"], {**common, **broker.env(GATEWAY)}, logs["gateway"]),
        sunlight_process(["alerts", "--interval", "1"], common, logs["alerts"]),
        sunlight_process(["api"], common, logs["api"]),
    ):
        wait_until(lambda: "subscribed to" in logs["ingest"].read_text(), 30, "ingest")
        wait_until(lambda: port_open(gateway_port), 30, "gateway")
        wait_until(lambda: port_open(api_port), 30, "api")
        topic = "sunlight/v1/devices/cems-lc-tpn-u1/readings"
        ts = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
        good = {"ts": ts, "readings": [{"pollutant": "so2", "value": 1.0, "unit": "mg/m3"}]}
        publish(broker, [(topic, json.dumps(good).encode()), (topic, b"{broken")])
        exchange(gateway_port, build_frame(minute_frame(reply=True)))
        exchange(gateway_port, build_frame(minute_frame(pw="999999", reply=True)))
        base = f"http://127.0.0.1:{api_port}"
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/v1/regulator/episodes", headers=bearer).status_code == 200
        forged = token[:-4] + "AAAA"
        r = httpx.get(
            f"{base}/api/v1/regulator/episodes", headers={"Authorization": f"Bearer {forged}"}
        )
        assert r.status_code == 401
        link_token = secrets.token_urlsafe(32)
        httpx.get(f"{base}/api/v1/subscriptions/confirm", params={"token": link_token})
        httpx.get(f"{base}/api/v1/subscriptions/unsubscribe", params={"token": link_token})
        wait_until(
            lambda: (
                "failed" in logs["alerts"].read_text()
                and logs["alerts"].read_text().count("attempt 1 failed") >= 2
            ),
            60,
            "webhook and e-mail deliveries to fail and be logged",
        )
        wait_until(
            lambda: "dead letter" in logs["ingest"].read_text() or _dead(database_url) >= 2,
            30,
            "rejects",
        )
    broker_passwords = list(load_credentials(broker.auth.credentials_file).values())
    leaks = {
        "database password": db_password,
        "webhook secret": webhook_secret,
        "SMTP password": smtp_password,
        "regulator token": token.split("_", 2)[2],
        "forged token": forged.split("_", 2)[2],
        "subscription link token": link_token,
        **{f"broker password {i}": p for i, p in enumerate(broker_passwords)},
    }
    found = [
        f"{what} in {name}.log"
        for name, log in logs.items()
        for what, secret in leaks.items()
        if secret in log.read_text(errors="replace")
    ]
    sizes = {name: len(log.read_text().splitlines()) for name, log in logs.items()}
    print(f"secrets in logs: {len(leaks)} secrets checked in {sizes} log lines; found {found}")
    assert not found


def _dead(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from dead_letters").fetchone()
    return int(row[0]) if row else 0
