"""MQTT brokers Sunlight starts itself: Mosquitto when installed, else the pure-Python amqtt.

Used by ``sunlight up`` and by the test fixtures, so both run the broker the same way.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until true; raise ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class Broker(Protocol):
    port: int

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...
    def stop(self) -> None: ...


class _Process:
    """A broker child process with its log file in ``root``."""

    name = "broker"

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o777)  # Mosquitto started as root drops to its own user
        self._log = open(self.root / f"{self.name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        process = self.process
        wait_until(lambda: port_open(self.port) or process.poll() is not None, 15, self.name)
        if process.poll() is not None:
            log = (self.root / f"{self.name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited at start:\n{log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class MosquittoServer(_Process):
    """Mosquitto on one loopback port; ``extra_config`` lines are appended to the config.

    With ``auth_dir`` (a directory written by ``registry.broker_auth.generate_broker_auth``) the
    broker refuses anonymous clients and enforces that directory's password file and ACL.
    """

    name = "mosquitto"

    def __init__(
        self,
        root: Path,
        port: int,
        *,
        bind: str = "127.0.0.1",
        persistence: bool = True,
        extra_config: str = "",
        auth_dir: Path | None = None,
    ) -> None:
        super().__init__(root, port)
        self.bind = bind
        self.persistence = persistence
        self.extra_config = extra_config
        self.auth_dir = auth_dir

    def config_text(self) -> str:
        lines = [f"listener {self.port} {self.bind}"]
        if self.auth_dir is None:
            lines.append("allow_anonymous true")
        else:
            lines += [
                "allow_anonymous false",
                f"password_file {self.root / 'passwd'}",
                f"acl_file {self.root / 'acl'}",
            ]
        lines += [
            # Inflight and queue limits high enough that a paused ingestor loses nothing.
            "max_inflight_messages 1000",
            "max_queued_messages 1000000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.root}/"]
        else:
            lines.append("persistence false")
        return "\n".join([*lines, self.extra_config, ""])

    def _install_auth(self) -> None:
        """Copy the password file and ACL into ``root``, readable by the broker alone.

        Mosquitto reads them after dropping from root to the ``mosquitto`` user (and again on
        SIGHUP), and newer releases warn about, and will refuse, files that other users can read
        or that the broker's user does not own; ``auth_dir`` itself may also be private.
        """
        if self.auth_dir is None:
            return
        owner: tuple[int, int] | None = None
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            try:
                user = pwd.getpwnam("mosquitto")
            except KeyError:
                user = None
            if user is not None:
                owner = (user.pw_uid, user.pw_gid)
        for name in ("passwd", "acl"):
            target = self.root / name
            tmp = self.root / f".{name}.tmp"
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write((self.auth_dir / name).read_bytes())
            if owner is not None:
                os.chown(tmp, *owner)
            os.replace(tmp, target)  # a reload never sees half a file

    def reload_auth(self) -> None:
        """Re-read ``auth_dir`` after it was regenerated; Mosquitto reloads on SIGHUP and
        disconnects clients whose accounts are gone. The reload is asynchronous."""
        if self.auth_dir is None:
            raise RuntimeError("this broker was started without auth_dir")
        self._install_auth()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def command(self) -> list[str]:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        conf = self.root / "mosquitto.conf"
        self.root.mkdir(parents=True, exist_ok=True)
        self._install_auth()
        conf.write_text(self.config_text())
        conf.chmod(0o644)
        return [binary, "-c", str(conf)]


class AmqttServer(_Process):
    """The pure-Python amqtt broker, for machines without Mosquitto."""

    name = "amqtt"

    def command(self) -> list[str]:
        conf = self.root / "amqtt.yaml"
        self.root.mkdir(parents=True, exist_ok=True)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        conf.write_text(yaml.safe_dump(config))
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
