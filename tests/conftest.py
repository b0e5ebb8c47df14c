"""Fixtures: a real PostgreSQL cluster and Mosquitto broker per test session; a fresh migrated
database per test (cloned from a migrated template, which is fast)."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from store.schema import migrate
from sunlight.brokers import MosquittoServer, free_port
from tests.servers import PostgresCluster

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
def broker() -> Iterator[MosquittoServer]:
    """A Mosquitto broker (no persistence) shared by the session; url in ``broker.url``."""
    with tempfile.TemporaryDirectory(prefix="sunlight-mqtt-") as root:
        b = MosquittoServer(Path(root), free_port(), persistence=False)
        b.start()
        try:
            yield b
        finally:
            b.stop()
