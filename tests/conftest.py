"""Fixtures: a real PostgreSQL cluster and Mosquitto broker per test session; a fresh migrated
database per test (cloned from a migrated template, which is fast)."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from registry.broker_auth import BrokerAuth, generate_broker_auth
from registry.model import read_registry_file
from store.schema import migrate
from sunlight.brokers import MosquittoServer, free_port
from tests.servers import PostgresCluster, SecuredBroker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REGISTRY = ROOT / "examples" / "registry.yaml"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("create database sunlight_template")
        migrate(cluster.url("sunlight_template"))
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            # TimescaleDB schedules no background jobs in template databases, whose open
            # sessions would otherwise block cloning.
            conn.execute("alter database sunlight_template is_template true")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def database_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A migrated, empty database of its own for one test."""
    name = f"t{next(_counter)}"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"create database {name} template sunlight_template")
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


@pytest.fixture(scope="session")
def broker_auth() -> Iterator[BrokerAuth]:
    """Broker accounts for the example registry: one per device, one per service."""
    with tempfile.TemporaryDirectory(prefix="sunlight-auth-") as out:
        yield generate_broker_auth(read_registry_file(EXAMPLE_REGISTRY), Path(out))


def secured_broker(auth: BrokerAuth, *, persistence: bool) -> Iterator[SecuredBroker]:
    # A tempfile directory, not pytest's private tmp_path: Mosquitto runs as its own user.
    with tempfile.TemporaryDirectory(prefix="sunlight-mqtt-") as root:
        server = MosquittoServer(
            Path(root), free_port(), persistence=persistence, auth_dir=auth.out_dir
        )
        server.start()
        try:
            yield SecuredBroker(server, auth)
        finally:
            server.stop()


@pytest.fixture(scope="session")
def broker(broker_auth: BrokerAuth) -> Iterator[SecuredBroker]:
    """Mosquitto (no persistence) shared by the session, enforcing per-device accounts."""
    yield from secured_broker(broker_auth, persistence=False)


@pytest.fixture
def persistent_broker(broker_auth: BrokerAuth) -> Iterator[SecuredBroker]:
    """A broker of its own that keeps sessions and queued messages across restarts."""
    yield from secured_broker(broker_auth, persistence=True)
