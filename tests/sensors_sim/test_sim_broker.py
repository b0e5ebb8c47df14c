"""The simulator against a real Mosquitto: every device's messages arrive, then it disconnects."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion

from registry.model import Registry, read_registry_file
from sensors_sim.publisher import PublishError
from sensors_sim.simulator import RunStats, run
from sunlight.brokers import MosquittoServer, free_port, mosquitto_binary, wait_until
from sunlight.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registry.yaml"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Broker:
    """A running test broker: its port and the file it logs to."""

    port: int
    log: Path


@pytest.fixture
def sim_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto of this test's own that logs connections; stopped afterwards."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    server = MosquittoServer(tmp_path, free_port(), persistence=False, extra_config="log_type all")
    server.start()
    try:
        yield Broker(server.port, tmp_path / "mosquitto.log")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The example registry."""
    return read_registry_file(EXAMPLE)


class Collector:
    """A subscriber that records every readings message it receives."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="test-sub")
        self.client.on_connect = lambda c, *_: c.subscribe("sunlight/v1/devices/+/readings", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def device_ids(self) -> set[str]:
        with self.lock:
            return {topic.split("/")[3] for topic, _ in self.messages}

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_every_device_publishes_through_mosquitto(sim_broker: Broker, registry: Registry) -> None:
    """A 2 s run at 3600x delivers messages from every registry device, all acknowledged."""
    collector = Collector(sim_broker.port)
    try:
        wait_until(collector.subscribed.is_set, 10, "the subscription")
        settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{sim_broker.port}")
        result: list[RunStats] = []
        worker = threading.Thread(
            target=lambda: result.append(
                run(
                    settings,
                    registry,
                    start=START,
                    realtime_limit=False,
                    speedup=3600,
                    duration_s=2.0,
                )
            )
        )
        worker.start()
        expected = {d.id for d, _, _ in registry.devices()}
        wait_until(lambda: collector.device_ids() >= expected, 15, "a message from every device")
        worker.join(timeout=15)
        assert not worker.is_alive()
        (stats,) = result
        assert stats.steps >= 60  # two simulated hours of minutes
        wait_until(lambda: collector.count() >= stats.messages, 10, "every published message")
        assert collector.count() == stats.messages
        for _, body in collector.messages:
            assert body["ts"].endswith("Z")
            assert body["period"] == "minute"
            assert body["readings"]
    finally:
        collector.close()


def test_stop_event_disconnects_cleanly(sim_broker: Broker, registry: Registry) -> None:
    """Stopping an unbounded run ends it with an MQTT DISCONNECT, as the broker logs."""
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{sim_broker.port}")
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    stats = run(
        settings,
        registry,
        start=START,
        realtime_limit=False,
        speedup=600,
        stop_event=stop,
        client_id="sim-x",
    )
    timer.join()
    assert stats.messages > 0
    wait_until(
        lambda: "Client sim-x disconnected" in sim_broker.log.read_text(),
        5,
        "the broker's log line",
    )


def test_unreachable_broker_is_a_publish_error(registry: Registry) -> None:
    """Nothing listening on the port: run raises PublishError at once instead of hanging."""
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(PublishError, match="cannot reach"):
        run(settings, registry, duration_s=1.0)
