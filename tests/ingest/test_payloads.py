"""The JSON readings payload: what is accepted, and every reason a value is rejected."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.pollutants import Medium
from domain.readings import Flag, Period
from ingest.payloads import MAX_PAYLOAD_BYTES, parse_json_payload

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def parse(doc: object, medium: Medium = Medium.FLUE_GAS):  # type: ignore[no-untyped-def]
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_json_payload(raw, medium, NOW)


def test_single_message() -> None:
    """The documented example becomes one typed, UTC, minute reading."""
    p = parse(
        {
            "ts": "2026-11-23T10:00:00Z",
            "readings": [{"pollutant": "so2", "value": 31.2, "unit": "mg/m3", "flag": "N"}],
        }
    )
    assert p.rejections == []
    (r,) = p.readings
    assert (r.pollutant, r.value, r.unit, r.flag, r.period) == (
        "so2",
        31.2,
        "mg/m3",
        Flag.NORMAL,
        Period.MINUTE,
    )
    assert r.time == datetime(2026, 11, 23, 10, tzinfo=UTC)


def test_offset_timestamp_becomes_utc() -> None:
    """A timestamp with an offset is stored in UTC."""
    p = parse(
        {
            "ts": "2026-11-23T18:00:00+08:00",
            "readings": [{"pollutant": "cod", "value": 20, "unit": "mg/L"}],
        },
        Medium.WASTEWATER,
    )
    assert p.readings[0].time == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert p.readings[0].flag is Flag.NORMAL


def test_batch_form_and_period() -> None:
    """The batch form carries several timestamps; a period can be set per message or reading."""
    p = parse(
        {
            "period": "hour",
            "batch": [
                {
                    "ts": "2026-11-22T01:00:00Z",
                    "readings": [{"pollutant": "nox", "value": 40, "unit": "mg/m3"}],
                },
                {
                    "ts": "2026-11-22T02:00:00Z",
                    "readings": [
                        {"pollutant": "nox", "value": 41, "unit": "mg/m3", "period": "minute"}
                    ],
                },
            ],
        }
    )
    assert [(r.time.hour, r.period) for r in p.readings] == [(1, Period.HOUR), (2, Period.MINUTE)]


def test_unit_conversion_to_canonical() -> None:
    """Ambient SO2 sent in mg/m³ is stored in µg/m³."""
    p = parse(
        {
            "ts": "2026-11-23T10:00:00Z",
            "readings": [{"pollutant": "so2", "value": 0.02, "unit": "mg/m3"}],
        },
        Medium.AMBIENT,
    )
    assert p.readings[0].unit == "ug/m3"
    assert p.readings[0].value == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_envelope"),
        (
            json.dumps({"readings": [{"pollutant": "so2", "value": 1, "unit": "mg/m3"}]}).encode(),
            "bad_envelope",
        ),
        (json.dumps({"ts": "2026-11-23T10:00:00Z", "readings": []}).encode(), "bad_envelope"),
        (
            json.dumps(
                {
                    "ts": "2026-11-23T10:00:00",
                    "readings": [{"pollutant": "so2", "value": 1, "unit": "mg/m3"}],
                }
            ).encode(),
            "naive_timestamp",
        ),
        (
            json.dumps(
                {"ts": "yesterday", "readings": [{"pollutant": "so2", "value": 1, "unit": "mg/m3"}]}
            ).encode(),
            "bad_timestamp",
        ),
        (
            json.dumps(
                {
                    "ts": "2036-01-01T00:00:00Z",
                    "readings": [{"pollutant": "so2", "value": 1, "unit": "mg/m3"}],
                }
            ).encode(),
            "future_timestamp",
        ),
        (
            json.dumps(
                {
                    "ts": "1970-01-01T00:00:00Z",
                    "readings": [{"pollutant": "so2", "value": 1, "unit": "mg/m3"}],
                }
            ).encode(),
            "timestamp_out_of_range",
        ),
        (
            json.dumps(
                {
                    "ts": "2026-11-23T10:00:00Z",
                    "period": "week",
                    "readings": [{"pollutant": "so2", "value": 1, "unit": "mg/m3"}],
                }
            ).encode(),
            "bad_period",
        ),
        (json.dumps({"batch": []}).encode(), "bad_envelope"),
        (b"[" * 200_000 + b"]" * 200_000, "too_large"),
        (b"[" * 20_000 + b"]" * 20_000, "bad_json"),
    ],
)
def test_whole_message_rejections(payload: bytes, reason: str) -> None:
    """A broken envelope rejects the whole message with a named reason."""
    p = parse_json_payload(payload, Medium.FLUE_GAS, NOW)
    assert p.readings == []
    assert [r.reason for r in p.rejections] == [reason]
    assert p.rejections[0].detail


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        ({"pollutant": "unobtainium", "value": 1, "unit": "mg/m3"}, "unknown_pollutant"),
        ({"pollutant": 7, "value": 1, "unit": "mg/m3"}, "unknown_pollutant"),
        ({"pollutant": "so2", "value": 1, "unit": "furlongs"}, "bad_unit"),
        ({"pollutant": "so2", "value": 1, "unit": "mg/L"}, "bad_unit"),
        ({"pollutant": "so2", "value": 1}, "bad_unit"),
        ({"pollutant": "so2", "value": "12", "unit": "mg/m3"}, "bad_value"),
        ({"pollutant": "so2", "value": True, "unit": "mg/m3"}, "bad_value"),
        ({"pollutant": "so2", "value": None, "unit": "mg/m3"}, "bad_value"),
        ({"pollutant": "so2", "value": -3, "unit": "mg/m3"}, "negative_value"),
        ({"pollutant": "so2", "value": 1, "unit": "mg/m3", "flag": "X"}, "bad_flag"),
        ({"pollutant": "pm25", "value": 1, "unit": "ug/m3"}, "pollutant_not_for_medium"),
        ("so2=1", "bad_envelope"),
    ],
)
def test_value_rejections_keep_good_neighbours(reading: object, reason: str) -> None:
    """One bad value is rejected with its reason; the good value beside it is kept."""
    good = {"pollutant": "nox", "value": 20.5, "unit": "mg/m3"}
    p = parse({"ts": "2026-11-23T10:00:00Z", "readings": [good, reading]})
    assert [r.pollutant for r in p.readings] == ["nox"]
    assert [(r.where, r.reason) for r in p.rejections] == [("readings[1]", reason)]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_values(literal: bytes) -> None:
    """NaN and infinities (JSON extensions or overflow) are rejected as non-finite."""
    raw = (
        b'{"ts": "2026-11-23T10:00:00Z", "readings": [{"pollutant": "so2", "unit": "mg/m3", "value": '
        + literal
        + b"}]}"
    )
    p = parse_json_payload(raw, Medium.FLUE_GAS, NOW)
    assert p.readings == []
    assert p.rejections[0].reason == "non_finite_value"


def test_negative_flue_pressure_is_allowed() -> None:
    """A flue's static pressure (kPa against the atmosphere) is negative under induced draft:
    a CEMS reporting -0.35 kPa keeps the reading."""
    p = parse(
        {
            "ts": "2026-11-23T10:00:00Z",
            "readings": [{"pollutant": "pressure", "value": -0.35, "unit": "kPa"}],
        },
        Medium.FLUE_GAS,
    )
    assert (p.readings[0].value, p.rejections) == (-0.35, [])


def test_negative_temperature_is_allowed() -> None:
    """Temperatures may be negative; concentrations may not."""
    p = parse(
        {
            "ts": "2026-11-23T10:00:00Z",
            "readings": [{"pollutant": "temperature", "value": -12.5, "unit": "degC"}],
        },
        Medium.AMBIENT,
    )
    assert p.readings[0].value == -12.5


def test_oversized_payload_limit() -> None:
    """The size limit is what the module says."""
    raw = b" " * (MAX_PAYLOAD_BYTES + 1)
    assert parse_json_payload(raw, Medium.FLUE_GAS, NOW).rejections[0].reason == "too_large"


@pytest.mark.parametrize(
    ("payload", "where", "reason"),
    [
        # Before the ingest rework these raised out of the parser (OverflowError, ValueError)
        # and stopped the ingestor on every redelivery of the message.
        (
            b'{"ts": "0001-01-01T00:00:00+08:00", "readings": [%s]}',
            "",
            "timestamp_out_of_range",
        ),
        (b'{"ts": "9999-12-31T23:59:59-08:00", "readings": [%s]}', "", "future_timestamp"),
        (
            b'{"ts": "2026-11-23T10:00:00Z", "readings": [%s,'
            b' {"pollutant": "so2", "value": 1%s, "unit": "mg/m3"}]}' % (b"%s", b"0" * 400),
            "readings[1]",
            "non_finite_value",
        ),
        (
            b'{"ts": "2026-11-23T10:00:00Z", "readings": [%s,'
            b' {"pollutant": "so2", "value": 1%s, "unit": "mg/m3"}]}' % (b"%s", b"0" * 5000),
            "",
            "bad_json",
        ),
    ],
    ids=["year-1-east", "year-9999-west", "huge-integer", "integer-past-4300-digits"],
)
def test_values_past_the_calendar_or_float_are_rejections(
    payload: bytes, where: str, reason: str
) -> None:
    good = b'{"pollutant": "so2", "value": 1.5, "unit": "mg/m3"}'
    p = parse_json_payload(payload % good if b"%s" in payload else payload, Medium.FLUE_GAS, NOW)
    assert [(r.where, r.reason) for r in p.rejections] == [(where, reason)]
    assert len(p.readings) == (1 if where else 0)
