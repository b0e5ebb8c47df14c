"""Conformance with standards.md where the other domain tests leave a gap: HJ 212 replies to
every upload, ppm → mg/m³ per catalogue gas, reference-O2 examples, GB 3095 limits."""

from __future__ import annotations

import pytest

from domain import hj212
from domain.ambient import ambient_limits
from domain.compliance import o2_correct
from domain.hj212 import CpData, Frame, build_frame, crc16_hj212, parse_frame, reply_to
from domain.pollutants import Medium, get_pollutant, to_canonical
from domain.readings import Period

QN, PW, MN = "20160801085857223", "123456", "010000A8900016F000169DC0"


def _upload(cn: str, flag: int) -> Frame:
    return Frame(
        qn=QN, st="31", cn=cn, pw=PW, mn=MN, flag=flag, cp=CpData(data_time="20160801085857")
    )


def _wire(segment: bytes) -> bytes:
    return b"##%04d%s%04X\r\n" % (len(segment), segment, crc16_hj212(segment))


# HJ 212-2017 uploads: real-time, equipment status, daily, running time, minute, hourly data and
# the logger's restart time. A logger that set A=1 waits for 9014 and resends on anything else.
@pytest.mark.parametrize("cn", ["2011", "2021", "2031", "2041", "2051", "2061", "2081"])
def test_every_upload_asking_a_reply_gets_the_9014_data_answer(cn: str) -> None:
    """An upload with Flag=5 (A bit) is answered 9014 (ST=91, Flag=4, empty CP), never 9011."""
    reply = reply_to(parse_frame(build_frame(_upload(cn, flag=5))))
    assert reply is not None
    assert build_frame(reply) == _wire(
        f"QN={QN};ST=91;CN=9014;PW={PW};MN={MN};Flag=4;CP=&&&&".encode()
    )


@pytest.mark.parametrize("cn", ["2011", "2021", "2051", "1062"])
def test_no_reply_without_the_a_bit(cn: str) -> None:
    """Flag=4 (version 2017, A=0) asks for no answer, upload or not."""
    assert reply_to(_upload(cn, flag=4)) is None


def test_request_gets_qnrtn_ready() -> None:
    """A request with A=1 (the standard's CN 1062 example) gets 9011 with QnRtn=1."""
    reply = reply_to(_upload("1062", flag=5))
    assert reply is not None
    assert (reply.cn, reply.st, reply.flag, dict(reply.cp.params)) == (
        "9011",
        "91",
        4,
        {"QnRtn": "1"},
    )
    assert not hj212.needs_reply(reply.flag)  # an answer is never answered


def test_packet_of_a_split_upload_is_answered_too() -> None:
    """Each packet of a split upload (Flag=7: D and A bits, PNUM/PNO) gets its own 9014."""
    frame = Frame(qn=QN, st="31", cn="2061", pw=PW, mn=MN, flag=7, pnum=2, pno=2)
    reply = reply_to(parse_frame(build_frame(frame)))
    assert reply is not None and reply.cn == "9014" and reply.pnum is None


# HJ 75: C = M / 22.4 × ppm at 273 K, 101325 Pa; NOx as NO2.
@pytest.mark.parametrize(
    ("pollutant", "molar_mass"), [("so2", 64), ("no2", 46), ("no", 30), ("co", 28), ("nox", 46)]
)
def test_flue_gas_ppm_to_mg_m3_per_gas(pollutant: str, molar_mass: int) -> None:
    """1 ppm of each catalogue gas in flue gas is M/22.4 mg/m³ (NOx counted as NO2)."""
    value, unit = to_canonical(get_pollutant(pollutant), Medium.FLUE_GAS, 1.0, "ppm")
    assert unit == "mg/m3"
    assert value == pytest.approx(molar_mass / 22.4)


@pytest.mark.parametrize(
    ("measured", "o2", "reference", "expected"),
    [
        (100.0, 9.0, 6.0, 125.0),  # coal-fired boiler: 100 × 15/12
        (30.0, 6.0, 6.0, 30.0),  # at the reference O2 nothing changes
        (40.0, 5.0, 3.0, 45.0),  # oil/gas boiler: 40 × 18/16
        (50.0, 16.0, 15.0, 60.0),  # gas turbine: 50 × 6/5
    ],
)
def test_o2_reference_correction(
    measured: float, o2: float, reference: float, expected: float
) -> None:
    """C = C_measured × (21 − O2_ref) / (21 − O2_measured) at each reference O2 of §2."""
    assert o2_correct(measured, o2, reference) == pytest.approx(expected)


# GB 3095-2012 (µg/m³, CO mg/m³): (pollutant, period) → (grade I, grade II).
GB3095 = {
    ("so2", Period.HOUR): (150, 500),
    ("so2", Period.DAY): (50, 150),
    ("no2", Period.HOUR): (200, 200),
    ("no2", Period.DAY): (80, 80),
    ("co", Period.HOUR): (10, 10),
    ("co", Period.DAY): (4, 4),
    ("o3", Period.HOUR): (160, 200),
    ("o3", Period.DAY): (100, 160),  # daily maximum 8-hour mean
    ("pm10", Period.DAY): (50, 150),
    ("pm25", Period.DAY): (35, 75),
}


@pytest.mark.parametrize("zone", [1, 2])
def test_gb3095_hour_and_day_limits(zone: int) -> None:
    """Zone class 1 takes the grade I limits, class 2 grade II, in µg/m³ (CO mg/m³)."""
    limits = {(lim.pollutant, lim.period): lim for lim in ambient_limits(zone)}
    assert {k: v.value for k, v in limits.items()} == {
        k: float(v[zone - 1]) for k, v in GB3095.items()
    }
    assert {k for k, v in limits.items() if v.unit == "mg/m3"} == {
        ("co", Period.HOUR),
        ("co", Period.DAY),
    }
