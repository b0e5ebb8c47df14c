"""The HJ 212-2017 codec: CRC, frames, replies and readings, from the standard's worked examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from domain import hj212
from domain.errors import ValidationError
from domain.hj212 import (
    CpData,
    Frame,
    FrameKind,
    Hj212Error,
    build_frame,
    crc16_hj212,
    data_answer,
    frame_readings,
    parse_frame,
    request_answer,
    salvage_fields,
)
from domain.pollutants import Medium
from domain.readings import Flag, Period

# HJ 212-2017 worked examples (standards.md §1).
SEGMENT_1 = (
    b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&"
)
SEGMENT_2 = (
    b"QN=20160801085857223;ST=23;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&DataTime=20160801085857; LA-Rtd=50.1&&"
)
FRAME_1 = b"##0101" + SEGMENT_1 + b"1C80\r\n"
FRAME_2 = b"##0123" + SEGMENT_2 + b"1E00\r\n"

REASONS = {
    "bad_header",
    "bad_length",
    "too_long",
    "bad_crc",
    "not_ascii",
    "bad_segment",
    "missing_field",
    "bad_cp",
}
CST = timedelta(hours=8)
NOW = datetime(2024, 6, 1, 4, 0, tzinfo=UTC)  # 12:00 in China


def wrap(segment: bytes, *, crlf: bool = True, lower: bool = False) -> bytes:
    """A frame around ``segment`` with a correct CRC."""
    crc = f"{crc16_hj212(segment):04X}"
    crc = crc.lower() if lower else crc
    return b"##%04d%s%s%s" % (len(segment), segment, crc.encode(), b"\r\n" if crlf else b"")


def cems_minute_segment() -> bytes:
    """A realistic CEMS minute upload: gases, particulate, O2, flow, temperature, one unknown code."""
    cp = (
        "DataTime=20240601115900;"
        "a21026-Avg=28.6,a21026-ZsAvg=31.2,a21026-Flag=N;"
        "a21002-Avg=41.0,a21002-ZsAvg=44.7,a21002-Flag=N;"
        "a34013-Avg=3.1,a34013-ZsAvg=3.4,a34013-Flag=N;"
        "a19001-Avg=7.2,a19001-Flag=N;"
        "a00000-Avg=85.3,a00000-Flag=N;"
        "a01012-Avg=52.4,a01012-Flag=T;"
        "a99999-Avg=1.5,a99999-Flag=N"
    )
    return (
        f"QN=20240601115900001;ST=31;CN=2051;PW=123456;MN=88888880000001;Flag=5;CP=&&{cp}&&"
    ).encode()


# --- CRC -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "length", "crc"), [(SEGMENT_1, 101, 0x1C80), (SEGMENT_2, 123, 0x1E00)]
)
def test_crc_worked_examples(segment: bytes, length: int, crc: int) -> None:
    """Annex A CRC reproduces both worked examples of the standard."""
    assert len(segment) == length
    assert crc16_hj212(segment) == crc


def test_crc_is_not_modbus() -> None:
    """CRC-16/MODBUS of the first example is 0759; HJ 212's differs."""
    modbus = 0xFFFF
    for byte in SEGMENT_1:
        modbus ^= byte
        for _ in range(8):
            modbus = (modbus >> 1) ^ 0xA001 if modbus & 1 else modbus >> 1
    assert modbus == 0x0759
    assert crc16_hj212(SEGMENT_1) != modbus


# --- Parsing ---------------------------------------------------------------------------------


def test_parse_first_worked_example() -> None:
    """The first example parses into its fields, with RtdInterval as a top-level CP key."""
    frame = parse_frame(FRAME_1)
    assert frame == Frame(
        qn="20160801085857223",
        st="32",
        cn="1062",
        pw="100000",
        mn="010000A8900016F000169DC0",
        flag=5,
        cp=CpData(params={"RtdInterval": "30"}),
    )
    assert hj212.needs_reply(frame.flag)
    assert not hj212.has_packets(frame.flag)
    assert hj212.protocol_version(frame.flag) == hj212.VERSION_2017


def test_parse_second_worked_example_tolerates_space() -> None:
    """The space in '; LA-Rtd=50.1' is tolerated: LA's Rtd is read as '50.1'."""
    frame = parse_frame(FRAME_2)
    assert frame.cp.data_time == "20160801085857"
    assert frame.cp.pollutants == {"LA": {"Rtd": "50.1"}}


def test_build_reproduces_canonical_frames() -> None:
    """build(parse(b)) == b for the first example and a canonical form of the second."""
    assert build_frame(parse_frame(FRAME_1)) == FRAME_1
    canonical_2 = wrap(SEGMENT_2.replace(b"; ", b";"))
    assert build_frame(parse_frame(canonical_2)) == canonical_2
    cems = wrap(cems_minute_segment())
    assert build_frame(parse_frame(cems)) == cems


def test_build_drops_non_canonical_whitespace() -> None:
    """Whitespace the parser tolerates is not kept: the rebuilt frame is canonical, CRC recomputed."""
    rebuilt = build_frame(parse_frame(FRAME_2))
    assert rebuilt == wrap(SEGMENT_2.replace(b"; ", b";"))
    assert parse_frame(rebuilt) == parse_frame(FRAME_2)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(wrap(SEGMENT_1, lower=True), id="lowercase-crc"),
        pytest.param(wrap(SEGMENT_1, crlf=False), id="no-crlf"),
        pytest.param(
            wrap(SEGMENT_1.replace(b";ST=", b"; ST=").replace(b"=30", b"= 30 ")), id="spaces"
        ),
        pytest.param(wrap(SEGMENT_1.replace(b"=30&&", b"=30;&&")), id="trailing-semicolon"),
    ],
)
def test_real_world_quirks(raw: bytes) -> None:
    """Lowercase CRC, no CRLF, extra spaces and a trailing ';' parse like the canonical frame."""
    assert parse_frame(raw) == parse_frame(FRAME_1)


def test_empty_cp() -> None:
    """CP=&&&& is an empty data area."""
    frame = parse_frame(wrap(SEGMENT_1.replace(b"RtdInterval=30", b"")))
    assert frame.cp == CpData()


def test_cp_separators() -> None:
    """';' separates pollutants and ',' the fields of one pollutant; both are kept apart."""
    frame = parse_frame(wrap(cems_minute_segment()))
    assert frame.cp.data_time == "20240601115900"
    assert list(frame.cp.pollutants)[:2] == ["a21026", "a21002"]
    assert frame.cp.pollutants["a21026"] == {"Avg": "28.6", "ZsAvg": "31.2", "Flag": "N"}
    assert frame.cp.pollutants["a01012"]["Flag"] == "T"


def test_fields_of_one_pollutant_across_groups_merge() -> None:
    """A pollutant whose fields are split by ';' is still one pollutant."""
    seg = SEGMENT_1.replace(b"RtdInterval=30", b"a21026-Rtd=1.0;a21026-Flag=N")
    assert parse_frame(wrap(seg)).cp.pollutants == {"a21026": {"Rtd": "1.0", "Flag": "N"}}


def test_packet_numbers() -> None:
    """With the D bit, PNUM/PNO are read and rebuilt."""
    seg = SEGMENT_1.replace(b"Flag=5;", b"Flag=7;PNUM=3;PNO=2;")
    frame = parse_frame(wrap(seg))
    assert (frame.pnum, frame.pno) == (3, 2)
    assert hj212.has_packets(frame.flag)
    assert build_frame(frame) == wrap(seg)


def _bad(raw: bytes) -> str:
    with pytest.raises(Hj212Error) as info:
        parse_frame(raw)
    assert str(info.value)
    return info.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"", "bad_header", id="empty"),
        pytest.param(b"##0000FFFF\r\n", "missing_field", id="empty-segment"),
        pytest.param(b"#0101" + SEGMENT_1 + b"1C80", "bad_header", id="one-hash"),
        pytest.param(b"##01a1" + SEGMENT_1 + b"1C80", "bad_length", id="length-not-digits"),
        pytest.param(b"##01", "bad_length", id="truncated-length"),
        pytest.param(b"##0100" + SEGMENT_1 + b"1C80", "bad_length", id="length-too-small"),
        pytest.param(FRAME_1[:-4], "bad_length", id="truncated-crc"),
        pytest.param(b"##1025" + b"x" * 1025 + b"0000", "too_long", id="over-1024"),
        pytest.param(b"##9999", "too_long", id="length-9999"),
        pytest.param(b"##0101" + SEGMENT_1 + b"1C81\r\n", "bad_crc", id="crc-mismatch"),
        pytest.param(b"##0101" + SEGMENT_1 + b"1CZ0\r\n", "bad_crc", id="crc-not-hex"),
        pytest.param(FRAME_1 + b"\r\n", "bad_length", id="extra-crlf"),
        pytest.param(wrap(SEGMENT_1.replace(b"100000", "10000é".encode())), "not_ascii"),
        pytest.param(wrap(SEGMENT_1.replace(b"100000", b"1000\t0")), "not_ascii", id="tab"),
        pytest.param(wrap(SEGMENT_1.replace(b"QN=", b"qn=")), "bad_segment", id="case"),
        pytest.param(wrap(SEGMENT_1.replace(b"ST=32;", b"")), "missing_field", id="no-st"),
        pytest.param(wrap(SEGMENT_1.replace(b";CP=&&RtdInterval=30&&", b"")), "missing_field"),
        pytest.param(wrap(SEGMENT_1.replace(b"ST=32", b"ST=32;ST=32")), "bad_segment", id="dup"),
        pytest.param(wrap(SEGMENT_1.replace(b"Flag=5", b"Flag=x")), "bad_segment", id="flag"),
        pytest.param(wrap(SEGMENT_1.replace(b"Flag=5", b"Flag=256")), "bad_segment"),
        pytest.param(wrap(SEGMENT_1.replace(b"Flag=5", b"Flag=7")), "missing_field", id="d-bit"),
        pytest.param(wrap(SEGMENT_1.replace(b"Flag=5", b"Flag=5;PNUM=2;PNO=1")), "bad_segment"),
        pytest.param(wrap(SEGMENT_1.replace(b"Flag=5", b"Flag=7;PNUM=1;PNO=2")), "bad_segment"),
        pytest.param(wrap(SEGMENT_1.replace(b"ST=32", b"ST=3a")), "bad_segment", id="st"),
        pytest.param(wrap(SEGMENT_1.replace(b"PW=100000", b"PW")), "bad_segment", id="no-eq"),
        pytest.param(wrap(SEGMENT_1.replace(b"=30&&", b"=30")), "bad_cp", id="unclosed-cp"),
        pytest.param(wrap(SEGMENT_1.replace(b"=30&&", b"=30&&&")), "bad_cp", id="amp-in-cp"),
        pytest.param(wrap(SEGMENT_1.replace(b"=30", b"=3=0")), "bad_cp", id="eq-in-value"),
        pytest.param(wrap(SEGMENT_1.replace(b"RtdInterval", b"Rtd Interval")), "bad_cp"),
        pytest.param(wrap(SEGMENT_1.replace(b"=30", b"=30;RtdInterval=40")), "bad_cp"),
        pytest.param(wrap(SEGMENT_1.replace(b"=30", b"=30,a-Rtd=1,a-Rtd=2")), "bad_cp"),
        pytest.param(wrap(SEGMENT_1.replace(b"=30", b"=30;DataTime=1;DataTime=2")), "bad_cp"),
        pytest.param(wrap(SEGMENT_1.replace(b"100000", b"10##00")), "bad_segment", id="hashes"),
        pytest.param(wrap(SEGMENT_1.replace(b";CP", b"CP")), "bad_segment", id="cp-glued"),
    ],
)
def test_malformed_frames(raw: bytes, reason: str) -> None:
    """Each malformed frame raises Hj212Error with its reason and a message."""
    assert _bad(raw) == reason


def test_crc_checked_before_content() -> None:
    """A frame damaged in transit is bad_crc even when the damage is a non-ASCII byte."""
    damaged = FRAME_1.replace(b"100000", b"10\xff000")
    assert _bad(damaged) == "bad_crc"


def test_hj212_error_is_a_validation_error() -> None:
    """Hj212Error is a domain ValidationError (HTTP 422) with a reason."""
    with pytest.raises(ValidationError) as info:
        parse_frame(b"nonsense")
    assert isinstance(info.value, Hj212Error)
    assert info.value.status == 422


# --- Building --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"pw": "a;b"}, "bad_segment"),
        ({"mn": " x"}, "bad_segment"),
        ({"qn": "é"}, "not_ascii"),
        ({"st": "x"}, "bad_segment"),
        ({"flag": -1}, "bad_segment"),
        ({"flag": True}, "bad_segment"),
        ({"pnum": 2}, "missing_field"),
    ],
)
def test_invalid_frames_cannot_be_constructed(kwargs: dict[str, Any], reason: str) -> None:
    """A Frame validates on construction, so every Frame can be built."""
    base: dict[str, Any] = {"qn": "1", "st": "32", "cn": "2011", "pw": "p", "mn": "m", "flag": 4}
    with pytest.raises(Hj212Error) as info:
        Frame(**{**base, **kwargs})
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"params": {"DataTime": "1"}},
        {"params": {"a-b": "1"}},
        {"pollutants": {"a21026": {}}},
        {"pollutants": {"a21026": {"Rtd": "1,2"}}},
        {"data_time": "2024;"},
    ],
)
def test_invalid_cp_cannot_be_constructed(kwargs: dict[str, Any]) -> None:
    """CpData refuses keys and values that would not survive a round trip."""
    with pytest.raises(Hj212Error) as info:
        CpData(**kwargs)
    assert info.value.reason == "bad_cp"


def test_build_rejects_oversized_segment() -> None:
    """A frame whose data segment would exceed 1024 characters is not built."""
    cp = CpData(pollutants={f"a{i:05d}": {"Rtd": "1.0"} for i in range(100)})
    with pytest.raises(Hj212Error) as info:
        build_frame(Frame(qn="1", st="32", cn="2011", pw="p", mn="m", flag=4, cp=cp))
    assert info.value.reason == "too_long"


def test_frames_are_hashable_values() -> None:
    """Equal frames hash equal whatever the order of their CP mappings."""
    a = CpData(params={"x": "1", "y": "2"}, pollutants={"a": {"Rtd": "1", "Flag": "N"}})
    b = CpData(params={"y": "2", "x": "1"}, pollutants={"a": {"Flag": "N", "Rtd": "1"}})
    assert a == b
    assert hash(a) == hash(b)
    assert len({parse_frame(FRAME_1), parse_frame(wrap(SEGMENT_1, lower=True))}) == 1


def test_non_bytes_input() -> None:
    """Anything but bytes is refused with Hj212Error too."""
    with pytest.raises(Hj212Error):
        parse_frame(101)  # type: ignore[arg-type]
    assert salvage_fields(None) == {}  # type: ignore[arg-type]


def test_cp_mappings_are_read_only() -> None:
    """A parsed frame is a frozen value all the way down."""
    frame = parse_frame(FRAME_2)
    with pytest.raises(TypeError):
        frame.cp.pollutants["LA"]["Rtd"] = "0"  # type: ignore[index]


# --- Flags and replies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "reply", "packets", "version"),
    [(4, False, False, 1), (5, True, False, 1), (7, True, True, 1), (0, False, False, 0)],
)
def test_flag_bits(flag: int, reply: bool, packets: bool, version: int) -> None:
    """Flag is V5..V0 D A: A asks for a reply, D marks packets, V=1 is HJ 212-2017."""
    assert hj212.needs_reply(flag) is reply
    assert hj212.has_packets(flag) is packets
    assert hj212.protocol_version(flag) == version
    assert hj212.make_flag(reply=reply, packets=packets, version=version) == flag


def test_data_answer() -> None:
    """A 9014 data answer echoes QN/PW/MN with ST=91, Flag=4 and an empty CP."""
    answer = build_frame(data_answer(parse_frame(FRAME_2)))
    assert answer == wrap(
        b"QN=20160801085857223;ST=91;CN=9014;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&"
    )


def test_request_answer_from_frame() -> None:
    """A 9011 request answer carries QnRtn and the request's QN/PW/MN."""
    answer = request_answer(parse_frame(FRAME_1), hj212.QnRtn.READY)
    assert build_frame(answer) == wrap(
        b"QN=20160801085857223;ST=91;CN=9011;PW=100000;MN=010000A8900016F000169DC0;Flag=4;"
        b"CP=&&QnRtn=1&&"
    )
    assert not hj212.needs_reply(answer.flag)


def test_crc_error_answer_from_salvaged_fields() -> None:
    """A frame with a bad CRC still yields QN/PW/MN for a QnRtn=9 answer."""
    raw = FRAME_1.replace(b"1C80", b"0000")
    assert _bad(raw) == "bad_crc"
    fields = salvage_fields(raw)
    assert fields["QN"] == "20160801085857223"
    assert fields["Flag"] == "5"
    answer = request_answer(fields, 9)
    assert (answer.qn, answer.pw, answer.mn, answer.cp.params) == (
        "20160801085857223",
        "100000",
        "010000A8900016F000169DC0",
        {"QnRtn": "9"},
    )


def test_salvage_skips_unusable_values() -> None:
    """Salvage keeps only values a reply can carry and answers even with nothing recovered."""
    fields = salvage_fields(b"##0050QN=1\xff2;PW=a&b;MN=ok;CP=&&&&")
    assert fields == {"MN": "ok"}
    assert build_frame(request_answer(salvage_fields(b"\x00junk"), 9)).startswith(b"##")


@given(raw=st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_salvage_never_raises(raw: bytes) -> None:
    """Any byte string salvages into a dict a 9011 answer can be built from."""
    build_frame(request_answer(salvage_fields(raw), 9))


# --- Readings --------------------------------------------------------------------------------


def test_cems_minute_readings() -> None:
    """A CEMS minute frame gives minute readings in mg/m³ etc., flags mapped, a99999 unknown."""
    frame = parse_frame(wrap(cems_minute_segment()))
    result = frame_readings(frame, medium=Medium.FLUE_GAS, tz_offset=CST, now=NOW)
    assert result.kind is FrameKind.MINUTE
    assert result.period is Period.MINUTE
    assert result.time == datetime(2024, 6, 1, 3, 59, tzinfo=UTC)
    by_code = {r.pollutant: r for r in result.readings}
    assert set(by_code) == {"so2", "nox", "pm", "o2", "flow", "temperature"}
    assert (by_code["so2"].value, by_code["so2"].unit, by_code["so2"].flag) == (
        28.6,
        "mg/m3",
        Flag.NORMAL,
    )
    assert by_code["temperature"].flag is Flag.OVER_RANGE
    assert by_code["flow"].unit == "m3/s"
    assert all(r.period is Period.MINUTE and r.time == result.time for r in result.readings)
    assert result.converted == {"so2": 31.2, "nox": 44.7, "pm": 3.4}
    assert result.unknown == [("a99999", "Avg", "1.5"), ("a99999", "Flag", "N")]
    assert result.rejections == []


def test_realtime_worked_example() -> None:
    """CN 2011 is a sample; LA (noise) is not in the catalogue and is kept as unknown."""
    result = frame_readings(parse_frame(FRAME_2), medium=Medium.AMBIENT, tz_offset=CST, now=NOW)
    assert result.kind is FrameKind.REALTIME
    assert result.period is Period.SAMPLE
    assert result.time == datetime(2016, 8, 1, 0, 58, 57, tzinfo=UTC)
    assert result.readings == []
    assert result.unknown == [("LA", "Rtd", "50.1")]


def _readings(cn: str, cp: str, medium: Medium = Medium.FLUE_GAS) -> hj212.Hj212Readings:
    seg = f"QN=1;ST=31;CN={cn};PW=p;MN=m;Flag=4;CP=&&DataTime=20240601110000;{cp}&&"
    return frame_readings(parse_frame(wrap(seg.encode())), medium=medium, tz_offset=CST, now=NOW)


@pytest.mark.parametrize(
    ("cn", "period", "field"),
    [
        ("2011", Period.SAMPLE, "Rtd"),
        ("2051", Period.MINUTE, "Avg"),
        ("2061", Period.HOUR, "Avg"),
        ("2031", Period.DAY, "Avg"),
    ],
)
def test_commands_and_periods(cn: str, period: Period, field: str) -> None:
    """2011 reads -Rtd as a sample; 2051/2061/2031 read -Avg as minute/hour/day means."""
    result = _readings(cn, f"a21026-{field}=12.5")
    assert [(r.pollutant, r.period, r.value) for r in result.readings] == [("so2", period, 12.5)]


def test_mean_frames_do_not_fall_back_to_rtd() -> None:
    """An hourly frame with only -Rtd is a rejection, not a mean: no silent fallback."""
    result = _readings("2061", "a21026-Rtd=12.5,a21026-Min=1,a21026-Max=20")
    assert result.readings == []
    assert [(r.code, r.reason) for r in result.rejections] == [("a21026", "missing_value")]


def test_other_commands_yield_no_readings() -> None:
    """A command other than the four data uploads is reported as kind OTHER, not an error."""
    result = frame_readings(parse_frame(FRAME_1), medium=Medium.FLUE_GAS, tz_offset=CST, now=NOW)
    assert result.kind is FrameKind.OTHER
    assert result.cn == "1062"
    assert (result.readings, result.rejections, result.time) == ([], [], None)


def test_missing_flag_is_normal() -> None:
    """A value without -Flag is normal data."""
    assert _readings("2051", "a21026-Avg=1").readings[0].flag is Flag.NORMAL


@pytest.mark.parametrize(
    ("cp", "reason"),
    [
        ("a21026-Avg=abc", "bad_value"),
        ("a21026-Avg=nan", "bad_value"),
        ("a21026-Avg=-1", "negative_value"),
        ("a21026-Avg=1,a21026-Flag=X", "bad_flag"),
        ("w01018-Avg=30", "pollutant_not_for_medium"),
    ],
)
def test_bad_values_are_rejected_alone(cp: str, reason: str) -> None:
    """One bad value is a rejection with its reason; the good value beside it is still read."""
    result = _readings("2051", f"{cp};a19001-Avg=7.0")
    assert [r.pollutant for r in result.readings] == ["o2"]
    assert [(r.code, r.reason) for r in result.rejections] == [(cp[:6], reason)]


def test_signed_temperature_and_ambient_units() -> None:
    """Negative temperatures are valid; ambient SO2 is read in µg/m³."""
    result = _readings("2061", "a01001-Avg=-12.5;a21026-Avg=8", medium=Medium.AMBIENT)
    assert [(r.pollutant, r.value, r.unit) for r in result.readings] == [
        ("temperature", -12.5, "degC"),
        ("so2", 8.0, "ug/m3"),
    ]


def test_negative_flue_static_pressure_is_kept() -> None:
    """A CEMS's flue static pressure (a01013, kPa) is negative under induced draft."""
    result = _readings("2051", "a01013-Avg=-0.42;a19001-Avg=7.0")
    assert [(r.pollutant, r.value, r.unit) for r in result.readings] == [
        ("pressure", -0.42, "kPa"),
        ("o2", 7.0, "%"),
    ]
    assert result.rejections == []


def test_two_codes_for_one_pollutant() -> None:
    """Two HJ 212 codes of one catalogue entry in a frame: the second is rejected, not duplicated."""
    result = _readings("2051", "a01012-Avg=50;a01001-Avg=20")
    assert [r.value for r in result.readings] == [50.0]
    assert [(r.code, r.reason) for r in result.rejections] == [("a01001", "duplicate_pollutant")]


def test_bad_converted_value_is_rejected_but_measured_kept() -> None:
    """A malformed -ZsAvg is a rejection; the measured -Avg still becomes a reading."""
    result = _readings("2051", "a21026-Avg=10,a21026-ZsAvg=x")
    assert [r.value for r in result.readings] == [10.0]
    assert result.converted == {}
    assert [r.reason for r in result.rejections] == ["bad_value"]


@pytest.mark.parametrize(
    ("data_time", "reason"),
    [
        (None, "missing_field"),
        ("2024060111", "bad_datatime"),
        ("20241301110000", "bad_datatime"),
        ("20240601130000", "future_timestamp"),  # 05:00 UTC, an hour after NOW
        ("19990101000000", "timestamp_out_of_range"),
    ],
)
def test_unusable_data_time_rejects_the_frame(data_time: str | None, reason: str) -> None:
    """Without a usable DataTime no value has a time: the frame is refused as a whole."""
    cp = CpData(data_time=data_time, pollutants={"a21026": {"Avg": "1"}})
    frame = Frame(qn="1", st="31", cn="2051", pw="p", mn="m", flag=4, cp=cp)
    with pytest.raises(ValidationError) as info:
        frame_readings(frame, medium=Medium.FLUE_GAS, tz_offset=CST, now=NOW)
    assert info.value.reason == reason


def test_device_time_zone() -> None:
    """DataTime is local to the device: UTC+8 and UTC give instants eight hours apart."""
    frame = parse_frame(wrap(cems_minute_segment()))
    cst = frame_readings(frame, medium=Medium.FLUE_GAS, tz_offset=CST, now=NOW).time
    utc = frame_readings(frame, medium=Medium.FLUE_GAS, tz_offset=timedelta(0), now=NOW + CST).time
    assert cst is not None and utc is not None
    assert utc - cst == CST


# --- Properties ------------------------------------------------------------------------------

_TOKEN_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";,=&#")
tokens = st.text(_TOKEN_CHARS, max_size=12)
names = st.text(
    "abcdefgwxyzABZ0123456789_",
    min_size=1,
    max_size=8,
)
values = st.one_of(
    tokens,
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: f"{x:.3f}"),
)


@st.composite
def cp_data(draw: st.DrawFn) -> CpData:
    params = draw(st.dictionaries(names.filter(lambda n: n != "DataTime"), values, max_size=3))
    pollutants = draw(
        st.dictionaries(names, st.dictionaries(names, values, min_size=1, max_size=4), max_size=5)
    )
    data_time = draw(st.none() | st.from_regex(r"20[0-9]{12}", fullmatch=True))
    return CpData(data_time=data_time, params=params, pollutants=pollutants)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    """Valid frames whose data segment fits 1024 characters."""
    packets = draw(st.booleans())
    flag = hj212.make_flag(
        reply=draw(st.booleans()), packets=packets, version=draw(st.integers(0, 63))
    )
    pnum = draw(st.integers(1, 99)) if packets else None
    pno = draw(st.integers(1, pnum)) if pnum else None
    frame = Frame(
        qn=draw(st.from_regex(r"[0-9]{17}", fullmatch=True)),
        st=draw(st.sampled_from(["21", "22", "23", "31", "32", "39", "91"])),
        cn=draw(st.sampled_from(["2011", "2051", "2061", "2031", "9014", "1062"])),
        pw=draw(tokens),
        mn=draw(tokens),
        flag=flag,
        pnum=pnum,
        pno=pno,
        cp=draw(cp_data()),
    )
    try:
        build_frame(frame)
    except Hj212Error:
        assume(False)
    return frame


@given(frame=frames())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(frame: Frame) -> None:
    """parse_frame(build_frame(f)) == f for every valid frame."""
    raw = build_frame(frame)
    assert parse_frame(raw) == frame
    assert build_frame(parse_frame(raw)) == raw


def _parse_or_typed_error(raw: bytes) -> None:
    try:
        parse_frame(raw)
    except Hj212Error as exc:
        error = exc
    else:
        return
    assert error.reason in REASONS
    assert str(error)


@given(raw=st.binary(max_size=1100))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_hj212_error(raw: bytes) -> None:
    """Any byte string parses or raises Hj212Error, never another exception."""
    _parse_or_typed_error(raw)


@given(frame=frames(), data=st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_frames_raise_only_hj212_error(frame: Frame, data: st.DataObject) -> None:
    """Flipped, truncated or inserted bytes in a valid frame parse or raise Hj212Error."""
    raw = bytearray(build_frame(frame))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] ^= data.draw(st.integers(1, 255))
        elif op == "truncate":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif raw:
            del raw[at]
    _parse_or_typed_error(bytes(raw))


@given(frame=frames(), data=st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_corrupted_segment_is_bad_crc(frame: Frame, data: st.DataObject) -> None:
    """Changing one byte of the data segment is caught by the CRC, with the fields salvageable."""
    raw = bytearray(build_frame(frame))
    length = int(raw[2:6])
    at = data.draw(st.integers(6, 6 + length - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    raw[at] = new
    # A single-byte change always changes this CRC: the high bytes of the CRC-16 table entries
    # are distinct, so the change propagates to every later step.
    with pytest.raises(Hj212Error) as info:
        parse_frame(bytes(raw))
    assert info.value.reason == "bad_crc"


@given(st.binary(max_size=300))
def test_table_driven_crc_equals_annex_a_bit_by_bit(data: bytes) -> None:
    """The per-byte table is the eight Annex A rounds, precomputed: same CRC on any bytes."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            carry = crc & 1
            crc >>= 1
            if carry:
                crc ^= 0xA001
    assert crc16_hj212(data) == crc
