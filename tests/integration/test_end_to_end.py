"""A reading's whole path on real parts: MQTT client → broker → ingest → PostgreSQL → HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from registry.broker_auth import INGEST, SIMULATOR
from registry.loader import load_registry
from sunlight.brokers import free_port, port_open, wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.processes import sunlight_process
from tests.servers import SecuredBroker


def publish(broker: SecuredBroker, messages: list[tuple[str, bytes]]) -> None:
    """Publish with QoS 1 and wait until the broker acknowledged every message."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-device")
    client.username_pw_set(*broker.login(SIMULATOR))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def services(database_url: str, broker: SecuredBroker, tmp_path: Path) -> Iterator[str]:
    """Ingest and API processes against the test database and broker; yields the API base URL."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    port = free_port()
    env = {
        "SUNLIGHT_DATABASE_URL": database_url,
        **broker.env(INGEST),
        "SUNLIGHT_MQTT_CLIENT_ID": f"ingest-{port}",
        "SUNLIGHT_API_PORT": str(port),
        "SUNLIGHT_INGEST_BATCH_MS": "50",
        # These tests poll until data shows; the API's reuse of a series for up to a minute
        # (tested in tests/api) would only make them wait.
        "SUNLIGHT_API_CACHE_SECONDS": "0",
    }
    with (
        sunlight_process(["ingest"], env, tmp_path / "ingest.log") as ingest,
        sunlight_process(["api"], env, tmp_path / "api.log") as api,
    ):
        wait_until(lambda: port_open(port) or api.poll() is not None, 30, "the API to listen")
        assert api.poll() is None, (tmp_path / "api.log").read_text()
        # The ingestor is subscribed once its session shows on the broker; probe by round trip.
        wait_until(
            lambda: (
                "subscribed to" in (tmp_path / "ingest.log").read_text()
                or ingest.poll() is not None
            ),
            30,
            "ingest to subscribe",
        )
        assert ingest.poll() is None, (tmp_path / "ingest.log").read_text()
        yield f"http://127.0.0.1:{port}"


def test_published_readings_come_back_through_the_api(
    services: str, broker: SecuredBroker, database_url: str
) -> None:
    """JSON readings published over MQTT are served by the API: latest values and series."""
    ts = (datetime.now(UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)
    stamp = ts.isoformat().replace("+00:00", "Z")
    with psycopg.connect(database_url) as conn:
        station_device, station_id = conn.execute(
            "select d.id, d.site_id from devices d join stations s on s.id = d.site_id order by d.id limit 1"
        ).fetchone()  # type: ignore[misc]
    payload = {
        "ts": stamp,
        "readings": [
            {"pollutant": "pm25", "value": 41.5, "unit": "µg/m³", "flag": "N"},
            {"pollutant": "no2", "value": 0.052, "unit": "mg/m3", "flag": "N"},
        ],
    }
    publish(
        broker,
        [
            (f"sunlight/v1/devices/{station_device}/readings", json.dumps(payload).encode()),
            ("sunlight/v1/devices/no-such-device/readings", json.dumps(payload).encode()),
            (f"sunlight/v1/devices/{station_device}/readings", b"{broken"),
        ],
    )

    def station_latest() -> dict[str, dict[str, object]]:
        doc = httpx.get(f"{services}/api/v1/stations", timeout=5).json()
        feature = next(f for f in doc["features"] if f["id"] == station_id)
        return feature["properties"]["latest"]  # type: ignore[no-any-return]

    wait_until(lambda: "pm25" in station_latest(), 20, "the reading to reach the API")
    latest = station_latest()
    assert latest["pm25"] == {
        "value": 41.5,
        "unit": "ug/m3",
        "flag": "N",
        "time": stamp,
        "period": "minute",
    }
    assert latest["no2"]["value"] == pytest.approx(52.0)

    series = httpx.get(
        f"{services}/api/v1/sites/{station_id}/readings", params={"pollutant": "pm25"}
    ).json()
    assert series["count"] == 1
    assert series["data"][0] == {
        "time": stamp,
        "value": 41.5,
        "unit": "ug/m3",
        "flag": "N",
        "period": "minute",
    }
    hourly = httpx.get(
        f"{services}/api/v1/sites/{station_id}/readings",
        params={"pollutant": "pm25", "interval": "hour"},
    ).json()
    assert hourly["data"][0]["mean"] == 41.5
    assert hourly["data"][0]["n_valid"] == 1

    def dead_letters() -> list[tuple[str, str | None]]:
        with psycopg.connect(database_url) as conn:
            return conn.execute("select reason, device_id from dead_letters order by id").fetchall()

    wait_until(lambda: len(dead_letters()) == 2, 10, "two dead letters")
    assert sorted(dead_letters()) == [
        ("bad_json", station_device),
        ("unknown_device", "no-such-device"),
    ]


def test_api_errors_are_problem_json(services: str) -> None:
    """Bad parameters get a 4xx problem+json naming the problem, never a 500."""
    cases = [
        ("/api/v1/sites/nowhere/readings", {"pollutant": "so2"}, 404),
        ("/api/v1/sites/x/readings", {"pollutant": "kryptonite"}, 422),
        ("/api/v1/sites/x/readings", {}, 422),
        ("/api/v1/sites/x/readings", {"pollutant": "so2", "start": "yesterday"}, 422),
        ("/api/v1/sites/x/readings", {"pollutant": "so2", "start": "2026-01-01T00:00:00"}, 422),
        ("/api/v1/sites/x/readings", {"pollutant": "so2", "interval": "fortnight"}, 422),
        (
            "/api/v1/sites/x/readings",
            {"pollutant": "so2", "start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            422,
        ),
        ("/api/v1/sites/x/readings", {"pollutant": "so2", "limit": "-1"}, 422),
        ("/api/v1/sites/x'; drop table readings;--/readings", {"pollutant": "so2"}, 404),
    ]
    for path, params, status in cases:
        r = httpx.get(services + path, params=params, timeout=5)
        assert r.status_code == status, (path, params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"]


def test_health_and_openapi(services: str) -> None:
    """The health check reports the storage path; the OpenAPI schema documents the endpoints."""
    health = httpx.get(f"{services}/healthz").json()
    assert health["status"] == "ok"
    assert health["storage"] in ("postgres", "timescaledb")
    paths = httpx.get(f"{services}/openapi.json").json()["paths"]
    assert {
        "/api/v1/stations",
        "/api/v1/enterprises",
        "/api/v1/sites/{site_id}/readings",
        "/map",
    } <= set(paths)


def test_map_is_served_with_local_assets_only(services: str, database_url: str) -> None:
    """/map renders the registry's sites and every script/style it loads is served by Sunlight."""
    import re

    for lang in ("en", "zh"):
        page = httpx.get(f"{services}/map", params={"lang": lang}, timeout=30)
        assert page.status_code == 200
        assets = re.findall(r'<(?:script[^>]*src|link[^>]*href)="([^"]+)"', page.text)
        assert assets, "the map loads Leaflet"
        for url in assets:
            assert url.startswith("/static/"), url
            assert httpx.get(services + url).status_code == 200, url
        assert "http://" not in page.text and "https://" not in page.text
    with psycopg.connect(database_url) as conn:
        ids = [
            r[0] for r in conn.execute("select id from stations union all select id from outlets")
        ]
    missing = [i for i in ids if i not in page.text]
    assert not missing, f"sites missing from the map: {missing}"
    assert httpx.get(f"{services}/map", params={"lang": "fr"}).status_code == 422


def test_day_of_backfill_lands_in_the_right_hours(
    services: str, broker: SecuredBroker, database_url: str
) -> None:
    """A device back-fills a day in one batch message; every hour gets its 60 minutes, and a
    later correction of one old minute recomputes that hour's mean."""
    with psycopg.connect(database_url) as conn:
        device, site = conn.execute(
            "select d.id, d.site_id from devices d join outlets o on o.id = d.site_id"
            " where o.kind = 'gas' order by d.id limit 1"
        ).fetchone()  # type: ignore[misc]
    day = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)

    def entry(minute: int, value: float) -> dict[str, object]:
        ts = (day + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
        return {"ts": ts, "readings": [{"pollutant": "so2", "value": value, "unit": "mg/m3"}]}

    batch = {"period": "minute", "batch": [entry(m, 20.0 + (m // 60)) for m in range(1440)]}
    publish(broker, [(f"sunlight/v1/devices/{device}/readings", json.dumps(batch).encode())])
    params = {
        "pollutant": "so2",
        "interval": "hour",
        "start": day.isoformat(),
        "end": (day + timedelta(days=1)).isoformat(),
    }

    def hours() -> list[dict[str, object]]:
        return httpx.get(f"{services}/api/v1/sites/{site}/readings", params=params).json()["data"]  # type: ignore[no-any-return]

    wait_until(lambda: len(hours()) == 24, 20, "24 hourly means")
    assert [(h["n_valid"], h["mean"]) for h in hours()] == [(60, 20.0 + h) for h in range(24)]
    publish(
        broker,
        [(f"sunlight/v1/devices/{device}/readings", json.dumps(entry(5 * 60, 80.0)).encode())],
    )
    wait_until(lambda: hours()[5]["mean"] != 25.0, 20, "the corrected hour")
    assert hours()[5]["mean"] == pytest.approx(25.0 + 55.0 / 60)
