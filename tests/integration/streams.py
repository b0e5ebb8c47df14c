"""A steady stream of device messages from a real MQTT client, and the check that every reading
in it was stored exactly once."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from sunlight.brokers import wait_until

POLLUTANTS = (("so2", "mg/m3"), ("nox", "mg/m3"), ("pm", "mg/m3"), ("o2", "%"), ("flow", "m3/s"))


def gas_devices(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select d.id from devices d join outlets o on o.id = d.site_id"
            " where o.kind = 'gas' order by d.id"
        ).fetchall()
    return [r[0] for r in rows]


@dataclass
class Stream:
    """``count`` messages round-robin over ``devices``, one minute apart per device, QoS 1.

    The publisher keeps a persistent session and reconnects by itself, so a broker restart only
    delays messages. ``rate`` caps messages per second so the stream spans the fault injected.
    """

    port: int
    login: tuple[str, str]
    devices: list[str]
    count: int
    rate: float = 500.0
    start: datetime = field(
        default_factory=lambda: (datetime.now(UTC) - timedelta(days=2)).replace(
            second=0, microsecond=0
        )
    )
    published: int = 0
    acked: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def message(self, i: int) -> tuple[str, bytes]:
        device = self.devices[i % len(self.devices)]
        ts = self.start + timedelta(minutes=i // len(self.devices))
        body = {
            "ts": ts.isoformat().replace("+00:00", "Z"),
            "readings": [
                {"pollutant": p, "value": round(10 + (i % 97) * 0.1, 3), "unit": u, "flag": "N"}
                for p, u in POLLUTANTS
            ],
        }
        return f"sunlight/v1/devices/{device}/readings", json.dumps(body).encode()

    @property
    def expected_readings(self) -> int:
        return self.count * len(POLLUTANTS)

    def run(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"stream-{self.port}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )

        def on_publish(*_: object) -> None:
            self.acked += 1  # PUBACK received: the broker owns the message now

        client.on_publish = on_publish
        client.username_pw_set(*self.login)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(0.1, 1)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            pace = threading.Event()
            for i in range(self.count):
                topic, payload = self.message(i)
                # While the broker is down paho queues the message and resends it on reconnect.
                client.publish(topic, payload, qos=1)
                self.published = i + 1
                pace.wait(1 / self.rate)
            wait_until(lambda: self.acked >= self.count, 120, "the broker to acknowledge all")
        finally:
            client.disconnect()
            client.loop_stop()
            self.done.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread


def stored_readings(database_url: str) -> int:
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            row = conn.execute("select count(*) from readings").fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1


def assert_exactly_once(database_url: str, stream: Stream) -> None:
    """Every published reading is stored once, with the value that was published."""
    with psycopg.connect(database_url) as conn:
        total, distinct = conn.execute(
            "select count(*), count(distinct (device_key, pollutant, period, time)) from readings"
        ).fetchone()  # type: ignore[misc]
        value_sum = conn.execute("select round(sum(value)::numeric, 3) from readings").fetchone()[0]  # type: ignore[index]
        dead = conn.execute("select count(*) from dead_letters").fetchone()[0]  # type: ignore[index]
    expected_sum = sum(round(10 + (i % 97) * 0.1, 3) for i in range(stream.count)) * len(POLLUTANTS)
    print(
        f"published {stream.expected_readings} readings, stored {total}, duplicates {total - distinct}, "
        f"lost {stream.expected_readings - distinct}, dead letters {dead}"
    )
    assert dead == 0
    assert total == distinct == stream.expected_readings
    assert float(value_sum) == round(expected_sum, 3)
