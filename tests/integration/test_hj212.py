"""HJ 212-2017 on real parts: frames over MQTT and through the TCP gateway become readings."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from domain.hj212 import CpData, Frame, build_frame, make_flag, parse_frame
from registry.broker_auth import GATEWAY, INGEST
from registry.loader import load_registry
from sunlight.brokers import free_port, port_open, wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.test_end_to_end import publish
from tests.processes import sunlight_process
from tests.servers import SecuredBroker

DEVICE, MN, PW = "cems-lc-tpn-u1", "LC31001010000101", "508211"
# 2026-11-21 10:05 in the logger's clock (UTC+8) is 02:05 UTC.
LOCAL = "20261121100500"
UTC_TIME = datetime(2026, 11, 21, 2, 5, tzinfo=UTC)


def minute_frame(
    *,
    qn: str = "20261121100501000",
    mn: str = MN,
    pw: str = PW,
    reply: bool = False,
    data_time: str = LOCAL,
) -> Frame:
    return Frame(
        qn=qn,
        st="31",
        cn="2051",
        pw=pw,
        mn=mn,
        flag=make_flag(reply=reply),
        cp=CpData(
            data_time=data_time,
            pollutants={
                "a21026": {"Avg": "31.2", "Flag": "N"},
                "a21002": {"Avg": "44.0", "Flag": "N"},
                "a34013": {"Avg": "12.5", "Flag": "T"},
                "a19001": {"Avg": "8.1", "Flag": "N"},
                "a99999": {"Avg": "7.0", "Flag": "N"},
            },
        ),
    )


@pytest.fixture
def ingest(database_url: str, broker: SecuredBroker, tmp_path: Path) -> Iterator[dict[str, str]]:
    load_registry(database_url, EXAMPLE_REGISTRY)
    env = {
        "SUNLIGHT_DATABASE_URL": database_url,
        **broker.env(INGEST),
        "SUNLIGHT_MQTT_CLIENT_ID": f"ingest-hj212-{free_port()}",
        "SUNLIGHT_INGEST_BATCH_MS": "50",
    }
    log = tmp_path / "ingest.log"
    with sunlight_process(["ingest"], env, log) as proc:
        wait_until(
            lambda: "subscribed to" in log.read_text() or proc.poll() is not None, 30, "ingest"
        )
        assert proc.poll() is None, log.read_text()
        yield env


def rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchall()


def stored(database_url: str) -> list[tuple[object, ...]]:
    return rows(
        database_url,
        "select pollutant, value, flag, period::text, time from readings order by pollutant",
    )


def test_frame_over_mqtt_becomes_readings(
    ingest: dict[str, str], broker: SecuredBroker, database_url: str
) -> None:
    """A CN 2051 frame on the hj212 topic stores minute readings at UTC time, flags kept;
    an unknown code is kept apart without costing the known values."""
    publish(broker, [(f"sunlight/v1/devices/{DEVICE}/hj212", build_frame(minute_frame()))])
    wait_until(lambda: len(stored(database_url)) == 4, 20, "four readings")
    assert stored(database_url) == [
        ("nox", 44.0, "N", "minute", UTC_TIME),
        ("o2", 8.1, "N", "minute", UTC_TIME),
        ("pm", 12.5, "T", "minute", UTC_TIME),
        ("so2", 31.2, "N", "minute", UTC_TIME),
    ]
    assert rows(database_url, "select code, field, value, flag, time from unknown_values") == [
        ("a99999", "Avg", "7.0", "N", UTC_TIME)
    ]
    assert rows(database_url, "select count(*) from dead_letters") == [(0,)]


def test_frames_that_do_not_belong_are_dead_lettered(
    ingest: dict[str, str], broker: SecuredBroker, database_url: str
) -> None:
    """Another device's MN, a wrong password and a CRC error are rejected with their reasons."""
    good = build_frame(minute_frame())
    corrupt = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
    publish(
        broker,
        [
            (
                f"sunlight/v1/devices/{DEVICE}/hj212",
                build_frame(minute_frame(mn="LC31001020000102")),
            ),
            (f"sunlight/v1/devices/{DEVICE}/hj212", build_frame(minute_frame(pw="000000"))),
            (f"sunlight/v1/devices/{DEVICE}/hj212", corrupt),
        ],
    )
    wait_until(
        lambda: rows(database_url, "select count(*) from dead_letters") == [(3,)],
        20,
        "three dead letters",
    )
    assert sorted(r[0] for r in rows(database_url, "select reason from dead_letters")) == [
        "bad_password",
        "hj212_bad_crc",
        "mn_mismatch",
    ]
    assert stored(database_url) == []


def read_frames(sock: socket.socket, count: int) -> list[Frame]:
    """Read ``count`` reply frames, bounded by the socket timeout."""
    buf = b""
    frames: list[Frame] = []
    while len(frames) < count:
        chunk = sock.recv(4096)
        assert chunk, "gateway closed the connection"
        buf += chunk
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            frames.append(parse_frame(line + b"\r\n"))
    return frames


def test_gateway_relays_a_tcp_stream(
    ingest: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """The TCP gateway splits a logger's stream (partial, joined, garbage-laden frames),
    answers as the Flag asks (9014 data answer, QnRtn 9 for a bad CRC, 4 for an unknown MN)
    and relays accepted frames to ingest."""
    port = free_port()
    env = {**ingest, "SUNLIGHT_MQTT_ACCOUNT": GATEWAY, "SUNLIGHT_GATEWAY_PORT": str(port)}
    log = tmp_path / "gateway.log"
    with sunlight_process(["hj212-gateway"], env, log) as gw:
        wait_until(lambda: port_open(port) or gw.poll() is not None, 30, "the gateway")
        assert gw.poll() is None, log.read_text()
        first = build_frame(minute_frame(qn="20261121100501001", reply=True))
        second = build_frame(
            minute_frame(qn="20261121100601002", reply=True, data_time="20261121100600")
        )
        bad_crc = build_frame(minute_frame(qn="20261121100701003", reply=True))
        bad_crc = bad_crc[:-6] + (b"0000" if bad_crc[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
        stranger = build_frame(minute_frame(qn="20261121100801004", mn="ZZ9999999999", reply=True))
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"garbage\x00\xff" + first[:30])
            sock.sendall(first[30:] + second.rstrip(b"\r\n") + bad_crc + b"noise" + stranger)
            replies = read_frames(sock, 4)
        assert [(r.cn, r.qn, r.cp.params.get("QnRtn")) for r in replies] == [
            ("9014", "20261121100501001", None),
            ("9014", "20261121100601002", None),
            ("9011", "20261121100701003", "9"),
            ("9011", "20261121100801004", "4"),
        ]
        wait_until(lambda: len(stored(database_url)) == 8, 20, "two frames of readings")
    times = {r[4] for r in stored(database_url)}
    assert times == {UTC_TIME, UTC_TIME + timedelta(minutes=1)}
    reasons = sorted(r[0] for r in rows(database_url, "select reason from dead_letters"))
    assert reasons == ["hj212_bad_crc", "unknown_mn"]
