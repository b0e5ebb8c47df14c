"""The ingestor process: MQTT in, batched transactions out, acknowledged only after commit.

paho's network thread only enqueues; one writer thread batches, commits and then acknowledges
(paho-mqtt 2.x manual ack), so a crash at any point leaves unacknowledged messages with the
broker's persistent session, to be redelivered and stored idempotently.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import psycopg

from ingest.batch import (
    BatchOutcome,
    Message,
    PreparedBatch,
    handle_batch,
    prepare_batch,
    store_batch,
)
from ingest.devices import DeviceDirectory
from ingest.metrics import IngestMetrics
from ingest.topics import INGEST_FILTERS, subscription
from store.db import connect
from store.dead_letters import DeadLetter, write_dead_letters
from store.readings import refresh_late_aggregate
from store.schema import StorageMode, storage_mode
from sunlight.mqtt import make_client
from sunlight.settings import Settings

logger = logging.getLogger(__name__)
_GATHER_NAP_S = 0.002


@dataclass(frozen=True, slots=True)
class _Prepared:
    batch: list[_Received]
    prepared: PreparedBatch
    now: datetime


class _Received(NamedTuple):
    """A message as the network thread hands it over (a tuple: one is built per message)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int


class Ingestor:
    """Run with ``run()``; stop by setting ``stop_event`` (or SIGTERM in the CLI)."""

    def __init__(self, settings: Settings, *, stop_event: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop_event = stop_event or threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        # The network thread appends (deque appends are atomic) and sets the event only when
        # the preparer may be waiting; a queue.Queue's lock and notify per message cost more.
        self._inbox: deque[_Received] = deque()
        self._arrived = threading.Event()
        # Messages the network thread received, and those acknowledged (or skipped, from an
        # earlier connection) after commit: the difference is the queue depth.
        self._received = 0
        self._finished = 0
        self._generation = 0
        self._directory = DeviceDirectory(default_timezone=settings.device_timezone)
        self._conn: psycopg.Connection | None = None
        self._prep_conn: psycopg.Connection | None = None
        self._mode: StorageMode | None = None
        self.stats: dict[str, int] = {"received": 0, "stored": 0, "rejected": 0, "batches": 0}
        self.metrics = IngestMetrics()
        self.metrics.queue_depth.set_function(lambda: self._received - self._finished)
        self._client = make_client(settings, settings.mqtt_client_id, clean=False, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # paho callbacks: network thread, must never raise
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            logger.error("broker refused connection: %s", reason)
            return
        self._generation += 1
        self.connected.set()
        self.metrics.broker_connected.set(1)
        topics = [subscription(f, self.settings.mqtt_shared_group) for f in INGEST_FILTERS]
        client.subscribe([(t, 1) for t in topics])
        logger.info(
            "connected to %s, subscribed to %s", self.settings.mqtt.display, ", ".join(topics)
        )

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self.subscribed.set()
        else:
            logger.error("subscription refused: %s", reasons)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.metrics.broker_connected.set(0)
        if not self.stop_event.is_set():
            logger.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # As little as possible here: the network thread's time per message bounds the rate.
        # The received counter moves when the preparer takes the message.
        self._received += 1
        self._inbox.append(
            _Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation)
        )
        if not self._arrived.is_set():
            self._arrived.set()

    # Two stages: a preparer thread parses and validates the next batch while this thread
    # commits the previous one (the database's work overlaps Python's), then acknowledges.
    def run(self) -> None:
        endpoint = self.settings.mqtt
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
        self._client.connect_async(endpoint.host, endpoint.port, keepalive=30)
        self._client.loop_start()
        handoff: queue.Queue[_Prepared | None] = queue.Queue(maxsize=2)
        preparer = threading.Thread(
            target=self._prepare_loop, args=(handoff,), name="ingest-prepare", daemon=True
        )
        preparer.start()
        try:
            while (item := handoff.get()) is not None:
                self._store(item)
                self._ack(item.batch)
        finally:
            self.stop_event.set()
            while preparer.is_alive():  # unblock a preparer waiting on a full hand-off
                with contextlib.suppress(queue.Empty):
                    handoff.get_nowait()
                preparer.join(0.1)
            self._client.disconnect()
            self._client.loop_stop()
            for conn in (self._conn, self._prep_conn):
                if conn is not None:
                    conn.close()

    def _prepare_loop(self, handoff: queue.Queue[_Prepared | None]) -> None:
        try:
            while not self.stop_event.is_set():
                batch = self._collect()
                if batch:
                    handoff.put(self._prepare(batch))
            # Store and acknowledge what had arrived when asked to stop (and only that: under
            # steady traffic an open-ended drain would never end); the rest stays queued at
            # the broker for the next start.
            left = len(self._inbox)
            while left > 0 and (batch := self._collect(block=False)):
                handoff.put(self._prepare(batch))
                left -= len(batch)
        except SystemExit:
            pass
        except Exception:
            logger.exception("preparing a batch failed; stopping")
        finally:
            handoff.put(None)

    def _prepare(self, batch: list[_Received]) -> _Prepared:
        """Parse and validate; the preparer's own connection only reloads the device list."""
        messages = [Message(r.topic, r.payload) for r in batch]
        delay = 0.5
        while True:
            try:
                if self._prep_conn is None or self._prep_conn.closed:
                    self._prep_conn = connect(
                        self.settings.database_url,
                        autocommit=True,
                        application="sunlight-ingest-prepare",
                    )
                    self._directory.load(self._prep_conn)
                now = datetime.now(UTC)
                return _Prepared(
                    batch, prepare_batch(self._prep_conn, self._directory, messages, now), now
                )
            except psycopg.OperationalError as exc:
                logger.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
                if self._prep_conn is not None:
                    self._prep_conn.close()
                if self.stop_event.wait(delay):
                    raise SystemExit("stopped while the database was unavailable") from exc
                delay = min(delay * 2, 10.0)

    def _collect(self, *, block: bool = True) -> list[_Received]:
        """Up to ``ingest_batch_size`` messages: what has arrived, then what arrives within
        ``ingest_batch_ms`` of the first."""
        size, wait = self.settings.ingest_batch_size, self.settings.ingest_batch_ms / 1000
        inbox = self._inbox
        if not inbox and (not block or not self._wait_for_messages(0.2)):
            return []
        batch: list[_Received] = []
        deadline = time.monotonic() + wait
        while True:
            take = min(size - len(batch), len(inbox))
            batch += [inbox.popleft() for _ in range(take)]
            if len(batch) >= size:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Gather what arrives in short naps rather than a wake-up per message.
            time.sleep(min(remaining, _GATHER_NAP_S))
        self.stats["received"] += len(batch)
        self.metrics.received.inc(len(batch))
        return batch

    def _wait_for_messages(self, timeout: float) -> bool:
        """True once the inbox holds a message, False after ``timeout`` without one."""
        # Cleared before looking, so an append after the look sets it again: no lost wake-up.
        self._arrived.clear()
        return bool(self._inbox) or (self._arrived.wait(timeout) and bool(self._inbox))

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings.database_url, application="sunlight-ingest")
            self._mode = storage_mode(self._conn)
            self._conn.commit()
            if self._mode is None:
                raise RuntimeError("database is not migrated: run 'sunlight db migrate'")
            self._directory.load(self._conn)
            self._conn.commit()
        return self._conn

    def _store(self, item: _Prepared) -> None:
        """Commit the batch, retrying through database outages until it is stored or we stop.

        A batch the database refuses (a data error) is stored message by message instead, and
        an outage during that pass is waited out like any other: messages already committed
        are written again idempotently.
        """
        delay = 0.5
        one_by_one = False
        while True:
            try:
                if one_by_one:
                    self._store_one_by_one([Message(r.topic, r.payload) for r in item.batch])
                    return
                conn = self._connection()
                assert self._mode is not None
                with self.metrics.batch_seconds.time(), conn.transaction():
                    outcome = store_batch(conn, self._mode, item.prepared)
                self.metrics.database_up.set(1)
                self._after_commit(outcome, item.now)
                return
            except psycopg.OperationalError as exc:
                self.metrics.database_up.set(0)
                logger.warning("database unavailable (%s); retrying in %.1fs", exc, delay)
                if self._conn is not None:
                    self._conn.close()
                if self.stop_event.wait(delay):
                    raise SystemExit("stopped while the database was unavailable") from exc
                delay = min(delay * 2, 10.0)
            except psycopg.Error:
                logger.exception("batch failed in the database; storing message by message")
                one_by_one = True

    def _store_one_by_one(self, messages: list[Message]) -> None:
        conn = self._connection()
        assert self._mode is not None
        for msg in messages:
            now = datetime.now(UTC)
            try:
                with conn.transaction():
                    outcome = handle_batch(conn, self._directory, self._mode, [msg], now)
                self._after_commit(outcome, now)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                with conn.transaction():
                    write_dead_letters(
                        conn,
                        [DeadLetter(msg.topic, None, "store_error", str(exc)[:4000], msg.payload)],
                    )
                self.stats["rejected"] += 1
                self.metrics.rejected.labels("store_error").inc()

    def _after_commit(self, outcome: BatchOutcome, now: datetime) -> None:
        self.stats["batches"] += 1
        self.stats["stored"] += outcome.readings
        self.stats["rejected"] += sum(outcome.rejected.values())
        self.metrics.stored.inc(outcome.readings)
        for reason, count in outcome.rejected.items():
            self.metrics.rejected.labels(reason).inc(count)
        if outcome.write and outcome.write.touched_hours and self._mode:
            refresh_late_aggregate(
                self.settings.database_url, self._mode, outcome.write.touched_hours, now
            )

    def _ack(self, batch: list[_Received]) -> None:
        # An ack from an earlier connection could name another message: skip it, the broker
        # redelivers and the write is idempotent.
        ack = self._client.ack
        for item in batch:
            if item.generation == self._generation and item.qos > 0:
                ack(item.mid, item.qos)
        self._finished += len(batch)
