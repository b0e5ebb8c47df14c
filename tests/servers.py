"""Real PostgreSQL clusters (Debian's ``postgresql``) for tests; brokers come from
``sunlight.brokers`` so tests run Mosquitto exactly as ``sunlight up`` does.

As root, PostgreSQL runs as the ``postgres`` user, since it refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from registry.broker_auth import BrokerAuth
from sunlight.brokers import MosquittoServer, free_port


def _pg_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise RuntimeError("PostgreSQL server not installed: apt-get install postgresql")
    return Path(found[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresCluster:
    """A throwaway cluster: ``start()``, ``stop()``, ``url(db)``; ``stop(); start()`` restarts.

    With ``SUNLIGHT_TEST_TIMESCALEDB=1`` it preloads TimescaleDB (which must be installed).
    Without ``settings`` it runs as tests want it, fast and not crash-safe (no fsync, no
    synchronous commit, no full-page writes); with them (name → value), durable as deployed,
    plus those settings: what benchmarks use, so they measure what an operator would run.
    """

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sunlight-pg-")))
    port: int = field(default_factory=free_port)
    settings: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.bindir = _pg_bindir()
        self.datadir = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o755)
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if self.settings is None:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        else:
            opts += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        if os.environ.get("SUNLIGHT_TEST_TIMESCALEDB") == "1":
            # No job scheduler: its session in the template database makes cloning it fail,
            # and policies firing mid-test would make the rollup's contents timing-dependent.
            opts += (
                " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
                " -c timescaledb.max_background_workers=0"
            )
        subprocess.run(
            _as_postgres(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.root / "log"),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class SecuredBroker:
    """Mosquitto enforcing the example registry's accounts and ACL, as deployments do."""

    server: MosquittoServer
    auth: BrokerAuth

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def env(self, account: str) -> dict[str, str]:
        """The environment a service runs with to log in as ``account``."""
        return {
            "SUNLIGHT_MQTT_URL": self.server.url,
            "SUNLIGHT_MQTT_CREDENTIALS_FILE": str(self.auth.credentials_file),
            "SUNLIGHT_MQTT_ACCOUNT": account,
        }

    def login(self, account: str) -> tuple[str, str]:
        return account, self.auth.account(account).password

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
