"""Hostile TCP clients on the HJ 212 gateway: fuzzed byte streams, slow-loris senders, idle and
excess connections. Every frame is classified, every connection is bounded in time, and the
gateway keeps answering well-behaved data loggers throughout."""

from __future__ import annotations

import socket
import threading
import time

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.hj212 import build_frame, parse_frame
from ingest.gateway import Gateway
from tests.integration.test_hj212 import minute_frame
from tests.reliability.gateway import exchange, running_gateway
from tests.reliability.test_ingest_faults import DISK_FULL
from tests.servers import SecuredBroker

GOOD = build_frame(minute_frame(reply=True))
BAD_PW = build_frame(minute_frame(pw="000000", reply=True))
UNKNOWN_MN = build_frame(minute_frame(mn="XX00000000000000", reply=True))


def classified(gateway: Gateway) -> bool:
    """Every frame the gateway cut from a stream was relayed or refused with a reason."""
    return gateway.stats.frames == gateway.stats.relayed + sum(gateway.stats.refused.values())


def answers_promptly(gateway: Gateway, limit_s: float = 5.0) -> float:
    """A well-behaved logger's frame is answered (QnRtn data answer); returns the seconds."""
    started = time.monotonic()
    reply = exchange(gateway.port, GOOD, timeout=limit_s)
    took = time.monotonic() - started
    assert parse_frame(reply.split(b"\r\n")[0] + b"\r\n").cn == "9014", reply
    return took


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if a != b]


streams = st.lists(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from([GOOD, BAD_PW, UNKNOWN_MN, b"##", b"\r\n", b"##9999", b"##0000"]),
        # A real frame with bytes flipped: CRC errors, truncations, wrong lengths.
        st.tuples(st.integers(0, len(GOOD) - 1), st.binary(min_size=1, max_size=3)).map(
            lambda f: GOOD[: f[0]] + f[1] + GOOD[f[0] + len(f[1]) :]
        ),
    ),
    max_size=8,
)


@pytest.mark.timeout(180)
def test_fuzzed_streams_are_classified(database_url: str, broker: SecuredBroker) -> None:
    """Random and mutated byte streams, cut at random points: no crash, no hang, each frame
    relayed or dead-lettered with a reason, and a good logger is still answered after."""
    with running_gateway(database_url, broker) as gateway:

        @given(parts=streams, cuts=st.lists(st.integers(0, 10_000), max_size=6))
        @settings(
            max_examples=40,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        def fuzz(parts: list[bytes], cuts: list[int]) -> None:
            data = b"".join(parts)
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
                for chunk in chunks_of(data, cuts):
                    sock.sendall(chunk)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass  # answers, until the gateway has handled everything and closes
            assert classified(gateway)

        fuzz()
        answers_promptly(gateway)
        stats = gateway.stats
        with psycopg.connect(database_url) as conn:
            (letters,) = conn.execute(  # type: ignore[misc]
                "select coalesce(sum(arrivals), 0) from dead_letters"
            ).fetchone()
        print(
            f"gateway fuzz: {stats.connections} connections, {stats.frames} frames,"
            f" {stats.relayed} relayed, refused {dict(sorted(stats.refused.items()))},"
            f" {stats.garbage_bytes} garbage bytes, dead letters {letters}"
        )
        # every refusal kept with its bytes (a frame refused again counts as an arrival)
        assert letters == sum(stats.refused.values())


@pytest.mark.timeout(60)
def test_slow_loris_and_idle_clients_are_cut_off(database_url: str, broker: SecuredBroker) -> None:
    """A frame dripped a byte at a time, junk dripped forever and a silent socket are each
    closed by their deadline, while a good logger beside them is answered at once."""
    with running_gateway(database_url, broker, idle_timeout_s=2.0, frame_timeout_s=1.0) as gateway:
        closed_after: dict[str, float] = {}

        def drip(name: str, payload: bytes, every_s: float) -> None:
            started = time.monotonic()
            pace = threading.Event()
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
                try:
                    for i in range(10_000):
                        sock.sendall(payload[i % len(payload) : i % len(payload) + 1])
                        if pace.wait(every_s):
                            break
                except OSError:  # reset: the gateway closed the connection
                    pass
                else:
                    sock.settimeout(10)
                    sock.recv(1)
            closed_after[name] = time.monotonic() - started

        clients = [
            threading.Thread(target=drip, args=("frame dripped", GOOD, 0.1)),
            threading.Thread(target=drip, args=("junk dripped", b"x", 0.1)),
        ]
        silent = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(10)]
        started = time.monotonic()
        for t in clients:
            t.start()
        took = answers_promptly(gateway)
        for t in clients:
            t.join(20)
        for sock in silent:
            sock.settimeout(10)
            assert sock.recv(1) == b""  # closed by the gateway
            sock.close()
        silent_s = time.monotonic() - started
        print(
            f"slow loris: good logger answered in {took:.3f} s;"
            f" closed after {', '.join(f'{k} {v:.1f} s' for k, v in closed_after.items())},"
            f" 10 silent sockets by {silent_s:.1f} s; {gateway.stats.timed_out}"
        )
        assert took < 2.0
        assert 0.9 <= closed_after["frame dripped"] < 4.0  # the 1 s frame deadline
        assert 1.9 <= closed_after["junk dripped"] < 5.0  # junk never makes a frame: 2 s idle
        assert silent_s < 6.0
        assert gateway.stats.open_connections == 0


@pytest.mark.timeout(60)
def test_connections_beyond_the_limit_are_refused(database_url: str, broker: SecuredBroker) -> None:
    """With every slot held by silent sockets a new connection is closed at once; when the idle
    ones time out, loggers are served again."""
    with running_gateway(database_url, broker, idle_timeout_s=2.0, max_connections=5) as gateway:
        held = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(5)]
        try:
            for sock in held:
                sock.sendall(b"#")  # the gateway has accepted each: a byte reaches its reader
            deadline = time.monotonic() + 5
            while gateway.stats.open_connections < 5 and time.monotonic() < deadline:
                threading.Event().wait(0.02)
            try:
                answer = exchange(gateway.port, GOOD, timeout=5)
            except OSError as exc:
                # Closed with our frame unread: a reset, or already gone when we shut our side
                # (ENOTCONN). A timeout would mean it was not closed at once: that fails.
                if isinstance(exc, TimeoutError):
                    raise
                answer = b""
            assert answer == b""
            assert gateway.stats.refused_connections >= 1
            for sock in held:
                sock.settimeout(10)
                assert sock.recv(1) == b""
            answers_promptly(gateway)
        finally:
            for sock in held:
                sock.close()


@pytest.mark.timeout(60)
def test_refused_frame_not_answered_while_its_dead_letter_cannot_be_kept(
    database_url: str, broker: SecuredBroker
) -> None:
    """With the disk under dead letters full, a refused frame is not answered (the connection is
    closed, so the logger sends it again) instead of being answered and forgotten; once space
    returns the resent frame is answered and kept once."""
    with running_gateway(database_url, broker) as gateway:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(DISK_FULL)
        try:
            first = exchange(gateway.port, BAD_PW, timeout=10)
        except ConnectionError:
            first = b""
        with psycopg.connect(database_url, autocommit=True) as conn:
            kept_while_full = conn.execute("select count(*) from dead_letters").fetchone()
            conn.execute("update test_disk set is_full = false")
        second = exchange(gateway.port, BAD_PW, timeout=10)
        with psycopg.connect(database_url) as conn:
            reasons = conn.execute("select reason from dead_letters").fetchall()
    assert first == b""
    assert kept_while_full == (0,)
    assert parse_frame(second.split(b"\r\n")[0] + b"\r\n").cp.params.get("QnRtn") == "3"
    assert reasons == [("bad_password",)]
