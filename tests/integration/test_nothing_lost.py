"""Faults mid-stream on real processes: every published reading is stored exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import pytest

from registry.broker_auth import INGEST, SIMULATOR
from registry.loader import load_registry
from store.schema import migrate
from sunlight.brokers import wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.streams import Stream, assert_exactly_once, gas_devices, stored_readings
from tests.processes import sunlight_process
from tests.servers import PostgresCluster, SecuredBroker


def ingest_env(database_url: str, broker: SecuredBroker) -> dict[str, str]:
    return {
        "SUNLIGHT_DATABASE_URL": database_url,
        **broker.env(INGEST),
        "SUNLIGHT_MQTT_CLIENT_ID": f"ingest-{broker.port}",
        "SUNLIGHT_INGEST_BATCH_MS": "50",
    }


def wait_subscribed(log: Path, proc: object, after: int = 0) -> None:
    wait_until(lambda: log.read_text().count("subscribed to") > after, 30, "ingest to subscribe")


def test_ingestor_killed_mid_stream(
    database_url: str, persistent_broker: SecuredBroker, tmp_path: Path
) -> None:
    """SIGKILL of the ingestor mid-stream loses nothing: the broker redelivers what was not acked."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    stream = Stream(
        persistent_broker.port,
        persistent_broker.login(SIMULATOR),
        gas_devices(database_url),
        count=3000,
        rate=1000,
    )
    env = ingest_env(database_url, persistent_broker)
    log = tmp_path / "ingest.log"
    with sunlight_process(["ingest"], env, log) as first:
        wait_subscribed(log, first)
        stream.start_thread()
        wait_until(
            lambda: stored_readings(database_url) > stream.expected_readings // 4,
            60,
            "a quarter stored",
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    killed_at = stored_readings(database_url)
    with sunlight_process(["ingest"], env, log):
        wait_until(stream.done.is_set, 120, "the stream to finish")
        wait_until(
            lambda: stored_readings(database_url) >= stream.expected_readings,
            60,
            "all readings stored",
        )
    print(f"killed after {killed_at} stored readings")
    assert_exactly_once(database_url, stream)


def test_broker_restarted_twice_mid_stream(
    database_url: str, persistent_broker: SecuredBroker, tmp_path: Path
) -> None:
    """Mosquitto restarted twice mid-stream: sessions and queued messages survive, nothing lost."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    stream = Stream(
        persistent_broker.port,
        persistent_broker.login(SIMULATOR),
        gas_devices(database_url),
        count=3000,
        rate=600,
    )
    log = tmp_path / "ingest.log"
    with sunlight_process(["ingest"], ingest_env(database_url, persistent_broker), log) as proc:
        wait_subscribed(log, proc)
        stream.start_thread()
        for n in (1, 2):
            wait_until(lambda n=n: stream.published > stream.count * n // 3, 60, f"{n}/3 published")
            persistent_broker.stop()
            persistent_broker.start()
        wait_until(stream.done.is_set, 120, "the stream to finish")
        wait_until(
            lambda: stored_readings(database_url) >= stream.expected_readings,
            60,
            "all readings stored",
        )
        assert proc.poll() is None
    assert_exactly_once(database_url, stream)


@pytest.mark.timeout(240)
def test_database_stopped_for_30_seconds(persistent_broker: SecuredBroker, tmp_path: Path) -> None:
    """PostgreSQL stopped for 30 s mid-stream: the ingestor waits, retries, and stores everything."""
    cluster = PostgresCluster()
    cluster.start()
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("create database sunlight")
        url = cluster.url("sunlight")
        migrate(url)
        load_registry(url, EXAMPLE_REGISTRY)
        stream = Stream(
            persistent_broker.port,
            persistent_broker.login(SIMULATOR),
            gas_devices(url),
            count=2000,
            rate=100,
        )
        log = tmp_path / "ingest.log"
        with sunlight_process(["ingest"], ingest_env(url, persistent_broker), log) as proc:
            wait_subscribed(log, proc)
            stream.start_thread()
            wait_until(lambda: stored_readings(url) > 1000, 60, "some readings stored")
            cluster.stop()
            stopped = threading_sleep(30)
            cluster.start()
            assert stopped
            wait_until(stream.done.is_set, 120, "the stream to finish")
            wait_until(
                lambda: stored_readings(url) >= stream.expected_readings, 90, "all readings stored"
            )
            assert proc.poll() is None
            assert "database unavailable" in log.read_text()
        assert_exactly_once(url, stream)
    finally:
        cluster.destroy()


def threading_sleep(seconds: float) -> bool:
    """The outage itself: a fixed span of time is what is being tested, not a synchronisation."""
    import threading

    return not threading.Event().wait(seconds)
