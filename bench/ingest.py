"""Ingest end to end: devices → Mosquitto → ingestor(s) → PostgreSQL, against the ceiling.

    python -m bench.ingest                      # the figures in BENCHMARKS.md (about 12 minutes)
    python -m bench.ingest --smoke              # a few seconds each phase (CI)
    python -m bench.ingest --history 16000000   # the same with 16 M readings already stored

Every message is one device's minute of 10 flue-gas values, half as JSON on
``…/readings``, half as HJ 212-2017 minute frames (CN 2051) on ``…/hj212``, published with
QoS 1 by separate publisher processes through a Mosquitto that enforces accounts and ACLs.

Phases, one stream definition for all of them:

1. ceiling — a do-nothing paho-mqtt subscriber (QoS 1, in its own process) receives the stream
   published at full speed: the rate the broker and client library can deliver on this machine;
2. floor — the same stream received as in 1 and written down by the cheapest durable writer:
   each message's bytes, unparsed, COPYed into a table without an index, committed every
   100 ms, in one process (``floor``), or in two on a ``$share`` subscription that first put
   each batch through the ingestor's own parse-and-validate step (``floor2``): what any
   ingestor storing in PostgreSQL on this machine could reach at most, whatever its design;
3. ingest — the real ingestor (``sunlight ingest``) receives the same stream at full speed;
   readings/s committed is read from its Prometheus counter, which moves only after commit;
4. paced — the stream published at the target rate for the sustained window, while a probe
   device publishes a message every 100 ms and the bench polls PostgreSQL for it: the
   publish-to-queryable latency (p50/p99) under that load (``--paced-ingestors 2``: two
   ingestors on a ``$share`` subscription);
5. shared — two ingestors on a ``$share`` subscription at full speed: the scaling factor;
6. prepare — in process, no broker or database: the ingestor's parse-and-validate step
   (``ingest.batch.prepare_batch``) over the same stream's messages in batches of 2,000,
   timed in CPU seconds of this process, so the figure holds steady on a shared machine.

PostgreSQL runs durable, with the settings docs/operations.md recommends for ingest
(``--postgres test``: as the test suite runs it, without fsync, synchronous commit or
full-page writes, as this benchmark did before). Publishers build their messages before the
clock starts. Each phase with ingestors reports their CPU and PostgreSQL's (all its
processes) in microseconds per stored reading, steadier than readings/s on a shared machine.

Results go to stdout and to ``bench/results/ingest-<label>.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from domain.hj212 import CpData, Frame, build_frame, make_flag
from ingest.topics import INGEST_FILTERS, subscription
from registry.broker_auth import INGEST, SIMULATOR, BrokerAuth, generate_broker_auth
from registry.loader import load_registry
from registry.model import read_registry_file
from store.schema import migrate, storage_mode
from sunlight.brokers import MosquittoServer, free_port, port_open, wait_until
from sunlight.cli import default_registry_file

RESULTS = Path(__file__).parent / "results"
VALUES_PER_MESSAGE = 10
# (pollutant, JSON unit, HJ 212 code, typical level): a flue-gas CEMS's minute.
POLLUTANTS = (
    ("so2", "mg/m3", "a21026", 25.0),
    ("nox", "mg/m3", "a21002", 40.0),
    ("no", "mg/m3", "a21003", 20.0),
    ("co", "mg/m3", "a21005", 30.0),
    ("pm", "mg/m3", "a34013", 6.0),
    ("o2", "%", "a19001", 8.0),
    ("flow", "m3/s", "a00000", 120.0),
    ("temperature", "degC", "a01012", 95.0),
    ("pressure", "kPa", "a01013", 101.0),
    ("humidity", "%", "a01014", 9.0),
)
PASSWORD = "123456"
# PostgreSQL as an operator runs it for ingest (docs/operations.md, "PostgreSQL for ingest"):
# durable (fsync, synchronous commit and full-page writes at their defaults, on), with room
# for the working set, checkpoints far enough apart that full-page images stay rare, and
# autovacuum prompt enough for tables whose every row is updated once a minute.
OPERATOR_SETTINGS = {
    "shared_buffers": "2GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "lz4",
    "autovacuum_naptime": "10s",
    "autovacuum_vacuum_cost_limit": "2000",
}


@dataclass(frozen=True)
class Stream:
    """Message i: device i mod n, minute i div n after ``start`` (so every message is new)."""

    devices: int
    start: datetime

    def device(self, i: int) -> int:
        return i % self.devices

    def message(self, i: int) -> tuple[str, bytes]:
        d, minute = i % self.devices, i // self.devices
        t = self.start + timedelta(minutes=minute)
        wobble = 1 + ((i * 7919) % 200 - 100) / 2000  # ±5 %, deterministic
        if d % 2 == 0:
            body = {
                "ts": t.isoformat().replace("+00:00", "Z"),
                "period": "minute",
                "readings": [
                    {"pollutant": p, "value": round(level * wobble, 2), "unit": u}
                    for p, u, _code, level in POLLUTANTS
                ],
            }
            return f"sunlight/v1/devices/{device_id(d)}/readings", json.dumps(body).encode()
        local = t.astimezone(UTC) + timedelta(hours=8)  # devices keep Beijing time
        frame = Frame(
            qn=local.strftime("%Y%m%d%H%M%S000"),
            st="31",
            cn="2051",
            pw=PASSWORD,
            mn=device_mn(d),
            flag=make_flag(reply=False),
            cp=CpData(
                data_time=local.strftime("%Y%m%d%H%M%S"),
                pollutants={
                    code: {"Avg": f"{level * wobble:.2f}", "Flag": "N"}
                    for _p, _u, code, level in POLLUTANTS
                },
            ),
        )
        return f"sunlight/v1/devices/{device_id(d)}/hj212", build_frame(frame)


def device_id(d: int) -> str:
    return f"bench-{d:06d}"


def device_mn(d: int) -> str:
    return f"BENCH{d:011d}"


# -- set-up ------------------------------------------------------------------------------------


def write_registry(path: Path, devices: int) -> None:
    """The example registry's offices and districts with ``devices`` synthetic stacks."""
    base = yaml.safe_load(default_registry_file().read_text(encoding="utf-8"))
    districts = base["districts"]
    enterprises = []
    per_enterprise = 10
    for e in range(0, devices, per_enterprise):
        district = districts[(e // per_enterprise) % len(districts)]
        lons = [p[0] for p in district["boundary"]]
        lats = [p[1] for p in district["boundary"]]
        outlets = []
        for d in range(e, min(e + per_enterprise, devices)):
            outlets.append(
                {
                    "id": f"bench-out-{d:06d}",
                    "name": f"Stack {d}",
                    "kind": "gas",
                    "reference_o2": 6,
                    "limits": [
                        {
                            "pollutant": "so2",
                            "value": 35,
                            "unit": "mg/m3",
                            "period": "hour",
                            "o2_corrected": True,
                            "standard": "GB 13223-2011",
                        }
                    ],
                    "devices": [
                        {
                            "id": device_id(d),
                            "mn": device_mn(d),
                            "hj212_password": PASSWORD,
                            "timezone": "+08:00",
                        }
                    ],
                }
            )
        enterprises.append(
            {
                "id": f"bench-ent-{e // per_enterprise:05d}",
                "name": f"Bench enterprise {e // per_enterprise}",
                "industry": "thermal_power",
                "lon": round(sum(lons) / len(lons), 5),
                "lat": round(sum(lats) / len(lats), 5),
                "district": district["id"],
                "outlets": outlets,
            }
        )
    registry = {k: v for k, v in base.items() if k in ("regulators", "districts")}
    registry["stations"] = []
    registry["enterprises"] = enterprises
    path.write_text(yaml.safe_dump(registry, allow_unicode=True, sort_keys=False), encoding="utf-8")


def prefill_history(url: str, readings: int, before: datetime) -> None:
    """Store ``readings`` older minutes for the bench devices straight in SQL (plain path),
    so a run shows whether ingest slows as history grows."""
    if readings <= 0:
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            insert into reading_codes (pollutant, unit)
            select * from unnest(%s::text[], %s::text[]) on conflict do nothing
            """,
            ([p for p, *_ in POLLUTANTS], [canonical_unit(p, u) for p, u, *_ in POLLUTANTS]),
        )
        keys = conn.execute("select array_agg(key order by key) from devices").fetchone()[0]  # type: ignore[index]
        minutes = readings // (VALUES_PER_MESSAGE * len(keys)) + 1
        conn.execute(
            """
            insert into reading_rows (time, device_key, site_key, period, codes, vals, flags)
            select %s - make_interval(mins => m), d.key, s.key, 'minute',
                   (select array_agg(id order by id) from reading_codes),
                   array_fill(random() * 50, array[10]), 'NNNNNNNNNN'
            from generate_series(1, %s) m, devices d join sites s on s.id = d.site_id
            """,
            (before, minutes),
        )
        conn.execute("vacuum analyze reading_rows")


def canonical_unit(pollutant: str, unit: str) -> str:
    return {"temperature": "degC"}.get(pollutant, unit)


# -- processes ---------------------------------------------------------------------------------


def _publisher(  # noqa: PLR0917 - a multiprocessing target takes positional arguments
    broker: tuple[str, int, str, str],
    stream: Stream,
    indices: range,
    rate: float | None,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    """Publish messages ``indices`` with QoS 1; ``rate`` messages/s in total, or full speed."""
    host, port, user, password = broker
    # The devices' own work, building each message, is done before the clock starts: in the
    # field it happens on the devices, not on the machine under test.
    messages = [stream.message(i) for i in indices]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    client.username_pw_set(user, password)
    # No in-flight cap in paho (0): with a cap, paho walks its whole table of unacknowledged
    # messages on every PUBACK, which cost the publishers half their CPU. The throttle below
    # bounds what is in flight instead.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    acked = 0
    done = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(indices):
            done.set()

    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    ready.set()
    go.wait()
    began = time.monotonic()
    for n, (topic, payload) in enumerate(messages):
        client.publish(topic, payload, qos=1)
        if rate is not None:
            ahead = began + n / rate - time.monotonic()
            if ahead > 0.005:  # a few messages at a time: a sleep per message costs CPU
                time.sleep(ahead)
        elif n % 2000 == 1999:
            # Full speed, but never more than ~20,000 messages ahead of the broker's acks.
            while n - acked > 20_000:
                time.sleep(0.001)
    done.wait(600)
    out.put((len(indices), acked, time.monotonic() - began))
    client.disconnect()
    client.loop_stop()


def _null_subscriber(
    broker: tuple[str, int, str, str], expected: int, ready: Any, out: Any
) -> None:
    """The ceiling: receive with QoS 1 and do nothing else."""
    host, port, user, password = broker
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-null")
    client.username_pw_set(user, password)
    count = 0
    first = last = 0.0
    finished = threading.Event()

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe([(f, 1) for f in INGEST_FILTERS])

    def on_subscribe(*_: object) -> None:
        ready.set()

    def on_message(*_: object) -> None:
        nonlocal count, first, last
        now = time.monotonic()
        if count == 0:
            first = now
        count += 1
        last = now
        if count >= expected:
            finished.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port, keepalive=60)
    client.loop_start()
    finished.wait(900)
    client.disconnect()
    client.loop_stop()
    out.put((count, first, last, time.process_time()))


def _storing_subscriber(  # noqa: PLR0917 - a multiprocessing target takes positional arguments
    broker: tuple[str, int, str, str],
    url: str,
    topics: list[str],
    devices: int,
    validate: bool,
    total: Any,
    expected: int,
    ready: Any,
    out: Any,
) -> None:
    """The floor of storing: receive as the ceiling does, and COPY each message's bytes,
    unparsed, into a table with no index, committing every 100 ms (durably, as ingest does);
    with ``validate``, first put each batch through the ingestor's parse-and-validate step
    (``prepare_batch``), which any ingestor that checks what it stores must pay.

    Nothing that stores a stream in PostgreSQL can do less: it must at least receive it and
    write it down; Sunlight's ingestor also indexes, rolls up, keeps latest values and
    acknowledges only after commit. Writers stop when ``total`` (shared) reaches ``expected``.
    """
    from ingest.batch import Message, prepare_batch

    host, port, user, password = broker
    directory = _bench_directory(devices)
    inbox: deque[tuple[str, Any]] = deque()  # paho's payload: bytes
    stored_count = 0
    first = last = 0.0
    nap = threading.Event()

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe([(t, 1) for t in topics])

    def on_subscribe(*_: object) -> None:
        ready.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal first
        if not first:
            first = time.monotonic()
        inbox.append((msg.topic, msg.payload))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{os.getpid()}")
    client.username_pw_set(user, password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    with psycopg.connect(url) as conn:
        client.connect(host, port, keepalive=60)
        client.loop_start()
        deadline = time.monotonic() + 900
        while total.value < expected and time.monotonic() < deadline:
            if not inbox:
                nap.wait(0.1)
                continue
            taken = [inbox.popleft() for _ in range(len(inbox))]
            if validate:
                prepared = prepare_batch(
                    None,  # type: ignore[arg-type]  # every bench device is in the directory
                    directory,
                    [Message(t, p) for t, p in taken],
                    datetime.now(UTC),
                )
                if prepared.letters:
                    raise RuntimeError(f"bench message refused: {prepared.letters[0]}")
            with conn.cursor().copy(
                "copy bench_raw_messages (topic, payload) from stdin (format binary)"
            ) as copy:
                copy.set_types(["text", "bytea"])
                for row in taken:
                    copy.write_row(row)
            conn.commit()
            stored_count += len(taken)
            with total.get_lock():
                total.value += len(taken)
            last = time.monotonic()
        client.disconnect()
        client.loop_stop()
    out.put((stored_count, first, last, time.process_time()))


@contextmanager
def ingestors(
    count: int,
    url: str,
    broker: MosquittoServer,
    auth: BrokerAuth,
    logs: Path,
    *,
    pids: list[int] | None = None,
) -> Iterator[list[int]]:
    """``count`` ingestor processes (a shared subscription when more than one); yields their
    metrics ports (and puts their process ids in ``pids``)."""
    procs, ports = [], []
    for n in range(count):
        port = free_port()
        env = {
            **os.environ,
            "SUNLIGHT_DATABASE_URL": url,
            "SUNLIGHT_MQTT_URL": broker.url,
            "SUNLIGHT_MQTT_CREDENTIALS_FILE": str(auth.credentials_file),
            "SUNLIGHT_MQTT_ACCOUNT": INGEST,
            "SUNLIGHT_MQTT_CLIENT_ID": f"bench-ingest-{n}-{port}",
            "SUNLIGHT_METRICS_PORT": str(port),
            "SUNLIGHT_INGEST_BATCH_SIZE": os.environ.get("SUNLIGHT_INGEST_BATCH_SIZE", "2000"),
            "SUNLIGHT_INGEST_BATCH_MS": os.environ.get("SUNLIGHT_INGEST_BATCH_MS", "100"),
        }
        if count > 1:
            env["SUNLIGHT_MQTT_SHARED_GROUP"] = "bench"
        log = open(logs / f"ingest-{n}.log", "ab")  # noqa: SIM115 - closed below
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "sunlight", "ingest"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
        ports.append(port)
        if pids is not None:
            pids.append(procs[-1][0].pid)
    try:
        for (proc, _log), port in zip(procs, ports, strict=True):

            def up(p: int = port, pr: subprocess.Popen[bytes] = proc) -> bool:
                return port_open(p) or pr.poll() is not None

            wait_until(up, 60, "ingest")
            if proc.poll() is not None:
                raise RuntimeError((logs / "ingest-0.log").read_text())
        yield ports
    finally:
        for proc, _log in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux ``/proc``; NaN
    elsewhere): CPU per reading holds steadier than readings/s on a shared machine."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class MachineCPU:
    """The whole machine's CPU (every core, every process: publishers, broker, ingestors,
    PostgreSQL), sampled in the background, so a phase can say how busy the machine was over
    its measured window and what all of it spent per reading there."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, busy s, all s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    @staticmethod
    def read() -> tuple[float, float]:
        """(busy, all) CPU seconds since boot, summed over cores (Linux ``/proc/stat``)."""
        ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = ticks[3] + ticks[4]  # idle and iowait
        per_s = os.sysconf("SC_CLK_TCK")
        return (sum(ticks) - idle) / per_s, sum(ticks) / per_s

    def _run(self, interval_s: float) -> None:
        while True:
            with suppress(OSError):
                self.samples.append((time.monotonic(), *self.read()))
            if self._stop.wait(interval_s):
                return

    def __enter__(self) -> MachineCPU:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float, readings: float) -> dict[str, float]:
        """Busy share of all cores, and busy CPU µs per reading, from ``start`` to ``end``
        (``time.monotonic()``, the same clock in every process here)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2 or readings <= 0:
            return {}
        (_t0, busy0, all0), (_t1, busy1, all1) = inside[0], inside[-1]
        share = (inside[-1][0] - inside[0][0]) / (end - start)  # of the window sampled
        return {
            "machine_cpu_busy": (busy1 - busy0) / (all1 - all0),
            "machine_cpu_us_per_reading": 1e6 * (busy1 - busy0) / (readings * share),
        }


def stored(ports: list[int], metric: str = "sunlight_ingest_readings_stored_total") -> int:
    """Readings committed so far (or another counter), from the ingestors' own counters."""
    total = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(metric + " "):
                    total += float(line.split()[-1])
    return int(total)


def per_batch(ports: list[int]) -> float:
    """Readings per committed batch: how full batches are (the broker's in-flight window, 1,000
    messages per client, caps them: the ingestor acknowledges only after commit)."""
    batches = stored(ports, "sunlight_ingest_batch_seconds_count")
    return stored(ports) / batches if batches else float("nan")


def publish(
    broker: tuple[str, int, str, str],
    stream: Stream,
    count: int,
    *,
    rate: float | None,
    publishers: int,
    started: threading.Event | None = None,
) -> tuple[int, float]:
    """Publish messages [first, first+count) from ``publishers`` processes; return (acked, s).

    ``started`` is set when the publishers, their messages built, begin to publish."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    go = ctx.Event()
    procs, readies = [], []
    for k in range(publishers):
        ready = ctx.Event()
        share = range(k, count, publishers)
        per_rate = rate / publishers if rate else None
        p = ctx.Process(target=_publisher, args=(broker, stream, share, per_rate, ready, go, out))
        p.start()
        procs.append(p)
        readies.append(ready)
    for r in readies:  # each publisher builds its messages first: a minute or so for millions
        if not r.wait(900):
            raise RuntimeError("a publisher did not get ready")
    go.set()
    if started is not None:
        started.set()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(30)
    return sum(r[1] for r in results), max(r[2] for r in results)


# -- phases ------------------------------------------------------------------------------------


@dataclass
class Bench:
    url_for: Any  # name -> database url
    broker: MosquittoServer
    auth: BrokerAuth
    registry: Path
    devices: int
    publishers: int
    logs: Path
    history: int
    postgres_pid: int | None = None  # the postmaster: PostgreSQL's CPU per reading
    storage: str | None = None  # the storage path the phases' databases were migrated to

    def endpoint(self, account: str) -> tuple[str, int, str, str]:
        return ("127.0.0.1", self.broker.port, account, self.auth.account(account).password)

    def stream(self) -> Stream:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        return Stream(self.devices, now - timedelta(days=2))

    def database(self, name: str) -> str:
        url: str = self.url_for(name)
        migrate(url)
        with psycopg.connect(url) as conn:
            mode = storage_mode(conn)
            self.storage = mode.value if mode is not None else None
        load_registry(url, self.registry)
        # History ends before the probes' day (start - 1 day), so probes always write new minutes.
        prefill_history(url, self.history, self.stream().start - timedelta(days=2))
        return url

    def full_speed(self, messages: int, stream: Stream | None = None) -> tuple[int, float]:
        """The stream's first ``messages`` published as fast as the publishers can:
        (acknowledged, seconds)."""
        return publish(
            self.endpoint(SIMULATOR),
            stream or self.stream(),
            messages,
            rate=None,
            publishers=self.publishers,
        )

    def ceiling(self, messages: int) -> dict[str, float]:
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue()
        ready = ctx.Event()
        sub = ctx.Process(
            target=_null_subscriber, args=(self.endpoint(INGEST), messages, ready, out)
        )
        sub.start()
        ready.wait(60)
        with MachineCPU() as machine:
            acked, _seconds = self.full_speed(messages)
            count, first, last, sub_cpu = out.get(timeout=900)
        sub.join(30)
        rate = (count - 1) / (last - first) if last > first else float("nan")
        return {
            "messages": messages,
            "published": acked,
            "received": count,
            "readings_per_s": rate * VALUES_PER_MESSAGE,
            "subscriber_cpu_us_per_reading": 1e6 * sub_cpu / (count * VALUES_PER_MESSAGE),
        } | machine.between(first, last, (count - 1) * VALUES_PER_MESSAGE)

    def floor(self, messages: int, writers: int = 1, validate: bool = False) -> dict[str, float]:
        """The ceiling's stream stored by the cheapest durable writer (``_storing_subscriber``),
        in one process or several on a ``$share`` subscription."""
        url = self.database(f"ingest_floor_{writers}_{int(validate)}")
        with psycopg.connect(url) as conn:
            # A benchmark baseline's own table, not Sunlight's schema (store.schema).
            conn.execute("create table bench_raw_messages (topic text not null, payload bytea)")
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue()
        total = ctx.Value("q", 0)
        group = "bench-floor" if writers > 1 else None
        topics = [subscription(f, group) for f in INGEST_FILTERS]
        procs, readies = [], []
        for _ in range(writers):
            ready = ctx.Event()
            args = (self.endpoint(INGEST), url, topics, self.devices, validate, total)
            procs.append(
                ctx.Process(target=_storing_subscriber, args=(*args, messages, ready, out))
            )
            procs[-1].start()
            readies.append(ready)
        for ready in readies:
            if not ready.wait(60):
                raise RuntimeError("a storing subscriber did not subscribe")
        pg_before = self.postgres_cpu()
        with MachineCPU() as machine:
            acked, _seconds = self.full_speed(messages)
            results = [out.get(timeout=900) for _ in procs]
        for proc in procs:
            proc.join(30)
        count = sum(r[0] for r in results)
        first = min(r[1] for r in results if r[0])
        last = max(r[2] for r in results)
        readings = count * VALUES_PER_MESSAGE
        return {
            "messages": messages,
            "writers": writers,
            "validated": int(validate),
            "published": acked,
            "stored": count,
            "readings_per_s": readings / (last - first) if last > first else float("nan"),
            "writer_cpu_us_per_reading": 1e6 * sum(r[3] for r in results) / readings,
            "postgres_cpu_us_per_reading": 1e6 * (self.postgres_cpu() - pg_before) / readings,
        } | machine.between(first, last, readings)

    def ingest(self, messages: int, ingestor_count: int, name: str) -> dict[str, float]:
        url = self.database(name)
        stream = self.stream()  # one clock reading: its minutes are the ones counted below
        pids: list[int] = []
        with ingestors(ingestor_count, url, self.broker, self.auth, self.logs, pids=pids) as ports:
            cpu_before, pg_before = cpu_seconds(pids), self.postgres_cpu()
            samples: list[tuple[float, int]] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.5):
                    samples.append((time.monotonic(), stored(ports)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            began = time.monotonic()
            with MachineCPU() as machine:
                acked, seconds = self.full_speed(messages, stream)
                expected = acked * VALUES_PER_MESSAGE
                wait_until(lambda: stored(ports) >= expected, 900, "ingest to catch up")
            ended = time.monotonic()
            stop.set()
            sampler.join()
            final = stored(ports)
            cpu = cpu_seconds(pids) - cpu_before
            pg_cpu = self.postgres_cpu() - pg_before
            batch = per_batch(ports)
        window = _steady_window(samples, expected)
        steady = window[2] / (window[1] - window[0]) if window[1] > window[0] else float("nan")
        if not steady > 0:  # too short to sample (smoke): the whole run's average
            steady = final / (ended - began)
        return (
            {
                "messages": messages,
                "published": acked,
                "readings_expected": expected,
                "readings_stored": final,
                "lost": max(expected - final, 0),
                "readings_per_s": steady,
                "ingestor_cpu_us_per_reading": 1e6 * cpu / final if final else float("nan"),
                "postgres_cpu_us_per_reading": 1e6 * pg_cpu / final if final else float("nan"),
                "readings_per_batch": batch,
                "ingestors": ingestor_count,
                "publish_seconds": seconds,
            }
            | machine.between(*window)
            | _database_counts(url, stream.start - timedelta(days=1))
        )

    def paced(
        self, rate_readings: float, seconds: float, name: str, ingestor_count: int = 1
    ) -> dict[str, Any]:
        url = self.database(name)
        messages = int(rate_readings / VALUES_PER_MESSAGE * seconds)
        stream = self.stream()
        pids: list[int] = []
        with ingestors(ingestor_count, url, self.broker, self.auth, self.logs, pids=pids) as ports:
            cpu_before, pg_before = cpu_seconds(pids), self.postgres_cpu()
            result: dict[str, Any] = {}

            started = threading.Event()

            def load() -> None:
                result["acked"], result["seconds"] = publish(
                    self.endpoint(SIMULATOR),
                    stream,
                    messages,
                    rate=rate_readings / VALUES_PER_MESSAGE,
                    publishers=self.publishers,
                    started=started,
                )
                result["done"] = time.monotonic()

            loader = threading.Thread(target=load)
            loader.start()
            # Probes only under load: not while the publishers are still building messages.
            while loader.is_alive() and not started.wait(0.1):
                pass
            timed, probes_sent, unanswered = probe_latencies(self, url, stream, loader)
            loader.join()
            expected = result["acked"] * VALUES_PER_MESSAGE
            # The ingestor's counter includes the probes' one reading each.
            everything = expected + probes_sent - unanswered
            wait_until(lambda: stored(ports) >= everything, 600, "ingest to catch up")
            lag = time.monotonic() - result["done"]
            final = stored(ports)
            cpu = cpu_seconds(pids) - cpu_before
            pg_cpu = self.postgres_cpu() - pg_before
            batch = per_batch(ports)
        latencies = sorted(latency for _sent, latency in timed)
        by_minute: dict[int, list[float]] = {}
        for sent, latency in timed:
            by_minute.setdefault(int(sent // 60), []).append(latency)
        return {
            "target_readings_per_s": rate_readings,
            "seconds": seconds,
            "ingestors": ingestor_count,
            "published": result["acked"],
            "offered_readings_per_s": expected / result["seconds"],
            "catch_up_after_publishing_s": lag,
            "probes": len(latencies),
            "probes_sent": probes_sent,
            "probes_unanswered": unanswered,
            "latency_p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "latency_p99_ms": 1000 * _percentile(latencies, 0.99),
            "latency_max_ms": 1000 * latencies[-1] if latencies else float("nan"),
            # Minute by minute of the run (by when the probe was sent): a stall shows where.
            "latency_p99_ms_by_minute": [
                round(1000 * _percentile(sorted(by_minute[m]), 0.99)) for m in sorted(by_minute)
            ],
            "ingestor_cpu_us_per_reading": 1e6 * cpu / final if final else float("nan"),
            "postgres_cpu_us_per_reading": 1e6 * pg_cpu / final if final else float("nan"),
            "readings_per_batch": batch,
        } | _database_counts(url, stream.start - timedelta(days=1))

    def postgres_cpu(self) -> float:
        """CPU seconds PostgreSQL has used so far: the postmaster, its live processes and
        those it has reaped (autovacuum workers come and go)."""
        if self.postgres_pid is None:
            return float("nan")
        try:
            fields = Path(f"/proc/{self.postgres_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        # utime, stime, then cutime, cstime: children already waited for
        ticks = sum(int(f) for f in fields[11:15])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with suppress(OSError):
                child = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(child[1]) == self.postgres_pid:
                    ticks += int(child[11]) + int(child[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def _bench_directory(devices: int) -> Any:
    """The bench devices as the ingestor's directory knows them, for ``prepare_batch``."""
    from domain.pollutants import Medium
    from ingest.devices import DeviceDirectory, DeviceInfo

    directory = DeviceDirectory()
    directory.install(
        DeviceInfo(
            id=device_id(d),
            device_key=d + 1,
            site_key=d + 1,
            site_id=f"bench-out-{d:06d}",
            medium=Medium.FLUE_GAS,
            mn=device_mn(d),
            hj212_password=PASSWORD,
            tz_offset=timedelta(hours=8),
        )
        for d in range(devices)
    )
    return directory


def prepare_rate(stream: Stream, messages: int, batch: int = 2000) -> dict[str, float]:
    """Readings/s (per CPU second of one core) that ``prepare_batch`` validates, over the
    stream's JSON and HJ 212 messages together and each format alone; the best of three."""
    from ingest.batch import Message, prepare_batch

    directory = _bench_directory(stream.devices)
    every = [Message(*stream.message(i)) for i in range(messages)]
    figures: dict[str, float] = {"messages": messages}
    for name, chosen in (
        ("all", every),
        ("json", [m for m in every if m.topic.endswith("/readings")]),
        ("hj212", [m for m in every if m.topic.endswith("/hj212")]),
    ):
        best = 0.0
        for _ in range(3):
            began, readings = time.process_time(), 0
            for i in range(0, len(chosen), batch):
                prepared = prepare_batch(None, directory, chosen[i : i + batch], datetime.now(UTC))  # type: ignore[arg-type]
                if prepared.letters:
                    raise RuntimeError(f"bench message refused: {prepared.letters[0]}")
                readings += len(prepared.rows)
            best = max(best, readings / max(time.process_time() - began, 1e-9))
        figures[f"{name}_readings_per_cpu_s"] = best
    return figures


def probe_latencies(
    bench: Bench, url: str, stream: Stream, loader: threading.Thread
) -> tuple[list[tuple[float, float]], int, int]:
    """Every 100 ms a probe device (the stream's last device) publishes a fresh sample, one
    second after the last, in the day before the stream's minutes; the time until PostgreSQL
    answers it is a latency."""
    host, port, user, password = bench.endpoint(SIMULATOR)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
    client.username_pw_set(user, password)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    probe = bench.devices - 1
    sent: dict[datetime, float] = {}
    latencies: list[tuple[float, float]] = []  # (seconds since the first probe, latency)
    base = stream.start - timedelta(days=1)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select key from devices where id = %s", (device_id(probe),)).fetchone()
        assert row is not None
        key = row[0]
        n = 0
        began = next_send = time.monotonic()
        while loader.is_alive() or sent:
            now = time.monotonic()
            if loader.is_alive() and now >= next_send:
                t = base + timedelta(seconds=n + 1)
                body = {
                    "ts": t.isoformat().replace("+00:00", "Z"),
                    "period": "sample",
                    "readings": [{"pollutant": "so2", "value": 1.0, "unit": "mg/m3"}],
                }
                sent[t] = time.monotonic()
                client.publish(
                    f"sunlight/v1/devices/{device_id(probe)}/readings", json.dumps(body), 1
                )
                n += 1
                next_send += 0.1
            # The probes still awaited, by their own times: with several ingestors they may be
            # committed out of order, so "after the newest seen" would miss an earlier one.
            rows = conn.execute(
                "select time from readings where device_key = %s and period = 'sample'"
                " and time = any(%s)",
                (key, list(sent)),
            ).fetchall()
            arrived = time.monotonic()
            for (t,) in rows:
                if t in sent:
                    at = sent.pop(t)
                    latencies.append((at - began, arrived - at))
            if not loader.is_alive() and sent and arrived - max(sent.values()) > 30:
                break  # a probe never arrived: counted as unanswered
            time.sleep(0.005)
    client.disconnect()
    client.loop_stop()
    return latencies, n, len(sent)


def _steady_window(samples: list[tuple[float, int]], expected: int) -> tuple[float, float, int]:
    """(start, end, readings committed in between) of the 10 %–90 % part of the stream (no
    warm-up, no tail): the steady rate's window."""
    inside = [(t, n) for t, n in samples if 0.1 * expected <= n <= 0.9 * expected]
    if len(inside) < 2:
        inside = samples[:1] + samples[-1:]
    if not inside:
        return 0.0, 0.0, 0
    (t0, n0), (t1, n1) = inside[0], inside[-1]
    return t0, t1, n1 - n0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def _database_counts(url: str, since: datetime) -> dict[str, float]:
    """Rows this run wrote (the stream and its probes, not the prefilled history)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select count(*), count(*) - count(distinct (device_key, pollutant, period, time))"
            " from readings where time >= %s",
            (since,),
        ).fetchone()
        letters = conn.execute("select count(*) from dead_letters").fetchone()
    assert row is not None
    assert letters is not None
    return {"rows_in_readings": row[0], "duplicates": row[1], "dead_letters": letters[0]}


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes (CI)")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--messages", type=int, default=300_000, help="per full-speed phase")
    parser.add_argument("--target", type=float, default=30_000, help="readings/s, paced phase")
    parser.add_argument("--seconds", type=float, default=300, help="paced phase length")
    parser.add_argument(
        "--paced-ingestors",
        type=int,
        default=1,
        help="ingestors in the paced phase (more than one: a $share subscription)",
    )
    parser.add_argument(
        "--postgres",
        choices=("operator", "test"),
        default="operator",
        help="PostgreSQL durable with the settings of docs/operations.md (operator), or as"
        " the tests run it, without fsync, synchronous commit or full-page writes (test)",
    )
    parser.add_argument("--history", type=int, default=0, help="readings stored beforehand")
    parser.add_argument("--label", default=None)
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON results (default bench/results/…)"
    )
    parser.add_argument(
        "--phases",
        default="prepare,ceiling,floor,floor2,ingest,paced,shared",
        help="comma-separated subset",
    )
    args = parser.parse_args()
    if args.smoke:
        args.devices, args.messages, args.target, args.seconds = 20, 1_000, 2_000, 3
        args.publishers = 1
    label = args.label or ("smoke" if args.smoke else f"history-{args.history}")

    from tests.servers import PostgresCluster

    cluster = PostgresCluster(settings=OPERATOR_SETTINGS if args.postgres == "operator" else None)
    cluster.start()
    with tempfile.TemporaryDirectory(prefix="sunlight-bench-") as tmp:
        root = Path(tmp)
        try:
            registry = root / "registry.yaml"
            write_registry(registry, args.devices)
            auth = generate_broker_auth(read_registry_file(registry), root / "auth")
            os.chmod(root, 0o755)
            broker = MosquittoServer(
                root / "mqtt", free_port(), persistence=False, auth_dir=auth.out_dir
            )
            broker.start()

            def url_for(name: str) -> str:
                with psycopg.connect(cluster.url(), autocommit=True) as conn:
                    conn.execute(f"create database {name}")  # bench-chosen names only
                return cluster.url(name)

            bench = Bench(
                url_for,
                broker,
                auth,
                registry,
                args.devices,
                args.publishers,
                root,
                args.history,
                int((cluster.datadir / "postmaster.pid").read_text().split()[0]),
            )
            figures: dict[str, Any] = {
                "label": label,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{os.cpu_count()} cores",
                "devices": args.devices,
                "values_per_message": VALUES_PER_MESSAGE,
                "history_readings": args.history,
                "postgres": args.postgres,
                "loadavg_start": os.getloadavg(),
            }
            phases = set(args.phases.split(","))
            if "prepare" in phases:
                figures["prepare"] = prepare_rate(bench.stream(), min(args.messages, 20_000))
                report("prepare_batch in process (CPU time)", figures["prepare"])
            if "ceiling" in phases:
                figures["ceiling"] = bench.ceiling(args.messages)
                report("ceiling (do-nothing subscriber)", figures["ceiling"])
            if "floor" in phases:
                figures["floor"] = bench.floor(args.messages)
                report("floor: one writer, raw payloads COPYed durably", figures["floor"])
            if "floor2" in phases:
                figures["floor2"] = bench.floor(args.messages, writers=2, validate=True)
                report(
                    "floor: two writers ($share), validated, raw payloads COPYed durably",
                    figures["floor2"],
                )
            if "ingest" in phases:
                figures["ingest"] = bench.ingest(args.messages, 1, "ingest_one")
                report("ingest, one ingestor, full speed", figures["ingest"])
            if "paced" in phases:
                figures["paced"] = bench.paced(
                    args.target, args.seconds, "ingest_paced", args.paced_ingestors
                )
                report(
                    f"ingest paced at {args.target:,.0f} readings/s,"
                    f" {args.paced_ingestors} ingestor(s)",
                    figures["paced"],
                )
            if "shared" in phases:
                figures["shared"] = bench.ingest(args.messages, 2, "ingest_two")
                report("ingest, two ingestors ($share), full speed", figures["shared"])
            if {"ceiling", "ingest"} <= phases:
                figures["ratio_to_ceiling"] = (
                    figures["ingest"]["readings_per_s"] / figures["ceiling"]["readings_per_s"]
                )
                print(f"ratio ingest / ceiling: {figures['ratio_to_ceiling']:.2f}")
                # Both phases keep the machine busy: their rates stand in the inverse ratio of
                # what the whole machine spends per reading in each (what storing adds to
                # publishing, brokering and receiving).
                c, i = figures["ceiling"], figures["ingest"]
                if "machine_cpu_us_per_reading" in c and "machine_cpu_us_per_reading" in i:
                    figures["machine_cpu_ratio"] = (
                        c["machine_cpu_us_per_reading"] / i["machine_cpu_us_per_reading"]
                    )
                    print(
                        "whole machine's CPU per reading, ceiling / ingest:"
                        f" {c['machine_cpu_us_per_reading']:.1f} /"
                        f" {i['machine_cpu_us_per_reading']:.1f} µs"
                        f" (busy {c['machine_cpu_busy']:.0%} / {i['machine_cpu_busy']:.0%});"
                        f" their ratio {figures['machine_cpu_ratio']:.2f}"
                    )
            for floor in ("floor", "floor2"):
                if {"ceiling", floor} <= phases:
                    figures[f"{floor}_ratio_to_ceiling"] = (
                        figures[floor]["readings_per_s"] / figures["ceiling"]["readings_per_s"]
                    )
                    print(f"ratio {floor} / ceiling: {figures[f'{floor}_ratio_to_ceiling']:.2f}")
            if {"shared", "ingest"} <= phases:
                figures["scaling_two_ingestors"] = (
                    figures["shared"]["readings_per_s"] / figures["ingest"]["readings_per_s"]
                )
                print(f"scaling, two ingestors / one: {figures['scaling_two_ingestors']:.2f}")
            figures["storage"] = bench.storage  # "timescaledb" with SUNLIGHT_TEST_TIMESCALEDB=1
            figures["loadavg_end"] = os.getloadavg()
            print(
                "load average start / end: "
                f"{figures['loadavg_start'][0]:.1f} / {figures['loadavg_end'][0]:.1f}"
            )
            output = args.output or (None if args.smoke else RESULTS / f"ingest-{label}.json")
            if output is not None:
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_text(json.dumps(figures, indent=2) + "\n")
        finally:
            with suppress(NameError):
                broker.stop()
            cluster.destroy()


def report(title: str, figures: dict[str, Any]) -> None:
    print(f"== {title}")
    for name, value in figures.items():
        if isinstance(value, list):
            print(f"  {name}: {', '.join(f'{v:,}' for v in value)}")
        else:
            print(f"  {name}: {value:,.1f}" if isinstance(value, float) else f"  {name}: {value:,}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
