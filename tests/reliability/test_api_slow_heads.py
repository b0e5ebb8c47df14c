"""Slow-loris on the API: a request head dribbled out is cut off with 408 at its deadline; a
prompt client on the same server, and on a kept-alive connection, is served as usual."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.reliability.api_server import api_process
from tests.servers import PostgresCluster

HEAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def api(pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = "slowheads"
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f"create database {name} template sunlight_template")
    log = tmp_path_factory.mktemp("slow-heads") / "api.log"
    try:
        with api_process(
            pg_cluster.url(name), log, SUNLIGHT_API_HEAD_TIMEOUT_S=str(HEAD_TIMEOUT_S)
        ) as base:
            yield base
    finally:
        with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
            conn.execute(f"drop database {name} with (force)")


def connect(base: str) -> socket.socket:
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.settimeout(10)  # every wait below is bounded by this
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def read_response(sock: socket.socket) -> bytes:
    """One response with a content-length (headers and body)."""
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536)
    head, _, body = got.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_dribbled_head_gets_408_at_its_deadline(api: str) -> None:
    sock = connect(api)
    began = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    answer = read_until_closed(sock)
    took = time.monotonic() - began
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert HEAD_TIMEOUT_S * 0.9 <= took < HEAD_TIMEOUT_S + 5, took


def test_a_silent_connection_is_closed_too(api: str) -> None:
    sock = connect(api)
    began = time.monotonic()
    answer = read_until_closed(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - began < HEAD_TIMEOUT_S + 5


def test_prompt_requests_on_a_kept_alive_connection_are_served(api: str) -> None:
    sock = connect(api)
    for _ in range(3):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200"), "healthz"
    # After a response, the next head has its own deadline: dribbling it is cut off as well.
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 408")
    sock.close()


def test_a_head_sent_in_pieces_within_the_deadline_is_served(api: str) -> None:
    sock = connect(api)
    for piece in (b"GET /heal", b"thz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        sock.sendall(piece)
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    sock.close()
