"""The HJ 212 stream framer: frames out of a TCP byte stream, whatever the chunking or junk."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.hj212 import Frame, build_frame, crc16_hj212, parse_frame
from domain.hj212_stream import MAX_BUFFERED, FrameSplitter, StreamGarbage
from tests.domain.test_hj212 import FRAME_1, FRAME_2, frames

F1 = FRAME_1.removesuffix(b"\r\n")  # frames as the splitter returns them, without CRLF
F2 = FRAME_2.removesuffix(b"\r\n")


def split(*chunks: bytes) -> list[bytes | StreamGarbage]:
    """Feed ``chunks`` one by one and collect everything the splitter returns."""
    splitter = FrameSplitter()
    out: list[bytes | StreamGarbage] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out


def shape(items: Sequence[bytes | StreamGarbage]) -> list[bytes | tuple[str, bytes]]:
    """Frames as bytes, garbage as (reason, data), for readable expectations."""
    return [item if isinstance(item, bytes) else (item.reason, item.data) for item in items]


def wrap(segment: bytes) -> bytes:
    """A frame without CRLF around ``segment``."""
    return b"##%04d%s%04X" % (len(segment), segment, crc16_hj212(segment))


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([FRAME_1], [F1], id="one-frame"),
        pytest.param([F1], [F1], id="no-crlf"),
        pytest.param([FRAME_1[:7], FRAME_1[7:50], FRAME_1[50:]], [F1], id="across-feeds"),
        pytest.param([FRAME_1[:-1], FRAME_1[-1:]], [F1], id="crlf-split"),
        pytest.param([FRAME_1 + FRAME_2 + FRAME_1], [F1, F2, F1], id="several-in-one-feed"),
        pytest.param([F1 + F2 + b"\r\n" + F1], [F1, F2, F1], id="back-to-back-mixed-crlf"),
        pytest.param(
            [b"junk" + FRAME_1 + b"\x00\xff" + FRAME_2],
            [("no_header", b"junk"), F1, ("no_header", b"\x00\xff"), F2],
            id="garbage-between",
        ),
        pytest.param([b"x#", FRAME_1], [("no_header", b"x"), ("bad_length", b"#"), F1], id="hash"),
        pytest.param([b"##12345" + FRAME_1], [("too_long", b"##12345"), F1], id="length-over-1024"),
        pytest.param([b"##01a" + FRAME_1], [("bad_length", b"##01a"), F1], id="length-not-digits"),
        pytest.param([FRAME_1[:40] + FRAME_2], [("interrupted", FRAME_1[:40]), F2], id="cut-short"),
        pytest.param([F1[:-1] + F2], [("interrupted", F1[:-1]), F2], id="cut-short-in-crc"),
        pytest.param([F1[:-2], F2], [("interrupted", F1[:-2]), F2], id="cut-short-across-feeds"),
        pytest.param([F1[:-4] + b"ZZZZ"], [F1[:-4] + b"ZZZZ"], id="bad-crc-is-still-a-frame"),
        pytest.param([b"\r\n" + FRAME_1], [("no_header", b"\r\n"), F1], id="stray-crlf"),
        pytest.param([b"##0000"], [], id="incomplete-empty-frame"),
        pytest.param([b"##0000" + b"ABCD"], [b"##0000ABCD"], id="empty-segment"),
    ],
)
def test_splitting(chunks: list[bytes], expected: list[bytes | tuple[str, bytes]]) -> None:
    """Each stream shape yields the expected frames and garbage, in order."""
    assert shape(split(*chunks)) == expected


def test_interrupted_frame_does_not_wait() -> None:
    """A frame cut short by the next one is given up at once, not after more bytes arrive."""
    splitter = FrameSplitter()
    out = splitter.feed(b"##0500" + b"QN=1;ST=32" + FRAME_1)
    assert out[-1] == F1
    assert splitter.buffered == 0


def test_partial_frame_is_held() -> None:
    """An incomplete frame waits for its remainder and returns nothing yet."""
    splitter = FrameSplitter()
    assert splitter.feed(FRAME_1[:60]) == []
    assert splitter.buffered == 60
    assert splitter.feed(FRAME_1[60:]) == [F1]


def test_garbage_is_not_held() -> None:
    """Junk without '##' is handed back at once (bar one '#'), so nothing waits behind it."""
    splitter = FrameSplitter()
    assert shape(splitter.feed(b"hello#")) == [("no_header", b"hello")]
    assert splitter.buffered == 1
    assert splitter.feed(b"#0101" + FRAME_1[6:]) == [F1]


def test_close_returns_leftovers() -> None:
    """At end of stream the unfinished frame comes back as garbage."""
    splitter = FrameSplitter()
    splitter.feed(FRAME_1[:30])
    assert shape(splitter.close()) == [("unterminated", FRAME_1[:30])]
    assert splitter.close() == []


def test_memory_is_bounded_under_junk() -> None:
    """A client streaming megabytes of junk and fake headers never grows the buffer."""
    splitter = FrameSplitter()
    junk = (b"##1000" + b"x" * 900 + b"#" * 3 + b"y" * 5000) * 20
    for start in range(0, len(junk), 777):
        assert all(
            isinstance(item, StreamGarbage) for item in splitter.feed(junk[start : start + 777])
        )
        assert splitter.buffered <= MAX_BUFFERED
    assert splitter.feed(FRAME_1)[-1] == F1


def test_max_size_frame() -> None:
    """A frame with the largest data segment (1024) is split whole."""
    segment = b"QN=1;ST=32;CN=2011;PW=p;MN=m;Flag=4;CP=&&a-Rtd=" + b"1" * 975 + b"&&"
    assert len(segment) == 1024
    frame = wrap(segment)
    assert split(frame[:500], frame[500:]) == [frame]
    assert parse_frame(frame).cp.pollutants["a"]["Rtd"] == "1" * 975


_GARBAGE = st.binary(max_size=20).filter(lambda b: b"##" not in b)


@given(
    items=st.lists(st.tuples(frames(), st.booleans(), _GARBAGE), min_size=1, max_size=5),
    lead=_GARBAGE,
    data=st.data(),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_streams(
    items: list[tuple[Frame, bool, bytes]], lead: bytes, data: st.DataObject
) -> None:
    """Random frames, CRLFs and junk in random chunk sizes yield exactly those frames in order."""
    stream = bytearray(lead)
    expected: list[bytes] = []
    for frame, crlf, garbage in items:
        raw = build_frame(frame)
        expected.append(raw.removesuffix(b"\r\n"))
        stream += raw if crlf else raw.removesuffix(b"\r\n")
        stream += garbage
    sizes = data.draw(st.lists(st.integers(1, 300), min_size=1, max_size=40))
    splitter = FrameSplitter()
    out: list[bytes | StreamGarbage] = []
    at = 0
    for size in sizes:
        out += splitter.feed(bytes(stream[at : at + size]))
        at += size
        assert splitter.buffered <= MAX_BUFFERED
    out += splitter.feed(bytes(stream[at:]))
    assert [item for item in out if isinstance(item, bytes)] == expected
    garbage = b"".join(item.data for item in out if isinstance(item, StreamGarbage))
    # Nothing is lost: every byte is a frame, a frame's CRLF, garbage, or a held '#'.
    assert len(garbage) + sum(map(len, expected)) <= len(stream)
