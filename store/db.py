"""Connections and pools, opened the same way by every process."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

APPLICATION = "sunlight"


# Every session works in UTC, so timestamps come back as UTC whatever the server's default.
_SESSION_OPTIONS = "-c TimeZone=UTC"


def connect(
    url: str, *, autocommit: bool = False, application: str = APPLICATION
) -> psycopg.Connection:
    """Open one connection; the application name makes each service visible in pg_stat_activity."""
    return psycopg.connect(
        url, autocommit=autocommit, application_name=application, options=_SESSION_OPTIONS
    )


def wait_for_database(url: str, timeout_s: float = 30.0) -> None:
    """Block until the server accepts connections, for services starting beside their database."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            with connect(url, autocommit=True) as conn:
                conn.execute("select 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, application: str = APPLICATION
) -> ConnectionPool:
    """A pool of dict-row connections for request handlers."""
    pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "application_name": application,
            "options": _SESSION_OPTIONS,
        },
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed on success, rolled back on error."""
    with connect(url) as conn, conn.transaction():
        yield conn
