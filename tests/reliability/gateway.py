"""The HJ 212 gateway served in-process on loopback, so a test can read its counters."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from ingest.gateway import Gateway
from registry.broker_auth import GATEWAY
from registry.loader import load_registry
from sunlight.brokers import wait_until
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY
from tests.servers import SecuredBroker


@contextmanager
def running_gateway(
    database_url: str,
    broker: SecuredBroker,
    *,
    idle_timeout_s: float = 600.0,
    frame_timeout_s: float = 30.0,
    max_connections: int = 1000,
) -> Iterator[Gateway]:
    """A gateway on a free loopback port, with the example registry loaded; stopped on exit."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    env = broker.env(GATEWAY)
    settings = Settings(
        database_url=database_url,
        mqtt_url=env["SUNLIGHT_MQTT_URL"],
        mqtt_credentials_file=env["SUNLIGHT_MQTT_CREDENTIALS_FILE"],
        mqtt_account=env["SUNLIGHT_MQTT_ACCOUNT"],
    )
    gateway = Gateway(
        settings,
        host="127.0.0.1",
        port=0,
        idle_timeout_s=idle_timeout_s,
        frame_timeout_s=frame_timeout_s,
        max_connections=max_connections,
    )
    loop = asyncio.new_event_loop()
    ready = asyncio.Event()
    task: list[asyncio.Task[None]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(gateway.serve(ready)))
        with suppress(asyncio.CancelledError):
            loop.run_until_complete(task[0])
        # Connections still open when the server stops: end their handlers before the loop.
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    wait_until(ready.is_set, 30, "the gateway to listen")
    wait_until(gateway._mqtt.is_connected, 30, "the gateway to reach the broker")
    try:
        yield gateway
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(15)
        loop.close()


def exchange(port: int, data: bytes, timeout: float = 20.0) -> bytes:
    """Send ``data``, close our side, and return everything the gateway answered until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = bytearray()
        while chunk := sock.recv(65536):
            out += chunk
        return bytes(out)
