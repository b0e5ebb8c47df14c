"""The HJ 212-2017 codec: frames to and from bytes, CRC, replies, and frames to readings."""

# Only HJ 212-2017 is spoken. HJ/T 212-2005 frames are not translated: their uploads usually lack
# QN and Flag (missing_field), and if one does parse, its old pollutant codes (01, 02, …) are not
# in the catalogue, so its values land in ``unknown`` rather than being misread.

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Final, NamedTuple

from domain.errors import ValidationError
from domain.pollutants import POLLUTANTS, Medium, Pollutant
from domain.readings import Flag, Period, Reading
from domain.validation import check_time, parse_flag, value_reading

HEADER: Final = b"##"
TRAILER: Final = b"\r\n"
MAX_DATA_LENGTH: Final = 1024  # data segment, characters
# '##' + 4-digit length + data segment + 4 hex CRC + CRLF
MAX_FRAME_BYTES: Final = len(HEADER) + 4 + MAX_DATA_LENGTH + 4 + len(TRAILER)

# ST system codes and CN command codes Sunlight itself uses.
ST_SYSTEM: Final = "91"
CN_REALTIME, CN_MINUTE, CN_HOUR, CN_DAY = "2011", "2051", "2061", "2031"
CN_REQUEST_ANSWER, CN_EXECUTION_RESULT, CN_DATA_ANSWER = "9011", "9012", "9014"
CN_STATUS, CN_RUNNING_TIME, CN_RESTART_TIME = "2021", "2041", "2081"
# The uploads a data logger sends of its own accord (HJ 2017 "上传…" commands): pollutant data
# (real-time, minute, hourly, daily), equipment status, equipment running time and the logger's
# restart time. Each is answered with the 9014 data answer when its Flag asks for a reply; only
# requests get the 9011 request answer. A logger that uploads status with A=1 waits for 9014 and
# resends on anything else.
UPLOAD_COMMANDS: Final = frozenset(
    {CN_REALTIME, CN_STATUS, CN_DAY, CN_RUNNING_TIME, CN_MINUTE, CN_HOUR, CN_RESTART_TIME}
)

# Flag = V5 V4 V3 V2 V1 V0 D A (one byte): A = reply required, D = PNUM/PNO present,
# V = protocol version, 000001 for HJ 212-2017.
FLAG_A: Final = 0b01
FLAG_D: Final = 0b10
VERSION_2017: Final = 1
# Replies ask for no reply of their own: version 2017, D = 0, A = 0 → 4 (HJ 212-2017 Annex C
# examples of 9011/9014 carry Flag=4).
REPLY_FLAG: Final = VERSION_2017 << 2


class QnRtn(IntEnum):
    """Request answer codes (CN 9011 ``QnRtn``)."""

    READY = 1
    REJECTED = 2
    PW_ERROR = 3
    MN_ERROR = 4
    ST_ERROR = 5
    FLAG_ERROR = 6
    QN_ERROR = 7
    CN_ERROR = 8
    CRC_ERROR = 9
    UNKNOWN = 100


class Hj212Error(ValidationError):
    """A byte string that is not a well-formed HJ 212-2017 frame, or a frame that cannot be built.

    ``reason`` is one of bad_header, bad_length, too_long, bad_crc, not_ascii, bad_segment,
    missing_field, bad_cp, bad_datatime. Only bad_crc asks the sender to resend (QnRtn=9), so it
    is kept distinct from every other fault.
    """


def _error(message: str, reason: str) -> Hj212Error:
    return Hj212Error(message, reason=reason)


# --- CRC (Annex A) ---------------------------------------------------------------------------


def crc16_hj212(data: bytes) -> int:
    """The HJ 212-2017 Annex A CRC of ``data`` (the data segment only).

    It is not CRC-16/MODBUS: the register is shifted right by a byte and XORed with the input
    byte before the eight rounds, so the two disagree on every realistic input.
    """
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        # (crc >> 8) ^ byte is below 256, so the rounds' own shift leaves only the table entry.
        crc = table[(crc >> 8) ^ byte]
    return crc


def _eight_rounds(value: int) -> int:
    """Annex A's eight shift-and-XOR rounds on a register below 256: a 256-entry table."""
    for _ in range(8):
        carry = value & 1
        value >>= 1
        if carry:
            value ^= 0xA001
    return value


_CRC_TABLE: Final = tuple(_eight_rounds(i) for i in range(256))


# --- Frame values ----------------------------------------------------------------------------

_TOKEN_FORBIDDEN: Final = frozenset(";=&")
_CP_FORBIDDEN: Final = frozenset(";,=&")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_]+", re.ASCII)
_DIGITS_RE: Final = re.compile(r"[0-9]+", re.ASCII)
_DATA_TIME: Final = "DataTime"


def _clean_value_re(forbidden: frozenset[str]) -> re.Pattern[str]:
    """Printable ASCII without the separators in ``forbidden`` and without surrounding spaces."""
    allowed = "".join(re.escape(chr(c)) for c in range(0x21, 0x7F) if chr(c) not in forbidden)
    return re.compile(f"(?:[{allowed}](?:[ {allowed}]*[{allowed}])?)?", re.ASCII)


_CLEAN_VALUE: Final = {
    forbidden: _clean_value_re(forbidden) for forbidden in (_TOKEN_FORBIDDEN, _CP_FORBIDDEN)
}


def _check_value(what: str, value: object, forbidden: frozenset[str], reason: str) -> str:
    """A value that survives a build/parse round trip: printable ASCII, no separators."""
    # One regex answers for the usual clean value; anything else takes the character walk,
    # which names the first fault.
    if isinstance(value, str) and _CLEAN_VALUE[forbidden].fullmatch(value) and "##" not in value:
        return value
    return _walk_value(what, value, forbidden, reason)


def _walk_value(what: str, value: object, forbidden: frozenset[str], reason: str) -> str:
    """``_check_value`` character by character: raises naming the first fault."""
    if not isinstance(value, str):
        raise Hj212Error(f"{what} must be a string, not {type(value).__name__}", reason=reason)
    if value != value.strip():
        raise Hj212Error(f"{what} {value!r} has surrounding whitespace", reason=reason)
    for ch in value:
        if not " " <= ch <= "~":
            raise Hj212Error(f"{what} {value!r} is not printable ASCII", reason="not_ascii")
        if ch in forbidden:
            raise Hj212Error(f"{what} {value!r} contains the separator {ch!r}", reason=reason)
    if "##" in value:
        # '##' is the frame header: a stream framer resynchronises on it.
        raise Hj212Error(f"{what} {value!r} contains '##'", reason=reason)
    return value


def _check_name(what: str, name: object) -> str:
    if name in _GOOD_NAMES:  # codes and field names repeat in every frame
        return name  # type: ignore[return-value]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise Hj212Error(f"{what} {name!r} is not a code of letters and digits", reason="bad_cp")
    if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
        _GOOD_NAMES.add(name)
    return name


_GOOD_NAMES: Final[set[object]] = set()
_GOOD_NAMES_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class CpData:
    """The CP data area: ``DataTime``, other top-level keys, and fields per pollutant code.

    Values stay the raw strings of the frame (``{"a21026": {"Avg": "12.5", "Flag": "N"}}``);
    ``frame_readings`` does the typed conversion. The mappings are read-only and keep the
    frame's order, which ``build_frame`` reproduces.
    """

    data_time: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    pollutants: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def _parsed(
        cls,
        data_time: str | None,
        params: dict[str, str],
        pollutants: dict[str, dict[str, str]],
    ) -> CpData:
        """A CP area ``_parse_cp`` has already checked field by field, without checking it twice:
        the parser vouches for every name and value (it falls back to the checking
        constructor whenever it cannot)."""
        cp = object.__new__(cls)
        object.__setattr__(cp, "data_time", data_time)
        object.__setattr__(cp, "params", MappingProxyType(params))
        object.__setattr__(
            cp,
            "pollutants",
            MappingProxyType({code: MappingProxyType(f) for code, f in pollutants.items()}),
        )
        return cp

    def __post_init__(self) -> None:
        if self.data_time is not None:
            _check_value(_DATA_TIME, self.data_time, _CP_FORBIDDEN, "bad_cp")
        params: dict[str, str] = {}
        for key, value in self.params.items():
            _check_name("CP key", key)
            if key == _DATA_TIME:
                raise Hj212Error("DataTime belongs in data_time, not params", reason="bad_cp")
            params[key] = _check_value(f"CP {key}", value, _CP_FORBIDDEN, "bad_cp")
        pollutants: dict[str, Mapping[str, str]] = {}
        for code, fields in self.pollutants.items():
            _check_name("pollutant code", code)
            if not fields:
                raise Hj212Error(f"pollutant {code!r} has no fields", reason="bad_cp")
            checked = {
                _check_name(f"{code} field", suffix): _check_value(
                    f"CP {code}-{suffix}", value, _CP_FORBIDDEN, "bad_cp"
                )
                for suffix, value in fields.items()
            }
            pollutants[code] = MappingProxyType(checked)
        object.__setattr__(self, "params", MappingProxyType(params))
        object.__setattr__(self, "pollutants", MappingProxyType(pollutants))

    def __hash__(self) -> int:
        # Equality of the mappings ignores order, so the hash must too.
        return hash(
            (
                self.data_time,
                frozenset(self.params.items()),
                frozenset((code, frozenset(f.items())) for code, f in self.pollutants.items()),
            )
        )


@dataclass(frozen=True, slots=True)
class Frame:
    """One HJ 212-2017 frame's data segment, as raw strings (``flag`` and packet numbers as ints).

    Constructing a frame validates it, so every ``Frame`` can be built and parses back equal.
    """

    qn: str
    st: str
    cn: str
    pw: str
    mn: str
    flag: int
    pnum: int | None = None
    pno: int | None = None
    cp: CpData = field(default_factory=CpData)

    def __post_init__(self) -> None:
        for name in ("qn", "pw", "mn"):
            _check_value(name.upper(), getattr(self, name), _TOKEN_FORBIDDEN, "bad_segment")
        for name in ("st", "cn"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _DIGITS_RE.fullmatch(value):
                raise Hj212Error(f"{name.upper()} {value!r} is not a number", reason="bad_segment")
        if isinstance(self.flag, bool) or not isinstance(self.flag, int):
            raise Hj212Error(f"Flag {self.flag!r} is not an integer", reason="bad_segment")
        if not 0 <= self.flag <= 0xFF:
            raise Hj212Error(f"Flag {self.flag} does not fit one byte", reason="bad_segment")
        if (self.pnum is None) != (self.pno is None):
            raise Hj212Error("PNUM and PNO come together", reason="missing_field")
        if has_packets(self.flag) and self.pnum is None:
            raise Hj212Error(
                f"Flag {self.flag} has the D bit set but PNUM/PNO are missing",
                reason="missing_field",
            )
        if self.pnum is not None and self.pno is not None:
            if not has_packets(self.flag):
                raise Hj212Error(
                    f"PNUM/PNO present but Flag {self.flag} has no D bit", reason="bad_segment"
                )
            for name, number in (("PNUM", self.pnum), ("PNO", self.pno)):
                if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                    raise _error(f"{name} {number!r} is not a positive integer", "bad_segment")
            if self.pno > self.pnum:
                raise Hj212Error(f"PNO {self.pno} exceeds PNUM {self.pnum}", reason="bad_segment")
        if not isinstance(self.cp, CpData):
            raise Hj212Error("cp must be CpData", reason="bad_cp")


# --- Flag bits -------------------------------------------------------------------------------


def needs_reply(flag: int) -> bool:
    """A bit: the sender waits for an answer (9014 for data, 9011 for requests)."""
    return bool(flag & FLAG_A)


def has_packets(flag: int) -> bool:
    """D bit: the frame is one packet of several and carries PNUM/PNO."""
    return bool(flag & FLAG_D)


def protocol_version(flag: int) -> int:
    """V5..V0: 1 for HJ 212-2017 (0 is what HJ/T 212-2005 devices send)."""
    return (flag >> 2) & 0b111111


def make_flag(*, reply: bool, packets: bool = False, version: int = VERSION_2017) -> int:
    """The Flag value with the given bits."""
    return (version << 2) | (FLAG_D if packets else 0) | (FLAG_A if reply else 0)


# --- Bytes → Frame ---------------------------------------------------------------------------

_HEADER_KEYS: Final = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")
_REQUIRED_KEYS: Final = ("QN", "ST", "CN", "PW", "MN", "Flag")
_CP_OPEN: Final = "CP=&&"
_CP_CLOSE: Final = "&&"
_HEX_RE: Final = re.compile(rb"[0-9A-Fa-f]*")
_PRINTABLE_RE: Final = re.compile(rb"[\x20-\x7e]*")


def parse_frame(raw: bytes) -> Frame:
    """Check and decode one frame; every fault raises ``Hj212Error`` and nothing else.

    Accepted quirks seen in the field: lowercase hex CRC, a missing CRLF, whitespace around
    keys and values. The CRC is checked before anything inside the data segment, so a frame
    damaged in transit reports ``bad_crc`` (answered with QnRtn=9 so the sender resends).
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _error(f"expected bytes, not {type(raw).__name__}", "bad_header")
    data = bytes(raw)
    if data.endswith(TRAILER):
        data = data[: -len(TRAILER)]
    if not data.startswith(HEADER):
        raise _error(f"frame does not start with '##': {data[:8]!r}", "bad_header")
    length_field = data[2:6]
    if len(length_field) < 4 or not length_field.isdigit():  # bytes: ASCII digits only
        raise _error(f"length field {length_field!r} is not four digits", "bad_length")
    length = int(length_field)
    if length > MAX_DATA_LENGTH:
        raise _error(f"data segment of {length} exceeds {MAX_DATA_LENGTH} characters", "too_long")
    body = data[6:]
    if len(body) != length + 4:
        raise _error(
            f"length field says {length} + 4 CRC characters, frame has {len(body)}", "bad_length"
        )
    segment, crc_field = body[:length], body[length:]
    if not _HEX_RE.fullmatch(crc_field):
        raise _error(f"CRC field {crc_field!r} is not four hex digits", "bad_crc")
    expected = crc16_hj212(segment)
    if int(crc_field, 16) != expected:
        raise _error(
            f"CRC {crc_field.decode('ascii')} does not match the data segment ({expected:04X})",
            "bad_crc",
        )
    if not _PRINTABLE_RE.fullmatch(segment):
        raise _error("data segment is not printable ASCII", "not_ascii")
    return _parse_segment(segment.decode("ascii"))


def _split_pair(part: str, reason: str) -> tuple[str, str]:
    key, eq, value = part.partition("=")
    if not eq:
        raise _error(f"{part!r} is not key=value", reason)
    return key.strip(), value.strip()


def _parse_segment(segment: str) -> Frame:
    at = segment.find(_CP_OPEN)
    if at < 0:
        raise _error("data segment has no CP=&&…&&", "missing_field")
    if at > 0 and segment[at - 1] != ";":
        raise _error("CP=&& does not follow a ';'", "bad_segment")
    rest = segment[at + len(_CP_OPEN) :]
    if not rest.endswith(_CP_CLOSE):
        raise _error("CP data area is not closed by '&&' at the end of the segment", "bad_cp")
    header: dict[str, str] = {}
    header_text = segment[: at - 1] if at else ""
    for part in header_text.split(";") if header_text else ():
        key, value = _split_pair(part, "bad_segment")
        if key not in _HEADER_KEYS:
            raise _error(f"unknown field {key!r} (field names are case-sensitive)", "bad_segment")
        if key in header:
            raise _error(f"field {key} appears twice", "bad_segment")
        header[key] = value
    missing = [key for key in _REQUIRED_KEYS if key not in header]
    if missing:
        raise _error(f"missing field(s) {', '.join(missing)}", "missing_field")
    if not _DIGITS_RE.fullmatch(header["Flag"]):
        raise _error(f"Flag {header['Flag']!r} is not a number", "bad_segment")
    numbers: dict[str, int | None] = {}
    for key in ("PNUM", "PNO"):
        text = header.get(key)
        if text is not None and not _DIGITS_RE.fullmatch(text):
            raise _error(f"{key} {text!r} is not a number", "bad_segment")
        numbers[key] = int(text) if text is not None else None
    return Frame(
        qn=header["QN"],
        st=header["ST"],
        cn=header["CN"],
        pw=header["PW"],
        mn=header["MN"],
        flag=int(header["Flag"]),
        pnum=numbers["PNUM"],
        pno=numbers["PNO"],
        cp=_parse_cp(rest[: -len(_CP_CLOSE)]),
    )


# A CP area as loggers send it: name[-field]=value pairs joined by ';' or ',', no spaces, no
# '#', no '&', values without '='. Such an area needs none of the loop's tolerance or checks
# (its names are codes, its values clean), so two regex passes read it.
_PLAIN_CP_NAME: Final = r"[A-Za-z0-9_]+"
_PLAIN_CP_VALUE: Final = (
    "[" + "".join(re.escape(chr(c)) for c in range(0x21, 0x7F) if chr(c) not in ";,=&#") + "]*"
)
_PLAIN_CP_PAIR: Final = f"({_PLAIN_CP_NAME})(?:-({_PLAIN_CP_NAME}))?=({_PLAIN_CP_VALUE})"
_PLAIN_CP_RE: Final = re.compile(f"{_PLAIN_CP_PAIR}(?:[;,]{_PLAIN_CP_PAIR})*", re.ASCII)
_PLAIN_CP_PAIR_RE: Final = re.compile(_PLAIN_CP_PAIR, re.ASCII)


def _parse_plain_cp(text: str) -> CpData | None:
    """The CP area of ``text`` when it is plain (see above) and names nothing twice; ``None``
    sends it through the loop, which also names the fault."""
    if not _PLAIN_CP_RE.fullmatch(text):
        return None
    data_time: str | None = None
    params: dict[str, str] = {}
    pollutants: dict[str, dict[str, str]] = {}
    for key, suffix, value in _PLAIN_CP_PAIR_RE.findall(text):
        if suffix:  # code-field (a name is never empty, so "" means no '-')
            fields = pollutants.get(key)
            if fields is None:
                fields = pollutants[key] = {}
            elif suffix in fields:
                return None
            fields[suffix] = value
        elif key == _DATA_TIME:
            if data_time is not None:
                return None
            data_time = value
        elif key in params:
            return None
        else:
            params[key] = value
    return CpData._parsed(data_time, params, pollutants)


def _parse_cp(text: str, *, check_values: bool = False) -> CpData:
    """Pollutants are separated by ';', the fields of one pollutant by ','.

    Names are checked here as they are read. Values need no second look when the area is
    printable ASCII with no '&', no '##' and exactly one '=' per field (the splits leave no
    ';' or ',' and no surrounding whitespace in a value); otherwise, or with ``check_values``,
    ``CpData``'s own checks run and name the first bad value.
    """
    if not check_values and (plain := _parse_plain_cp(text)) is not None:
        return plain
    data_time: str | None = None
    params: dict[str, str] = {}
    pollutants: dict[str, dict[str, str]] = {}
    pairs = 0
    for group in text.split(";"):
        for part in group.split(","):
            if not part.strip():
                continue  # tolerated: 'CP=&& &&', a trailing ';' as in 'ExeRtn=1;'
            pairs += 1
            key, value = _split_pair(part, "bad_cp")
            code, dash, suffix = key.rpartition("-")
            if not dash:
                if key == _DATA_TIME:
                    if data_time is not None:
                        raise _error("DataTime appears twice", "bad_cp")
                    data_time = value
                elif key in params:
                    raise _error(f"CP key {key} appears twice", "bad_cp")
                else:
                    params[_check_name("CP key", key)] = value
                continue
            fields = pollutants.get(code)
            if fields is None:
                fields = pollutants[_check_name("pollutant code", code)] = {}
            if suffix in fields:
                raise _error(f"CP field {key} appears twice", "bad_cp")
            fields[_check_name(f"{code} field", suffix)] = value
    if (
        check_values
        or not (text.isascii() and text.isprintable())
        or "&" in text
        or "##" in text
        or text.count("=") != pairs
    ):
        return CpData(data_time=data_time, params=params, pollutants=pollutants)
    return CpData._parsed(data_time, params, pollutants)


def salvage_fields(raw: bytes) -> dict[str, str]:
    """QN, ST, CN, PW, MN, Flag, PNUM, PNO read best-effort from a frame that failed to parse.

    Used to answer a frame whose CRC failed (QnRtn=9): nothing is validated beyond each value
    being usable in a reply, and it never raises.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        return {}
    text = bytes(raw).decode("ascii", errors="replace")
    if text.startswith("##"):
        text = text[6:]
    text = text.split(_CP_OPEN, 1)[0]
    found: dict[str, str] = {}
    for part in text.split(";"):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in _HEADER_KEYS or key in found:
            continue
        try:
            found[key] = _check_value(key, value, _TOKEN_FORBIDDEN, "bad_segment")
        except Hj212Error:
            continue
    return found


# --- Frame → bytes ---------------------------------------------------------------------------


def _segment(frame: Frame) -> str:
    parts = [
        f"QN={frame.qn}",
        f"ST={frame.st}",
        f"CN={frame.cn}",
        f"PW={frame.pw}",
        f"MN={frame.mn}",
        f"Flag={frame.flag}",
    ]
    if frame.pnum is not None:
        parts += [f"PNUM={frame.pnum}", f"PNO={frame.pno}"]
    groups: list[str] = []
    if frame.cp.data_time is not None:
        groups.append(f"{_DATA_TIME}={frame.cp.data_time}")
    groups += [f"{key}={value}" for key, value in frame.cp.params.items()]
    groups += [
        ",".join(f"{code}-{suffix}={value}" for suffix, value in fields.items())
        for code, fields in frame.cp.pollutants.items()
    ]
    return ";".join(parts) + ";" + _CP_OPEN + ";".join(groups) + _CP_CLOSE


def build_frame(frame: Frame) -> bytes:
    """The wire form of ``frame``: header, length, data segment, CRC and CRLF."""
    segment = _segment(frame).encode("ascii")
    if len(segment) > MAX_DATA_LENGTH:
        raise _error(
            f"data segment of {len(segment)} exceeds {MAX_DATA_LENGTH} characters", "too_long"
        )
    return b"%s%04d%s%04X%s" % (HEADER, len(segment), segment, crc16_hj212(segment), TRAILER)


# --- Replies ---------------------------------------------------------------------------------


def data_answer(frame: Frame) -> Frame:
    """CN 9014 for a data upload whose Flag asks for a reply: same QN/PW/MN, empty CP."""
    return Frame(
        qn=frame.qn, st=ST_SYSTEM, cn=CN_DATA_ANSWER, pw=frame.pw, mn=frame.mn, flag=REPLY_FLAG
    )


def request_answer(frame_or_fields: Frame | Mapping[str, str], qn_rtn: int) -> Frame:
    """CN 9011 with ``QnRtn``, from a parsed frame or the fields ``salvage_fields`` recovered.

    Fields that could not be recovered are sent empty: the sender matches the answer by QN.
    """
    if isinstance(frame_or_fields, Frame):
        qn, pw, mn = frame_or_fields.qn, frame_or_fields.pw, frame_or_fields.mn
    else:
        qn, pw, mn = (frame_or_fields.get(key, "") for key in ("QN", "PW", "MN"))
    if isinstance(qn_rtn, bool) or not isinstance(qn_rtn, int) or qn_rtn < 0:
        raise _error(f"QnRtn {qn_rtn!r} is not a non-negative integer", "bad_cp")
    return Frame(
        qn=qn,
        st=ST_SYSTEM,
        cn=CN_REQUEST_ANSWER,
        pw=pw,
        mn=mn,
        flag=REPLY_FLAG,
        cp=CpData(params={"QnRtn": str(int(qn_rtn))}),
    )


def reply_to(frame: Frame) -> Frame | None:
    """The answer an accepted frame's Flag asks for: ``None`` without the A bit, the 9014 data
    answer to an upload (``UPLOAD_COMMANDS``), the 9011 request answer ``QnRtn=1`` otherwise."""
    if not needs_reply(frame.flag):
        return None
    if frame.cn in UPLOAD_COMMANDS:
        return data_answer(frame)
    return request_answer(frame, QnRtn.READY)


# --- Frame → readings ------------------------------------------------------------------------


class FrameKind(StrEnum):
    """What a frame carries for Sunlight: one of the four data uploads, or something else."""

    REALTIME = "realtime"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    OTHER = "other"


class Rejection(NamedTuple):
    """A value of a known pollutant that could not be accepted."""

    code: str  # the HJ 212 code as sent, e.g. a21026
    reason: str
    detail: str


class UnknownField(NamedTuple):
    """A field of a pollutant code that is not in the catalogue; kept, not an error."""

    code: str
    field: str
    value: str


@dataclass(frozen=True, slots=True)
class Hj212Readings:
    """The readings in one frame and what could not become a reading.

    ``converted`` holds the O2-converted values (``-ZsRtd``/``-ZsAvg``) by Sunlight pollutant
    code in the canonical unit: they are the device's own conversion, never the measured value,
    and are kept for rules that compare them with Sunlight's own correction.
    """

    kind: FrameKind
    cn: str
    time: datetime | None = None
    readings: list[Reading] = field(default_factory=list)
    converted: dict[str, float] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    unknown: list[UnknownField] = field(default_factory=list)

    @property
    def period(self) -> Period | None:
        return _PERIODS.get(self.kind)


_KINDS: Final[dict[str, FrameKind]] = {
    CN_REALTIME: FrameKind.REALTIME,
    CN_MINUTE: FrameKind.MINUTE,
    CN_HOUR: FrameKind.HOUR,
    CN_DAY: FrameKind.DAY,
}
_PERIODS: Final[dict[FrameKind, Period]] = {
    FrameKind.REALTIME: Period.SAMPLE,
    FrameKind.MINUTE: Period.MINUTE,
    FrameKind.HOUR: Period.HOUR,
    FrameKind.DAY: Period.DAY,
}
# HJ 212-2017 code → catalogue entry. Several codes may share one entry (a01012 flue-gas and
# a01001 air temperature are both 'temperature').
BY_HJ212_CODE: Final[Mapping[str, Pollutant]] = MappingProxyType(
    {code: p for p in POLLUTANTS for code in p.hj212}
)
_NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATA_TIME_RE: Final = re.compile(r"[0-9]{14}")


def parse_data_time(text: str | None, tz_offset: timedelta, now: datetime) -> datetime:
    """``DataTime=YYYYMMDDhhmmss`` in device-local time at ``tz_offset``, as checked UTC."""
    if text is None:
        raise _error("data upload without DataTime", "missing_field")
    utc = _data_time_utc(text, tz_offset)
    if utc is None:
        if not _DATA_TIME_RE.fullmatch(text):
            raise _error(f"DataTime {text!r} is not YYYYMMDDhhmmss", "bad_datatime")
        raise _error(f"DataTime {text!r} is not a calendar time", "bad_datatime")
    if utc is _OUT_OF_RANGE:
        # Year 1 east of Greenwich or year 9999 west of it: no UTC instant, and a clock fault
        # either way (before 2000, or far in the future).
        zone = timezone(tz_offset).tzname(None)
        raise ValidationError(
            f"DataTime {text!r} in {zone} is outside the calendar in UTC",
            reason="timestamp_out_of_range" if text < "2000" else "future_timestamp",
        )
    return check_time(utc, now)


_OUT_OF_RANGE: Final = datetime.min.replace(tzinfo=UTC)  # a marker, never a reading's time


@lru_cache(maxsize=4096)
def _data_time_utc(text: str, tz_offset: timedelta) -> datetime | None:
    """The UTC instant of a DataTime, ``None`` when it is not one, ``_OUT_OF_RANGE`` when it
    cannot be expressed in UTC (year 1 east of Greenwich). Loggers on one clock send the same
    DataTime for a minute, so each is worked out once: 14 digits are exactly the fields of
    ``%Y%m%d%H%M%S`` at full width, which the int slices read."""
    if not _DATA_TIME_RE.fullmatch(text):
        return None
    try:
        local = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
            tzinfo=timezone(tz_offset),
        )
    except ValueError:
        return None
    try:
        return local.astimezone(UTC)
    except OverflowError:
        return _OUT_OF_RANGE


def _reading(
    pollutant: Pollutant,
    code: str,
    name: str,
    fields: Mapping[str, str],
    *,
    flag: Flag,
    time: datetime,
    period: Period,
    medium: Medium,
) -> Reading:
    """One field as a reading in the canonical unit; the frame's unit is that unit (no units
    travel in HJ 212), so the check is mostly the number, the sign and the medium."""
    text = fields[name]
    if not _NUMBER_RE.fullmatch(text):
        raise ValidationError(f"{code}-{name}={text!r} is not a number", reason="bad_value")
    # ``time`` is parse_data_time's UTC instant: the positional form skips re-checking it.
    return value_reading(
        pollutant.code, float(text), pollutant.unit_for(medium), flag, time, period, medium
    )


def frame_readings(
    frame: Frame, *, medium: Medium, tz_offset: timedelta, now: datetime
) -> Hj212Readings:
    """Typed, validated readings from a data upload (CN 2011/2051/2061/2031).

    Real-time data (2011) uses ``-Rtd``; minute/hour/day data use ``-Avg`` and nothing else: an
    instantaneous ``-Rtd`` is not a mean, and HJ 75 validity counts assume true means, so a
    mean frame without ``-Avg`` for a pollutant is a rejection, not a fallback. Values are in
    the pollutant's canonical unit for ``medium`` (HJ 212 frames carry no units). Each value
    stands alone: one bad value is a rejection beside the good readings. Other commands yield
    ``kind=OTHER`` and nothing else. Raises ``ValidationError`` only when the frame as a whole
    has no usable time (DataTime missing, malformed, in the future or too old).
    """
    kind = _KINDS.get(frame.cn, FrameKind.OTHER)
    period = _PERIODS.get(kind)
    if period is None:
        return Hj212Readings(kind=kind, cn=frame.cn)
    # verify: DataTime of minute/hour/day data is taken as the start of the interval.
    time = parse_data_time(frame.cp.data_time, tz_offset, now)
    value_field, converted_field = ("Rtd", "ZsRtd") if period is Period.SAMPLE else ("Avg", "ZsAvg")
    result = Hj212Readings(kind=kind, cn=frame.cn, time=time)
    seen: dict[str, str] = {}  # Sunlight code → the HJ 212 code that supplied it
    for code, fields in frame.cp.pollutants.items():
        pollutant = BY_HJ212_CODE.get(code)
        if pollutant is None:
            result.unknown.extend(UnknownField(code, name, v) for name, v in fields.items())
            continue
        if pollutant.code in seen:
            result.rejections.append(
                Rejection(
                    code,
                    "duplicate_pollutant",
                    f"{code} and {seen[pollutant.code]} are both {pollutant.code}",
                )
            )
            continue
        seen[pollutant.code] = code
        try:
            flag = parse_flag(fields.get("Flag"))
        except ValidationError as exc:
            result.rejections.append(Rejection(code, exc.reason, str(exc)))
            continue
        if converted_field in fields:
            try:
                reading = _reading(
                    pollutant,
                    code,
                    converted_field,
                    fields,
                    flag=flag,
                    time=time,
                    period=period,
                    medium=medium,
                )
                result.converted[pollutant.code] = reading.value
            except ValidationError as exc:
                result.rejections.append(Rejection(code, exc.reason, f"{converted_field}: {exc}"))
        if value_field not in fields:
            result.rejections.append(
                Rejection(
                    code,
                    "missing_value",
                    f"{kind.value} data needs {code}-{value_field}; has {', '.join(fields)}",
                )
            )
            continue
        try:
            result.readings.append(
                _reading(
                    pollutant,
                    code,
                    value_field,
                    fields,
                    flag=flag,
                    time=time,
                    period=period,
                    medium=medium,
                )
            )
        except ValidationError as exc:
            result.rejections.append(Rejection(code, exc.reason, str(exc)))
    return result
