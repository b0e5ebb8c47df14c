"""Hostile input to the parsers and the running ingestor: fuzzed JSON and HJ 212 payloads are
always classified, never raise; the named hostile cases each get a clear dead-letter reason,
and the ingestor keeps storing good readings beside them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.hj212 import build_frame
from domain.pollutants import Medium
from ingest.batch import Message, handle_batch
from ingest.devices import DeviceDirectory, DeviceInfo
from ingest.hj212 import parse_hj212_payload
from ingest.payloads import MAX_PAYLOAD_BYTES, Parsed, parse_json_payload
from registry.loader import load_registry
from store.schema import storage_mode
from sunlight.brokers import wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.test_end_to_end import publish
from tests.integration.test_hj212 import MN, PW, minute_frame
from tests.integration.test_nothing_lost import ingest_env
from tests.processes import sunlight_process
from tests.servers import SecuredBroker

NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
REASON = re.compile(r"^[a-z][a-z0-9_]*$")
FUZZ = settings(
    max_examples=250,
    derandomize=True,  # the same examples on every run: CI cannot flake
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
GAS_DEVICE = DeviceInfo(
    id="cems-lc-tpn-u1",
    device_key=1,
    site_key=1,
    site_id="lc-tpn-u1",
    medium=Medium.FLUE_GAS,
    mn=MN,
    hj212_password=PW,
)


def assert_classified(parsed: Parsed) -> None:
    """Every input comes out as readings or rejections, each rejection with a reason and why."""
    assert parsed.readings or parsed.rejections
    for r in parsed.rejections:
        assert REASON.match(r.reason), r
        assert r.detail.strip(), r
    for reading in parsed.readings:
        assert reading.time.tzinfo is not None
        assert reading.value == reading.value and abs(reading.value) != float("inf")
        assert reading.value >= 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)
fields = {
    "pollutant": st.sampled_from(["so2", "nox", "pm", "o2", "flow", "co", "", "二氧化硫"])
    | st.text(),
    "value": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | json_values,
    "unit": st.sampled_from(["mg/m3", "ug/m3", "%", "m3/s", "ppm", "", "毫克"]) | st.text(),
    "flag": st.sampled_from(["N", "T", "C", "x", "", None]) | st.text(max_size=3),
}
timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.isoformat()) | st.text(max_size=30)
envelopes = st.fixed_dictionaries(
    {
        "ts": timestamps,
        "readings": st.lists(st.fixed_dictionaries({}, optional=fields), max_size=5),
    },
    optional={"period": st.sampled_from(["minute", "hour", "day", "week", ""]) | json_values},
)


def dumps(doc: Any) -> bytes:
    # allow_nan: NaN and Infinity reach the parser as the bare tokens a device could send.
    return json.dumps(doc, allow_nan=True).encode()


@given(raw=st.binary(max_size=2000))
@FUZZ
def test_json_parser_any_bytes(raw: bytes) -> None:
    """Arbitrary bytes: rejected with a reason, never an exception."""
    assert_classified(parse_json_payload(raw, Medium.FLUE_GAS, NOW))


@given(doc=json_values | envelopes | st.fixed_dictionaries({"batch": st.lists(envelopes)}))
@FUZZ
def test_json_parser_structured(doc: Any) -> None:
    """JSON documents shaped like payloads, with every field wrong in every way."""
    for medium in Medium:
        assert_classified(parse_json_payload(dumps(doc), medium, NOW))


FRAME = build_frame(minute_frame(data_time="20261121100500"))


@given(
    raw=st.binary(max_size=1200)
    | st.tuples(st.integers(0, len(FRAME)), st.binary(max_size=8)).map(
        lambda f: FRAME[: f[0]] + f[1] + FRAME[f[0] + len(f[1]) :]
    )
)
@FUZZ
def test_hj212_parser_any_bytes(raw: bytes) -> None:
    """Arbitrary and mutated HJ 212 frames: rejected with a reason, never an exception."""
    assert_classified(parse_hj212_payload(raw, GAS_DEVICE, NOW))


def ts(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def body(when: datetime, value: Any = 20.0, pollutant: str = "so2") -> dict[str, Any]:
    return {"ts": ts(when), "readings": [{"pollutant": pollutant, "value": value, "unit": "mg/m3"}]}


def hostile_cases(now: datetime) -> list[tuple[str, bytes, str]]:
    """(case, payload, the dead-letter reason it must get)."""
    recent = now.replace(second=0, microsecond=0) - timedelta(hours=1)
    return [
        ("oversized payload", b'{"ts": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "too_large"),
        ("deep JSON", b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        ("deep JSON object", b'{"a":' * 30_000 + b"1" + b"}" * 30_000, "bad_json"),
        ("NaN", dumps(body(recent, float("nan"))), "non_finite_value"),
        ("Infinity", dumps(body(recent, float("inf"))), "non_finite_value"),
        ("-Infinity", dumps(body(recent, float("-inf"))), "non_finite_value"),
        (
            "huge number",
            b'{"ts": "%s", "readings": [{"pollutant": "so2", "value": 1e999,'
            b' "unit": "mg/m3"}]}' % ts(recent).encode(),
            "non_finite_value",
        ),
        # Finite, but its square overflows PostgreSQL's averages (stalled hourly means).
        ("1e300 mg/m3", dumps(body(recent, 1e300)), "value_out_of_range"),
        ("negative concentration", dumps(body(recent, -3.5)), "negative_value"),
        ("timestamp decades ahead", dumps(body(recent.replace(year=2080))), "future_timestamp"),
        (
            "timestamp decades back",
            dumps(body(recent.replace(year=1975))),
            "timestamp_out_of_range",
        ),
        (
            "clock reset to 2000",
            dumps(body(datetime(2000, 1, 1, tzinfo=UTC))),
            "timestamp_out_of_range",
        ),
        ("unicode pollutant", dumps(body(recent, pollutant="二氧化硫\u202e")), "unknown_pollutant"),
        ("not UTF-8", b'{"ts": "\xff\xfe"}', "bad_json"),
        ("NUL bytes", b"\x00" * 64, "bad_json"),
        ("value as string", dumps(body(recent, "20")), "bad_value"),
        (
            "naive timestamp",
            dumps({**body(recent), "ts": "2026-11-21T08:00:00"}),
            "naive_timestamp",
        ),
    ]


@pytest.mark.timeout(90)
def test_hostile_payloads_rejected_by_the_running_ingestor(
    database_url: str, broker: SecuredBroker, tmp_path: Path
) -> None:
    """Each hostile payload, published to a real device's topic, becomes one dead letter with its
    own reason; a good reading sent after them is stored; the ingestor stays up."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    now = datetime.now(UTC)
    cases = hostile_cases(now)
    topic = "sunlight/v1/devices/cems-lc-tpn-u1/readings"
    good = dumps(body(now.replace(second=0, microsecond=0) - timedelta(minutes=5), 21.5))
    env = {**ingest_env(database_url, broker), "SUNLIGHT_MQTT_CLIENT_ID": f"hostile-{broker.port}"}
    log = tmp_path / "ingest.log"
    with sunlight_process(["ingest"], env, log) as proc:
        wait_until(lambda: "subscribed to" in log.read_text(), 30, "subscribe")
        publish(broker, [(topic, payload) for _, payload, _ in cases] + [(topic, good)])

        def settled() -> bool:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "select (select count(*) from dead_letters), (select count(*) from readings)"
                ).fetchone()
            return row == (len(cases), 1)

        wait_until(settled, 30, "every hostile payload dead-lettered and the good one stored")
        assert proc.poll() is None
    with psycopg.connect(database_url) as conn:
        letters = conn.execute(
            "select reason, detail, payload from dead_letters order by id"
        ).fetchall()
    got = [(reason, bytes(payload)) for reason, _, payload in letters]
    assert got == [(reason, payload) for _, payload, reason in cases]
    assert all(detail for _, detail, _ in letters)
    for (name, _, _), (reason, detail, _) in zip(cases, letters, strict=True):
        print(f"{name}: {reason}: {detail[:100]}")


def test_unicode_and_hostile_device_ids(database_url: str) -> None:
    """Device ids no registry holds (unicode, wildcards, SQL) are dead letters, not errors."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    ids = ["设备-1", "cems\u202e1", "x' or '1'='1", "a" * 500, "%00", "\U0001f4a9", "cems-nowhere"]
    now = datetime.now(UTC)
    payload = dumps(body(now - timedelta(minutes=5)))
    with psycopg.connect(database_url) as conn:
        mode = storage_mode(conn)
        assert mode is not None
        with conn.transaction():
            outcome = handle_batch(
                conn,
                DeviceDirectory(min_reload_s=0),
                mode,
                [Message(f"sunlight/v1/devices/{d}/readings", payload) for d in ids],
                now,
            )
        stored = conn.execute(
            "select topic, reason, detail from dead_letters order by id"
        ).fetchall()
    assert outcome.readings == 0
    # None of them is even a well-formed device id: refused by the topic check, before any
    # look-up; a well-formed id no registry holds is an unknown device.
    assert [(t, r) for t, r, _ in stored] == [
        (f"sunlight/v1/devices/{d}/readings", "bad_topic") for d in ids[:-1]
    ] + [("sunlight/v1/devices/cems-nowhere/readings", "unknown_device")]
    assert all(detail for _, _, detail in stored)


@pytest.mark.parametrize(
    ("data_time", "reason"),
    [
        ("20000102120000", "timestamp_out_of_range"),  # a logger whose clock reset
        ("19900101000000", "timestamp_out_of_range"),
        ("20801121100500", "future_timestamp"),
    ],
)
def test_hj212_frames_stamped_decades_off(data_time: str, reason: str) -> None:
    """An HJ 212 frame stamped decades before or after its arrival is refused whole."""
    frame = build_frame(minute_frame(data_time=data_time))
    parsed = parse_hj212_payload(frame, GAS_DEVICE, NOW)
    assert parsed.readings == []
    assert [r.reason for r in parsed.rejections] == [reason]
