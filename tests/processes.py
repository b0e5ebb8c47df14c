"""Sunlight services as real child processes, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sunlight.brokers import free_port, port_open, wait_until


@contextmanager
def sunlight_process(
    args: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m sunlight ARGS`` with ``env`` added; SIGTERM (then SIGKILL) on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sunlight", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@contextmanager
def api_process(database_url: str, log: Path, **settings: str) -> Iterator[str]:
    """``sunlight api`` on a free port with ``settings`` (SUNLIGHT_* names) added, once it
    listens; yields its base URL."""
    port = free_port()
    env = {"SUNLIGHT_DATABASE_URL": database_url, "SUNLIGHT_API_PORT": str(port), **settings}
    with sunlight_process(["api"], env, log) as api:
        wait_until(lambda: port_open(port) or api.poll() is not None, 30, "the API to listen")
        assert api.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}"
