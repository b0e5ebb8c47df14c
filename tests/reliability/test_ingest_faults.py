"""Fault injection on real processes: SIGKILL of the ingestor at random points of a stream of
100,000 readings, and a full disk under the dead-letter table; every reading is stored once."""

from __future__ import annotations

import os
import random
import signal
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from registry.broker_auth import SIMULATOR
from registry.loader import load_registry
from sunlight.brokers import wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.streams import Stream, assert_exactly_once, gas_devices, stored_readings
from tests.integration.test_nothing_lost import ingest_env
from tests.processes import sunlight_process
from tests.servers import SecuredBroker

# Reproduce a run with SUNLIGHT_FAULT_SEED=<the seed it printed>.
SEED = int(os.environ.get("SUNLIGHT_FAULT_SEED", "20261123"))
MESSAGES = 20_000  # five readings each: 100,000 readings
KILLS = 4


@pytest.mark.timeout(300)
def test_ingestor_sigkilled_at_random_points_of_100k_readings(
    database_url: str, persistent_broker: SecuredBroker, tmp_path: Path
) -> None:
    """Four SIGKILLs of the ingestor, at seeded random points of a 100,000-reading stream, lose
    nothing and duplicate nothing: what was not acknowledged is redelivered and stored once."""
    rng = random.Random(SEED)
    load_registry(database_url, EXAMPLE_REGISTRY)
    stream = Stream(
        persistent_broker.port,
        persistent_broker.login(SIMULATOR),
        gas_devices(database_url),
        count=MESSAGES,
        rate=2500,
    )
    total = stream.expected_readings
    # Kill when a random share of the stream is stored, then after a random extra delay, so the
    # kill lands anywhere in a batch: while collecting, writing, committing or acknowledging.
    points = sorted(rng.sample(range(total // 20, total * 9 // 10), KILLS))
    delays = [round(rng.uniform(0, 0.25), 3) for _ in points]
    print(f"seed {SEED}: kills after {points} stored readings (+{delays} s)")
    env = ingest_env(database_url, persistent_broker)
    log = tmp_path / "ingest.log"
    stored_at_kill: list[int] = []
    for n, (point, delay) in enumerate(zip(points, delays, strict=True)):
        with sunlight_process(["ingest"], env, log) as proc:
            wait_until(lambda n=n: log.read_text().count("subscribed to") > n, 30, "subscribe")
            if n == 0:
                stream.start_thread()
            # After this process stored something of its own, so no two kills hit one state.
            floor = max(point, stored_at_kill[-1] + 1 if stored_at_kill else 0)
            wait_until(lambda f=floor: stored_readings(database_url) >= f, 120, f"{floor} stored")
            threading.Event().wait(delay)  # the random point itself, not a synchronisation
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            stored_at_kill.append(stored_readings(database_url))
    with sunlight_process(["ingest"], env, log) as proc:
        wait_until(stream.done.is_set, 180, "the stream to finish")
        wait_until(lambda: stored_readings(database_url) >= total, 120, "all readings stored")
        assert proc.poll() is None
    print(f"SIGKILL x{KILLS}: stored readings at each kill {stored_at_kill}")
    assert_exactly_once(database_url, stream)


DISK_FULL = """
create table if not exists test_disk (is_full boolean not null);
insert into test_disk values (true);
create function test_disk_full() returns trigger language plpgsql as $$
begin
  if (select is_full from test_disk) then
    raise exception 'could not extend file "base/dead_letters": No space left on device'
      using errcode = 'disk_full';
  end if;
  return new;
end $$;
create trigger test_disk_full before insert on dead_letters
  for each row execute function test_disk_full();
"""


def _counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select (select count(*) from readings),"
            " (select count(*) from dead_letters),"
            " (select count(distinct payload) from dead_letters)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@pytest.mark.timeout(120)
def test_disk_full_on_dead_letters_loses_nothing(
    database_url: str, persistent_broker: SecuredBroker, tmp_path: Path
) -> None:
    """With the dead-letter table's disk full (SQLSTATE 53100) the ingestor neither stores nor
    acknowledges the batches holding rejects: SIGKILLed then, and restarted once space returns,
    it stores every reading and every dead letter exactly once."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(DISK_FULL)
    devices = gas_devices(database_url)
    stream = Stream(persistent_broker.port, ("", ""), devices, count=len(devices) * 20)
    good = [stream.message(i) for i in range(stream.count)]
    bad = [
        (f"sunlight/v1/devices/{devices[i % len(devices)]}/readings", f"not json {i}".encode())
        for i in range(40)
    ]
    messages = [m for pair in zip(good[::3], bad, strict=False) for m in pair] + good
    messages = list(dict.fromkeys(messages))  # every good message once, the bad ones among them
    env = ingest_env(database_url, persistent_broker)
    log = tmp_path / "ingest.log"
    with sunlight_process(["ingest"], env, log) as proc:
        wait_until(lambda: "subscribed to" in log.read_text(), 30, "subscribe")
        _publish(persistent_broker, messages)
        wait_until(lambda: "No space left on device" in log.read_text(), 30, "disk full seen")
        during = _counts(database_url)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert during[1] == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("update test_disk set is_full = false")  # space returns
    with sunlight_process(["ingest"], env, log) as proc:
        wait_until(
            lambda: _counts(database_url)[:2] == (stream.expected_readings, len(bad)),
            60,
            "every reading and dead letter stored",
        )
        assert proc.poll() is None
    readings, letters, distinct = _counts(database_url)
    print(
        f"disk full: published {stream.expected_readings} readings + {len(bad)} rejects;"
        f" while full stored {during[0]} readings, {during[1]} dead letters;"
        f" after: stored {readings}, dead letters {letters} ({distinct} distinct),"
        f" duplicates {letters - distinct}, lost {len(bad) - distinct}"
    )
    assert readings == stream.expected_readings
    assert letters == distinct == len(bad)
    with psycopg.connect(database_url) as conn:
        reasons = conn.execute("select distinct reason from dead_letters").fetchall()
    assert reasons == [("bad_json",)]


def _publish(broker: SecuredBroker, messages: list[tuple[str, bytes]]) -> None:
    """QoS 1 with a persistent-session-free client; returns once the broker has every one."""
    done = threading.Event()
    acked = [0]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="disk-full-device")

    def on_publish(*_: object) -> None:
        acked[0] += 1
        if acked[0] == len(messages):
            done.set()

    client.on_publish = on_publish
    client.username_pw_set(*broker.login(SIMULATOR))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1)
        assert done.wait(30), "the broker did not acknowledge every message"
    finally:
        client.disconnect()
        client.loop_stop()


class MixedStream(Stream):
    """Every tenth message malformed (its own bytes), the rest as ``Stream`` makes them."""

    def message(self, i: int) -> tuple[str, bytes]:
        topic, payload = super().message(i)
        return (topic, f"not json {i}".encode()) if i % 10 == 9 else (topic, payload)


@pytest.mark.timeout(180)
def test_rejects_kept_through_sigkills(
    database_url: str, persistent_broker: SecuredBroker, tmp_path: Path
) -> None:
    """Malformed messages among good ones, ingestor SIGKILLed three times: every reject is kept
    as a dead letter, once (a reject whose batch committed but whose acknowledgement died with
    the process is redelivered and recognised by topic and payload), and every good reading
    stored once."""
    rng = random.Random(SEED + 1)
    load_registry(database_url, EXAMPLE_REGISTRY)
    stream = MixedStream(
        persistent_broker.port,
        persistent_broker.login(SIMULATOR),
        gas_devices(database_url),
        count=6000,
        rate=1500,
    )
    bad = {i for i in range(stream.count) if i % 10 == 9}
    good_readings = (stream.count - len(bad)) * 5
    env = ingest_env(database_url, persistent_broker)
    log = tmp_path / "ingest.log"
    points = sorted(rng.sample(range(good_readings // 10, good_readings * 9 // 10), 3))
    for n, point in enumerate(points):
        with sunlight_process(["ingest"], env, log) as proc:
            wait_until(lambda n=n: log.read_text().count("subscribed to") > n, 30, "subscribe")
            if n == 0:
                stream.start_thread()
            wait_until(lambda p=point: stored_readings(database_url) >= p, 120, f"{point} stored")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with sunlight_process(["ingest"], env, log):
        wait_until(stream.done.is_set, 120, "the stream to finish")
        wait_until(
            lambda: (
                stored_readings(database_url) >= good_readings
                and _counts(database_url)[2] >= len(bad)
            ),
            120,
            "every reading and reject stored",
        )
    readings, letters, distinct = _counts(database_url)
    with psycopg.connect(database_url) as conn:
        (distinct_readings,) = conn.execute(
            "select count(distinct (device_key, pollutant, period, time)) from readings"
        ).fetchone()  # type: ignore[misc]
    print(
        f"rejects through SIGKILL x3 (after {points} stored): published {good_readings} readings"
        f" + {len(bad)} rejects; stored {readings} readings ({readings - distinct_readings}"
        f" duplicates), {letters} dead letters for {distinct} distinct rejects"
        f" (duplicates {letters - distinct}, lost {len(bad) - distinct})"
    )
    assert readings == distinct_readings == good_readings
    assert letters == distinct == len(bad)
