"""HJ 212 frames on the ingest path: a DataTime no UTC instant can hold is a rejection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.hj212 import CpData, Frame, build_frame, make_flag
from domain.pollutants import Medium
from ingest.devices import DeviceInfo
from ingest.hj212 import parse_hj212_payload

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEVICE = DeviceInfo(
    id="cems-1",
    device_key=1,
    site_key=1,
    site_id="s",
    medium=Medium.FLUE_GAS,
    mn="MN0001",
    hj212_password="123456",
    tz_offset=timedelta(hours=8),
)


def frame(data_time: str) -> bytes:
    return build_frame(
        Frame(
            qn="20261123200000000",
            st="31",
            cn="2051",
            pw="123456",
            mn="MN0001",
            flag=make_flag(reply=False),
            cp=CpData(data_time=data_time, pollutants={"a21026": {"Avg": "12.5", "Flag": "N"}}),
        )
    )


def test_year_one_east_of_greenwich_is_rejected_not_raised() -> None:
    """Before the ingest rework this raised OverflowError out of the parser: a poison message
    that stopped the ingestor on every redelivery."""
    parsed = parse_hj212_payload(frame("00010101000000"), DEVICE, NOW)
    assert parsed.readings == []
    assert [r.reason for r in parsed.rejections] == ["timestamp_out_of_range"]


def test_minute_frame_is_read() -> None:
    parsed = parse_hj212_payload(frame("20261123195900"), DEVICE, NOW)
    assert parsed.rejections == []
    (reading,) = parsed.readings
    assert (reading.pollutant, reading.value, reading.time) == (
        "so2",
        12.5,
        datetime(2026, 11, 23, 11, 59, tzinfo=UTC),
    )
