"""Load held: a simulated network publishing for a long while, the API sampled all along.

    python -m bench.soak                     # 5,000 devices, 10 minutes, time 6x (RELIABILITY.md)
    python -m bench.soak --smoke             # 300 devices for 15 s (CI)
    python -m bench.soak --devices 5000 --minutes 10 --speedup 6

Every device sends one message a minute (10 flue-gas values, half JSON, half HJ 212 frames,
as in ``bench.ingest``), with simulated time ``--speedup`` times faster than the clock, through
a Mosquitto enforcing accounts, into a real ingestor; the alerts engine and the API run beside
them, each as its own process, on a throwaway PostgreSQL cluster. Every ``--every`` seconds the
bench times one request to each of ``/api/v1/stations``, ``/api/v1/enterprises`` and ``/map``,
reads the ingestor's stored-readings counter and the memory of every process (the API's
with its build process and forkserver; one request to each endpoint before the load starts
warms the API up and is not counted).

It prints tables: latency percentiles per endpoint against the budget of ``bench.api``, ingest
published/stored/lag, and each process's memory in each tenth of the run. Memory is each
process's proportional set size (PSS: shared pages divided among the processes mapping them);
PostgreSQL's is split into its backends' own memory and its shared memory as touched so far.
A process counts as flat when the last tenth's median is within 20 % (or 16 MiB) of its median
in the tenth after the warm-up (two API rebuild periods: pools connecting, reused responses
built and rebuilt twice); PostgreSQL's shared memory counts as bounded when it stays
within the server's ``shared_memory_size``. The exit status is non-zero when a
request failed or ingest did not catch up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import RESULTS, VALUES_PER_MESSAGE, Stream
from bench.ingest import write_registry as write_devices
from registry.broker_auth import INGEST, SIMULATOR, BrokerAuth, generate_broker_auth
from registry.loader import load_registry
from registry.model import read_registry_file
from store.schema import migrate
from sunlight.brokers import MosquittoServer, free_port, port_open, wait_until
from sunlight.cli import default_registry_file
from sunlight.settings import Settings


def write_registry(path: Path, devices: int) -> None:
    """``bench.ingest``'s flue-gas stacks (JSON and HJ 212 devices) plus the example registry's
    air-quality stations, so the station list and the map have something to show."""
    write_devices(path, devices)
    registry = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = yaml.safe_load(default_registry_file().read_text(encoding="utf-8"))
    registry["stations"] = base.get("stations", [])
    path.write_text(yaml.safe_dump(registry, allow_unicode=True, sort_keys=False), encoding="utf-8")


def publish_paced(
    port: int, login: tuple[str, str], stream: Stream, count: int, rate: float
) -> int:
    """Publish ``count`` messages at ``rate`` a second with QoS 1; return how many were acked."""
    acked = 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{os.getpid()}")

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.username_pw_set(*login)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    try:
        began = time.monotonic()
        for i in range(count):
            client.publish(*stream.message(i), qos=1)
            ahead = began + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the load itself
        wait_until(lambda: acked >= count, 120, "the broker to acknowledge every message")
    finally:
        client.disconnect()
        client.loop_stop()
    return acked


def stored(metrics_port: int) -> int:
    """Readings the ingestor has committed, from its own Prometheus counter."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("sunlight_ingest_readings_stored_total"):
                    return int(float(line.split()[-1]))
    except OSError:
        pass
    return 0


# p99 budgets of bench.api (ms): what the public endpoints must hold under load.
BUDGET_MS = {"/api/v1/stations": 50.0, "/api/v1/enterprises": 50.0, "/map": 200.0}
FLAT_RATIO, FLAT_SLACK_KIB = 1.20, 16 * 1024


def memory_kib(pid: int) -> dict[str, int]:
    """Proportional set size of one process, in all and split (anonymous, file, shared memory),
    from /proc/PID/smaps_rollup (zeros once it has gone). PSS divides each shared page among the
    processes mapping it, so summing processes counts shared buffers and libraries once."""
    out = {"Pss": 0, "Pss_Anon": 0, "Pss_File": 0, "Pss_Shmem": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in out:
                out[key] = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def pss_kib(pid: int) -> int:
    """Memory of one process (0 once it has gone)."""
    return memory_kib(pid)["Pss"]


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (PostgreSQL's backends and workers under the postmaster)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_pss_kib(pid: int) -> int:
    """Memory of a process and all its descendants: the API with its build process, the
    forkserver that forks it, and multiprocessing's resource tracker."""
    return pss_kib(pid) + sum(tree_pss_kib(child) for child in children_of(pid))


def get_ms(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            resp.read()
            status = resp.status
    except OSError as exc:
        status = getattr(exc, "code", 0) or 0
    return status, (time.perf_counter() - started) * 1e3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def soak(devices: int, seconds: float, speedup: float, every: float, label: str) -> int:
    from tests.servers import PostgresCluster

    rate = devices / 60 * speedup  # messages/s: one a minute per device, time sped up
    messages = int(rate * seconds)
    span = timedelta(minutes=messages // devices + 2)
    start = (datetime.now(UTC) - span - timedelta(hours=1)).replace(second=0, microsecond=0)
    cluster = PostgresCluster()
    cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="sunlight-soak-") as tmp:
            root = Path(tmp)
            os.chmod(root, 0o755)
            registry = root / "registry.yaml"
            write_registry(registry, devices)
            auth = generate_broker_auth(read_registry_file(registry), root / "auth")
            broker = MosquittoServer(
                root / "mqtt", free_port(), persistence=True, auth_dir=auth.out_dir
            )
            broker.start()
            try:
                with psycopg.connect(cluster.url(), autocommit=True) as conn:
                    conn.execute("create database soak")
                url = cluster.url("soak")
                migrate(url)
                load_registry(url, registry)
                api_port, metrics_port = free_port(), free_port()
                env = {
                    **os.environ,
                    "SUNLIGHT_DATABASE_URL": url,
                    "SUNLIGHT_API_PORT": str(api_port),
                    "SUNLIGHT_API_RATE_LIMIT_PER_MINUTE": "1000000",
                    "SUNLIGHT_ALERTS_BACKFILL_HOURS": "2",
                    "SUNLIGHT_MQTT_URL": broker.url,
                    "SUNLIGHT_MQTT_CREDENTIALS_FILE": str(auth.credentials_file),
                    "SUNLIGHT_MQTT_ACCOUNT": INGEST,
                    "SUNLIGHT_MQTT_CLIENT_ID": f"soak-ingest-{metrics_port}",
                    "SUNLIGHT_METRICS_PORT": str(metrics_port),
                }
                for name, args in (
                    ("api", ["api"]),
                    ("alerts", ["alerts", "--interval", "10"]),
                    ("ingest", ["ingest"]),
                ):
                    log = open(root / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "sunlight", *args],
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
                wait_until(lambda: port_open(api_port), 60, "the API")
                wait_until(
                    lambda: "subscribed to" in (root / "ingest.log").read_text(), 60, "ingest"
                )
                return _run(
                    broker=broker,
                    auth=auth,
                    stream=Stream(devices, start),
                    messages=messages,
                    rate=rate,
                    seconds=seconds,
                    every=every,
                    api=f"http://127.0.0.1:{api_port}",
                    stored_now=lambda: stored(metrics_port),
                    memory={
                        "ingest": lambda: pss_kib(procs[2].pid),
                        "api": lambda: tree_pss_kib(procs[0].pid),
                        "alerts": lambda: pss_kib(procs[1].pid),
                        "mosquitto": lambda: pss_kib(broker.process.pid) if broker.process else 0,
                        "postgres, backends' own": lambda: postgres_memory(
                            cluster.datadir, "private"
                        ),
                        "postgres, shared memory touched": lambda: postgres_memory(
                            cluster.datadir, "Pss_Shmem"
                        ),
                    },
                    bounded={"postgres, shared memory touched": shared_memory_kib(url)},
                    devices=devices,
                    label=label,
                )
            finally:
                for proc in procs:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                broker.stop()
    finally:
        cluster.destroy()


def shared_memory_kib(url: str) -> int:
    """The server's main shared memory area (PostgreSQL 15's ``shared_memory_size``): what the
    touched part of its shared memory can grow to, at most."""
    with psycopg.connect(url) as conn:
        size = conn.execute(
            "select setting::bigint from pg_settings where name = 'shared_memory_size'"
        ).fetchone()
    return int(size[0]) * 1024 if size else 0  # the setting is in MB


def postgres_processes(datadir: Path) -> list[int]:
    """The postmaster and its children (backends, background workers)."""
    try:
        postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [postmaster, *children_of(postmaster)]


def postgres_memory(datadir: Path, part: str) -> int:
    """One part of the cluster's memory summed over its processes: ``Pss_Shmem`` is the shared
    memory (buffer pool and the rest) as far as it has been touched, bounded by the server's
    ``shared_memory_size``; the rest is the backends' own."""
    parts = [memory_kib(p) for p in postgres_processes(datadir)]
    if part == "private":
        return sum(m["Pss"] - m["Pss_Shmem"] for m in parts)
    return sum(m[part] for m in parts)


def _run(
    *,
    broker: MosquittoServer,
    auth: BrokerAuth,
    stream: Stream,
    messages: int,
    rate: float,
    seconds: float,
    every: float,
    api: str,
    stored_now: Callable[[], int],
    memory: dict[str, Callable[[], int]],
    bounded: dict[str, int],
    devices: int,
    label: str,
) -> int:
    login = (SIMULATOR, auth.account(SIMULATOR).password)
    published: list[int] = []
    publisher = threading.Thread(
        target=lambda: published.append(publish_paced(broker.port, login, stream, messages, rate)),
        daemon=True,
    )
    latencies: dict[str, list[float]] = {path: [] for path in BUDGET_MS}
    failures: dict[str, int] = {path: 0 for path in BUDGET_MS}
    rss: dict[str, list[tuple[float, int]]] = {name: [] for name in memory}
    lag: list[int] = []
    for path in BUDGET_MS:  # warm-up, not counted: the first request of a fresh process
        get_ms(api + path)
    began = time.monotonic()
    publisher.start()
    pace = threading.Event()
    while publisher.is_alive() and time.monotonic() - began < seconds * 3:
        for path in BUDGET_MS:
            status, ms = get_ms(api + path)
            latencies[path].append(ms)
            failures[path] += status != 200
        at = time.monotonic() - began
        for name, read in memory.items():
            rss[name].append((at, read()))
        expected = min(messages, int(at * rate)) * VALUES_PER_MESSAGE
        lag.append(max(0, expected - stored_now()))
        pace.wait(every)
    publisher.join(600)
    total = (published[0] if published else 0) * VALUES_PER_MESSAGE
    caught_up = True
    try:
        wait_until(lambda: stored_now() >= total, 300, "ingest to catch up")
    except TimeoutError:
        caught_up = False
    took = time.monotonic() - began
    final = stored_now()
    print(
        f"soak: {devices:,} devices, one message a minute each, time x{rate * 60 / devices:.1f}"
        f" ({rate:,.0f} messages/s, {rate * VALUES_PER_MESSAGE:,.0f} readings/s) for {took:.0f} s"
    )
    print("\n| endpoint | requests | failed | p50 ms | p95 ms | p99 ms | max ms | budget p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path, values in latencies.items():
        print(
            f"| {path} | {len(values)} | {failures[path]} | {percentile(values, 0.5):.1f}"
            f" | {percentile(values, 0.95):.1f} | {percentile(values, 0.99):.1f}"
            f" | {max(values, default=float('nan')):.1f} | {BUDGET_MS[path]:.0f} |"
        )
    print("\n| ingest | published readings | stored | lost | max lag (readings) | caught up |")
    print("| --- | --- | --- | --- | --- | --- |")
    lost, worst = max(0, total - final), max(lag, default=0)
    print(
        f"| 1 ingestor | {total:,} | {final:,} | {lost:,} | {worst:,}"
        f" | {'yes' if caught_up else 'NO'} |"
    )
    # Warm-up: pools connect and the API's reused responses are built, then rebuilt twice (a
    # rebuild holds the old and the new copy at once); growth is judged after it.
    warmup = min(2 * Settings().api_cache_seconds + 10, 0.4 * took)
    print(
        f"\n| process | memory (PSS) after the {warmup:.0f} s warm-up, MiB | last tenth MiB"
        " | peak MiB | flat | median of each tenth, MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    verdicts = {}
    for name, samples in rss.items():
        tenth = max(1, len(samples) // 10)
        warm = [v for at, v in samples if at >= warmup][:tenth] or [v for _, v in samples]
        first = statistics.median(warm) if samples else 0
        last = statistics.median(v for _, v in samples[-tenth:]) if samples else 0
        peak = max((v for _, v in samples), default=0)
        if name in bounded:
            flat = peak <= bounded[name]
            verdict = f"bounded: peak within the {bounded[name] / 1024:.0f} MiB configured"
            if not flat:
                verdict = f"NO: above the {bounded[name] / 1024:.0f} MiB configured"
        else:
            flat = last <= max(first * FLAT_RATIO, first + FLAT_SLACK_KIB)
            verdict = "yes" if flat else "NO"
        verdicts[name] = flat
        curve = " ".join(
            f"{statistics.median(v for _, v in samples[k * tenth : (k + 1) * tenth]) / 1024:.0f}"
            for k in range(min(10, len(samples) // tenth))
        )
        print(
            f"| {name} | {first / 1024:.1f} | {last / 1024:.1f} | {peak / 1024:.1f}"
            f" | {verdict} | {curve} |"
        )
    if label == "smoke":
        sys.stdout.flush()
        return 0 if caught_up and not any(failures.values()) else 1
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"soak-{label}.json").write_text(
        json.dumps(
            {
                "devices": devices,
                "seconds": took,
                "readings_per_s": rate * VALUES_PER_MESSAGE,
                "published": total,
                "stored": final,
                "caught_up": caught_up,
                "latency_ms": latencies,
                "failures": failures,
                "memory_kib": rss,
                "memory_flat": verdicts,
            },
            indent=1,
        )
    )
    sys.stdout.flush()
    return 0 if caught_up and not any(failures.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="300 devices for 15 s (CI)")
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to publish")
    parser.add_argument("--speedup", type=float, default=6.0, help="simulated time / real time")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--label", default="main", help="bench/results/soak-LABEL.json")
    args = parser.parse_args()
    if args.smoke:
        args.devices, args.minutes, args.speedup, args.every = 300, 0.25, 6.0, 1.0
        args.label = "smoke"
    sys.exit(soak(args.devices, args.minutes * 60, args.speedup, args.every, args.label))


if __name__ == "__main__":
    main()
