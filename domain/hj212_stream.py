"""Splitting an HJ 212 TCP byte stream into candidate frames: the incremental framer, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from domain.hj212 import HEADER, MAX_DATA_LENGTH, MAX_FRAME_BYTES, TRAILER

_PREFIX: Final = len(HEADER) + 4  # '##' + 4-digit length
_CRC: Final = 4
# The most the splitter ever holds between feeds: one incomplete frame without its CRLF.
MAX_BUFFERED: Final = MAX_FRAME_BYTES - len(TRAILER)


@dataclass(frozen=True, slots=True)
class StreamGarbage:
    """Bytes between frames that belong to no frame, and why they were skipped."""

    data: bytes
    reason: str  # no_header | bad_length | too_long | interrupted | unterminated


class FrameSplitter:
    """Cut a stream into candidate frames by their declared length; ``parse_frame`` judges them.

    Frames are found by '##' and measured by their 4-digit length, so a frame may arrive across
    feeds, several in one feed, with or without CRLF. Bytes that cannot start a frame are handed
    back as ``StreamGarbage`` at once, never held, so junk neither blocks later frames nor grows
    memory: at most ``MAX_BUFFERED`` bytes (one incomplete frame) stay buffered between feeds.
    A candidate whose data or CRC region contains the next '##' was cut short (the sender
    restarted), so it is reported as garbage and the stream resynchronises on that '##' without
    waiting for bytes that will never come. A complete candidate with a bad CRC is still a
    frame: the codec reports it as ``bad_crc``, which the sender is told (QnRtn=9).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._after_frame = False  # the next bytes may be the previous frame's CRLF

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | StreamGarbage]:
        """Add received bytes; return the frames and garbage they complete, in stream order."""
        self._buffer += data
        out: list[bytes | StreamGarbage] = []
        while self._step(out):
            pass
        return out

    def close(self) -> list[StreamGarbage]:
        """At end of stream: whatever is still buffered, as garbage."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        self._after_frame = False
        return [StreamGarbage(rest, "unterminated")] if rest else []

    def _garbage(self, out: list[bytes | StreamGarbage], end: int, reason: str) -> None:
        out.append(StreamGarbage(bytes(self._buffer[:end]), reason))
        del self._buffer[:end]

    def _resync(self, out: list[bytes | StreamGarbage], reason: str) -> None:
        """Drop the '##' at the start and everything up to the next '##' (or a lone '#')."""
        nxt = self._buffer.find(HEADER, 1)
        if nxt < 0:
            nxt = len(self._buffer) - 1 if self._buffer.endswith(b"#") else len(self._buffer)
        self._garbage(out, max(nxt, 1), reason)

    def _step(self, out: list[bytes | StreamGarbage]) -> bool:
        """Consume what can be decided now; False when more bytes are needed."""
        buf = self._buffer
        if not buf:
            return False
        if self._after_frame:
            if buf[:1] == b"\r" and len(buf) == 1:
                return False  # the LF may follow in the next feed
            if buf.startswith(TRAILER):
                del buf[: len(TRAILER)]
            self._after_frame = False
            return True
        start = buf.find(HEADER)
        if start != 0:
            # Keep a trailing '#': it may be the first half of the next header.
            end = start if start > 0 else len(buf) - (1 if buf.endswith(b"#") else 0)
            if end == 0:
                return False
            self._garbage(out, end, "no_header")
            return True
        if len(buf) < _PREFIX:
            if not buf[len(HEADER) :].isdigit() and len(buf) > len(HEADER):
                self._resync(out, "bad_length")
                return True
            return False
        length_field = bytes(buf[len(HEADER) : _PREFIX])
        if not length_field.isdigit():
            self._resync(out, "bad_length")
            return True
        length = int(length_field)
        if length > MAX_DATA_LENGTH:
            self._resync(out, "too_long")
            return True
        total = _PREFIX + length + _CRC
        # A '##' inside the frame's extent means it was cut short and another frame began.
        cut = buf.find(HEADER, _PREFIX, min(len(buf), total))
        if cut < 0:
            # A lone '#' in the CRC region: the next header starts there, its second '#' unseen.
            cut = buf.find(b"#", _PREFIX + length, min(len(buf), total))
        if cut >= 0:
            self._garbage(out, cut, "interrupted")
            return True
        if len(buf) < total:
            return False
        out.append(bytes(buf[:total]))
        del buf[:total]
        self._after_frame = True
        return True
