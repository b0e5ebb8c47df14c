"""``sunlight hj212-gateway``: the TCP server HJ 212 data loggers connect to.

Data loggers keep one TCP connection open and send frames back to back. The gateway splits the
stream into frames, checks each frame's CRC, MN and password against the registry, relays
accepted frames unchanged to the device's MQTT topic (``…/{device}/hj212``, QoS 1, answered
only once the broker has it) and answers where the frame's Flag asks for a reply. Frames it
cannot accept are stored as dead letters with the reason, so nothing a logger sends is lost:
when even the dead letter cannot be stored, the connection is closed unanswered and the logger
resends.

A connection costs a task and a buffer of at most one frame, and is bounded in time: closed when
no complete frame arrived for ``idle_timeout_s`` (bytes that never make a frame do not count),
or when a frame that has started is not complete ``frame_timeout_s`` later (slow-loris
senders); beyond ``max_connections`` open ones, new connections are refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from domain import hj212
from domain.hj212_stream import FrameSplitter
from ingest.devices import DeviceDirectory, DeviceInfo
from ingest.topics import HJ212, device_topic
from store.db import connect
from store.dead_letters import DeadLetter, write_dead_letters
from sunlight.mqtt import make_client
from sunlight.settings import Settings

logger = logging.getLogger(__name__)

GATEWAY_TOPIC = "hj212-gateway"  # the dead-letter 'topic' of frames refused at the gateway
# QnRtn codes (HJ 212-2017): 3 PW error, 4 MN error, 9 CRC error.
QN_PW_ERROR, QN_MN_ERROR, QN_CRC_ERROR = 3, 4, 9


@dataclass
class GatewayStats:
    connections: int = 0
    frames: int = 0
    relayed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    garbage_bytes: int = 0
    open_connections: int = 0
    refused_connections: int = 0
    timed_out: dict[str, int] = field(default_factory=dict)


class _Unstored(Exception):
    """A refused frame whose dead letter could not be stored: it must not be answered."""


class Gateway:
    """Serve with ``await gateway.serve(ready)``; stop by cancelling the task or ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "0.0.0.0",
        port: int = 9212,
        idle_timeout_s: float = 600.0,
        frame_timeout_s: float = 30.0,
        max_connections: int = 1000,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.max_connections = max_connections
        self.stats = GatewayStats()
        self._directory = DeviceDirectory(
            min_reload_s=5.0, default_timezone=settings.device_timezone
        )
        self._directory_lock = threading.Lock()
        self._mqtt = make_client(settings, f"sunlight-gateway-{port}", clean=True, manual_ack=False)
        self._server: asyncio.Server | None = None

    # registry look-ups run in a worker thread: psycopg here is synchronous
    def _device_for_mn(self, mn: str) -> DeviceInfo | None:
        with self._directory_lock:
            found = self._directory.peek_mn(mn)
            if found is not None:
                return found  # the common case: no database round trip per frame
            with connect(self.settings.database_url) as conn:
                return self._directory.by_mn(conn, mn)

    def _dead_letter(self, device: str | None, reason: str, detail: str, raw: bytes) -> None:
        """Store a refused frame, trying a few times; ``_Unstored`` when it cannot be kept."""
        self.stats.refused[reason] = self.stats.refused.get(reason, 0) + 1
        for delay in (0.2, 1.0, None):
            try:
                with connect(self.settings.database_url) as conn, conn.transaction():
                    write_dead_letters(
                        conn, [DeadLetter(GATEWAY_TOPIC, device, reason, detail, raw)]
                    )
                return
            except Exception as exc:
                if delay is None:
                    logger.error(
                        "could not store a dead letter (%s): %s; closing the connection"
                        " unanswered so the logger sends the frame again",
                        reason,
                        exc,
                    )
                    raise _Unstored(reason) from exc
                time.sleep(delay)  # a worker thread: only this frame's sender waits

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        endpoint = self.settings.mqtt
        self._mqtt.connect_async(endpoint.host, endpoint.port, keepalive=30)
        self._mqtt.loop_start()
        try:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, limit=64 * 1024
            )
            self.port = self._server.sockets[0].getsockname()[1]
            logger.info("HJ 212 gateway listening on %s:%s", self.host, self.port)
            if ready is not None:
                ready.set()
            async with self._server:
                await self._server.serve_forever()
        finally:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _timed_out(self, why: str, peer: object) -> None:
        self.stats.timed_out[why] = self.stats.timed_out.get(why, 0) + 1
        logger.info("closing connection from %s: %s", peer, why)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self.stats.connections += 1
        if self.stats.open_connections >= self.max_connections:
            self.stats.refused_connections += 1
            logger.warning(
                "refusing connection from %s: %d connections open", peer, self.max_connections
            )
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            return
        self.stats.open_connections += 1
        splitter = FrameSplitter()
        last_frame = time.monotonic()
        frame_started: float | None = None  # when the frame now buffered began to arrive
        try:
            while True:
                now = time.monotonic()
                idle_left = last_frame + self.idle_timeout_s - now
                frame_left = (
                    frame_started + self.frame_timeout_s - now
                    if frame_started is not None
                    else idle_left
                )
                try:
                    data = await asyncio.wait_for(
                        reader.read(4096), max(0.0, min(idle_left, frame_left))
                    )
                except TimeoutError:
                    if frame_started is not None and frame_left <= idle_left:
                        self._timed_out("frame not completed in time", peer)
                    else:
                        self._timed_out("no complete frame in time", peer)
                    break
                if not data:
                    break
                completed = False
                for item in splitter.feed(data):
                    if isinstance(item, bytes):
                        completed = True
                        last_frame = time.monotonic()
                        reply = await self._frame(item, peer)
                        if reply is not None:
                            writer.write(reply)
                            await writer.drain()
                    else:
                        self.stats.garbage_bytes += len(item.data)
                if splitter.buffered == 0:
                    frame_started = None
                elif frame_started is None or completed:
                    frame_started = time.monotonic()
        except (ConnectionError, asyncio.IncompleteReadError, _Unstored):
            pass
        finally:
            self.stats.open_connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _frame(self, raw: bytes, peer: object) -> bytes | None:
        """Handle one frame; return the reply frame to send, if any."""
        self.stats.frames += 1
        loop = asyncio.get_running_loop()
        try:
            frame = hj212.parse_frame(raw)
        except hj212.Hj212Error as exc:
            await loop.run_in_executor(
                None, self._dead_letter, None, f"hj212_{exc.reason}", str(exc), raw
            )
            if exc.reason == "bad_crc":
                fields = hj212.salvage_fields(raw)
                if fields.get("QN") and _flag_asks_reply(fields.get("Flag")):
                    return hj212.build_frame(hj212.request_answer(fields, QN_CRC_ERROR))
            return None
        device = await loop.run_in_executor(None, self._device_for_mn, frame.mn)
        if device is None:
            await loop.run_in_executor(
                None, self._dead_letter, None, "unknown_mn", f"no device with MN {frame.mn!r}", raw
            )
            return self._answer(frame, QN_MN_ERROR)
        if device.hj212_password is not None and frame.pw != device.hj212_password:
            await loop.run_in_executor(
                None,
                self._dead_letter,
                device.id,
                "bad_password",
                f"wrong PW for MN {frame.mn}",
                raw,
            )
            return self._answer(frame, QN_PW_ERROR)
        info = self._mqtt.publish(device_topic(device.id, HJ212), raw, qos=1)
        published = await loop.run_in_executor(None, _wait_published, info)
        if not published:
            # The broker did not take it: no positive answer, so the logger resends it.
            logger.warning("broker did not acknowledge a frame from %s (MN %s)", peer, frame.mn)
            return None
        self.stats.relayed += 1
        reply = hj212.reply_to(frame)  # 9014 to every upload (status too), 9011 otherwise
        return None if reply is None else hj212.build_frame(reply)

    @staticmethod
    def _answer(frame: hj212.Frame, qn_rtn: int) -> bytes | None:
        if not hj212.needs_reply(frame.flag):
            return None
        return hj212.build_frame(hj212.request_answer(frame, qn_rtn))


def _flag_asks_reply(flag: str | None) -> bool:
    return flag is not None and flag.isdigit() and hj212.needs_reply(int(flag))


def _wait_published(info: mqtt.MQTTMessageInfo, timeout_s: float = 10.0) -> bool:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError):
        return False
    return info.is_published()


def run_gateway(settings: Settings, *, host: str, port: int, stop_event: threading.Event) -> None:
    """Run until ``stop_event`` is set (the CLI sets it on SIGINT/SIGTERM)."""

    async def main() -> None:
        gateway = Gateway(
            settings,
            host=host,
            port=port,
            idle_timeout_s=settings.gateway_idle_timeout_s,
            frame_timeout_s=settings.gateway_frame_timeout_s,
            max_connections=settings.gateway_max_connections,
        )
        task = asyncio.create_task(gateway.serve())
        while not stop_event.is_set() and not task.done():
            await asyncio.sleep(0.2)
        gateway.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
