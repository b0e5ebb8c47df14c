"""Two ingestors on one MQTT shared subscription split the stream; each message is stored once."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from registry.broker_auth import INGEST, SIMULATOR
from registry.loader import load_registry
from sunlight.brokers import free_port, port_open, wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.streams import Stream, assert_exactly_once, gas_devices, stored_readings
from tests.processes import sunlight_process
from tests.servers import SecuredBroker


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_two_ingestors_share_the_load(
    database_url: str, broker: SecuredBroker, tmp_path: Path
) -> None:
    """With $share/ingest/…, both ingestors receive part of the stream; the sum is stored once."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    stream = Stream(
        broker.port, broker.login(SIMULATOR), gas_devices(database_url), count=2000, rate=2000
    )
    ports = [free_port(), free_port()]
    envs = [
        {
            "SUNLIGHT_DATABASE_URL": database_url,
            **broker.env(INGEST),
            "SUNLIGHT_MQTT_CLIENT_ID": f"ingest-share-{i}-{broker.port}",
            "SUNLIGHT_MQTT_SHARED_GROUP": "ingest",
            "SUNLIGHT_METRICS_PORT": str(port),
            "SUNLIGHT_INGEST_BATCH_MS": "50",
        }
        for i, port in enumerate(ports)
    ]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with (
        sunlight_process(["ingest"], envs[0], logs[0]),
        sunlight_process(["ingest"], envs[1], logs[1]),
    ):
        for log, port in zip(logs, ports, strict=True):
            wait_until(
                lambda log=log: "subscribed to $share/ingest/" in log.read_text(),
                30,
                "subscription",
            )
            wait_until(lambda port=port: port_open(port), 10, "metrics endpoint")
        stream.start_thread()
        wait_until(stream.done.is_set, 60, "the stream to finish")
        wait_until(
            lambda: stored_readings(database_url) >= stream.expected_readings, 60, "all stored"
        )
        received = [metric(p, "sunlight_ingest_messages_received_total") for p in ports]
        stored = [metric(p, "sunlight_ingest_readings_stored_total") for p in ports]
        connected = [metric(p, "sunlight_ingest_broker_connected") for p in ports]
    print(f"messages received per ingestor: {received}")
    assert all(r > 0 for r in received), received
    assert sum(received) == stream.count
    assert sum(stored) == stream.expected_readings
    assert connected == [1.0, 1.0]
    assert_exactly_once(database_url, stream)
