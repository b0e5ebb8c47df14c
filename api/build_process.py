"""Building reused responses in a process of their own, so that serving never waits for them.

A reused response (:mod:`api.cache`: a list page, the map, a year of hourly means) is built
in Python: rows converted, shaped and serialised, a hundred milliseconds and more for the
large ones, partly in C calls that keep the GIL throughout (fetching a year's 8,760 rows is
one). Built in a thread of the serving process, every request in flight waits while a build
holds the GIL: a crowd's slowest percent waited 0.3–0.9 s on a year series whose bytes the
event loop alone serves in tens of milliseconds.

So the serving process hands each build to a child process: it sends the path and query, the
child runs that GET through its own copy of the app (same routers, same validation, same
bytes) and answers with the body and its ETag, then its gzip encoding; the serving process
only receives bytes (one ``recv`` with the GIL released) and swaps them in. The child reuses the
station and enterprise rows the pages are made of for ``api_cache_seconds`` like the serving
process did, but rebuilds them before using them once they are older (never stale rows).

The serving process never depends on the child: until it is ready, while it restarts, when a
build there fails or the child answers nothing for ``api_build_timeout_s``, the build runs in
the serving process as before (an error response is always the serving process's own). A
child that dies is started again; one that answers nothing in time is killed and started
again.

Children are forked from a forkserver that imported the app once: a child costs a fork, not
an interpreter's start and imports, and shares nothing with the serving process's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import MutableMapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from api.cache import GZIP_LEVEL, GZIP_MIN_BYTES, Body

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from fastapi import FastAPI

    from sunlight.settings import Settings

logger = logging.getLogger(__name__)

# A started child that died is started again no sooner than this after the previous start: a
# child that cannot start (no database) costs one attempt per interval, not a busy loop.
RESTART_AFTER_S = 2.0
# How long closing waits for the child to finish its builds in flight and exit.
CLOSE_WAIT_S = 5.0

# Rendered by a new child before it says it is ready (the serving process builds until then).
WARM_PATHS = ("/api/v1/stations", "/api/v1/enterprises")

_LENGTH = struct.Struct("!I")
_READY = "ready"
_BODY = "body"
_GZIP = "gzip"


class _Unavailable(Exception):
    """The child cannot take a build now: not started yet, restarting, or gone."""


@dataclass(eq=False)
class _Child:
    """One started child: its process, our end of the socket pair, builds awaiting answers."""

    process: BaseProcess
    sock: socket.socket
    pending: dict[int, Future[Body]] = field(default_factory=dict)
    # Bodies answered whose gzip encoding is still to come.
    compressing: dict[int, Body] = field(default_factory=dict)
    ready: bool = False
    answered_at: float = 0.0  # time.monotonic() of its latest answer
    send_lock: threading.Lock = field(default_factory=threading.Lock)


def _send_frame(sock: socket.socket, lock: threading.Lock, meta: Any, *parts: bytes) -> None:
    """A pickled header, then the raw parts the header gives the lengths of."""
    header = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)
    with lock:
        sock.sendall(_LENGTH.pack(len(header)) + header)
        for part in parts:
            sock.sendall(part)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes, in one ``recv`` (the GIL released while it waits) unless interrupted."""
    data = sock.recv(n, socket.MSG_WAITALL)
    while len(data) < n:
        more = sock.recv(n - len(data), socket.MSG_WAITALL)
        if not more:
            raise EOFError("the other end closed")
        data += more
    return data


def _recv_meta(sock: socket.socket) -> Any:
    head = sock.recv(_LENGTH.size, socket.MSG_WAITALL)
    if not head:
        raise EOFError("the other end closed")
    if len(head) < _LENGTH.size:
        head += _recv_exact(sock, _LENGTH.size - len(head))
    (length,) = _LENGTH.unpack(head)
    return pickle.loads(_recv_exact(sock, length))


class BuildProcess:
    """The serving process's handle on its build child: :meth:`build` from any thread but the
    event loop's; :meth:`close` once, when the app stops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout_s = settings.api_build_timeout_s
        self._ctx = multiprocessing.get_context("forkserver")
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._starter: threading.Thread | None = None
        self._last_start = -RESTART_AFTER_S
        self._closed = False
        self._ids = itertools.count(1)
        # What a test or an operator can watch: children started, bodies they built.
        self.starts = 0
        self.answered = 0

    @property
    def ready(self) -> bool:
        """A child is up and takes builds."""
        child = self._child
        return child is not None and child.ready

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        child = self._child
        return child.process.pid if child is not None else None

    def start(self) -> None:
        """Start a child in the background (the first start boots the forkserver: seconds);
        builds run in the serving process until it is ready."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._closed or self._child is not None:
            return
        if self._starter is not None and self._starter.is_alive():
            return
        self._starter = threading.Thread(
            target=self._launch, name="sunlight-build-process-start", daemon=True
        )
        self._starter.start()

    def _launch(self) -> None:
        delay = self._last_start + RESTART_AFTER_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with self._lock:
            if self._closed or self._child is not None:
                return
            self._last_start = time.monotonic()
        ours, theirs = socket.socketpair()
        try:
            # Preloaded by the forkserver: each child is a fork with the app already imported.
            self._ctx.set_forkserver_preload(["api.app"])
            process = self._ctx.Process(
                target=child_main,
                args=(theirs, self.settings),
                name="sunlight-api-build",
                daemon=True,
            )
            process.start()
        except Exception:
            logger.exception("could not start the API's build process")
            ours.close()
            return
        finally:
            theirs.close()
        child = _Child(process, ours)
        with self._lock:
            if self._closed:
                self._stop(child)
                return
            self._child = child
            self.starts += 1
        threading.Thread(
            target=self._read, args=(child,), name="sunlight-build-process-read", daemon=True
        ).start()

    def _read(self, child: _Child) -> None:
        """Answers from ``child``, each given to the build awaiting it, until it closes."""
        try:
            while True:
                meta = _recv_meta(child.sock)
                child.answered_at = time.monotonic()
                if meta == _READY:
                    child.ready = True
                    logger.info("the API's build process %s is ready", child.process.pid)
                    continue
                if meta[0] == _GZIP:  # a body's encoding, made after the body was sent
                    _, number, length = meta
                    gzipped = _recv_exact(child.sock, length)
                    body = child.compressing.pop(number, None)
                    if body is not None:
                        body.offer_gzip(gzipped)
                    continue
                _, number, status, media_type, etag, length = meta
                content = _recv_exact(child.sock, length) if length else b""
                waiting = child.pending.pop(number, None)
                if waiting is None:  # given up on (timed out)
                    continue
                if status == 200:
                    self.answered += 1
                    built = Body(content, media_type, etag)
                    if len(content) >= GZIP_MIN_BYTES:
                        built.gzip_due = threading.Event()
                        child.compressing[number] = built
                    waiting.set_result(built)
                else:
                    waiting.set_exception(_Unavailable(f"answered {status}"))
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            pass
        with self._lock:
            if self._child is child:
                self._child = None
            closed = self._closed
            for waiting in list(child.pending.values()):
                if not waiting.done():
                    waiting.set_exception(_Unavailable("the build process exited"))
            child.pending.clear()
            for body in child.compressing.values():
                if body.gzip_due is not None:
                    body.gzip_due.set()  # not coming: made here when first wanted
            child.compressing.clear()
        if closed:  # close() stops it
            return
        self._stop(child)
        logger.warning(
            "the API's build process %s exited (code %s); starting another",
            child.process.pid,
            child.process.exitcode,
        )
        self.start()

    def build(self, path: str, raw_path: bytes, query: bytes, host: bytes) -> Body | None:
        """The response body the child builds for ``GET path?query``, or None when it cannot
        (not ready, gone, not a 200, stuck): then the caller builds it itself. A child merely
        busy with a crowd's builds is waited for; one that answered nothing for
        ``api_build_timeout_s`` while this waited is killed (and started again)."""
        with self._lock:
            child = self._child
            if child is None:
                self._start_locked()
                return None
            if not child.ready:
                return None
            number = next(self._ids)
            waiting: Future[Body] = Future()
            child.pending[number] = waiting
        try:
            sent = time.monotonic()
            _send_frame(child.sock, child.send_lock, (number, path, raw_path, query, host))
            while True:
                try:
                    return waiting.result(timeout=self.timeout_s)
                except FutureTimeout:
                    # Busy (a crowd's builds queue there) or stuck: stuck when it has answered
                    # nothing at all for as long.
                    if time.monotonic() - max(sent, child.answered_at) >= self.timeout_s:
                        raise
        except FutureTimeout:
            child.pending.pop(number, None)
            logger.error(
                "the API's build process %s answered nothing for %.0f s; restarting it",
                child.process.pid,
                self.timeout_s,
            )
            self._kill(child)
            return None
        except (_Unavailable, OSError) as exc:
            child.pending.pop(number, None)
            logger.debug("built %s here: %s", path, exc)
            return None

    def _kill(self, child: _Child) -> None:
        """A stuck child: killed; its reader sees the socket close and starts another."""
        if child.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGKILL)

    @staticmethod
    def _stop(child: _Child) -> None:
        """Closes our end (the child exits when its reads end), then waits for the exit."""
        with contextlib.suppress(OSError):
            child.sock.shutdown(socket.SHUT_RDWR)
        child.sock.close()
        child.process.join(CLOSE_WAIT_S)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(CLOSE_WAIT_S)

    def close(self) -> None:
        """Stops the child (after the builds it is doing) and any start under way."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
            starter = self._starter
        if starter is not None:
            starter.join()
        if child is not None:
            self._stop(child)


# ---------------------------------------------------------------------------------------------
# The child.


def child_main(sock: socket.socket, settings: Settings) -> None:
    """The child's body: its own app and connection pool, building whatever it is asked for
    until the serving process closes the socket."""
    from api.app import create_app
    from sunlight import logs, memory

    # Ctrl-C reaches the whole process group: the child stops when its parent closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(settings.log_level, json_lines=settings.log_json, name="api-build")
    memory.return_large_blocks(settings.memory_return_threshold_kib)
    app = create_app(
        settings.model_copy(
            # No child of its own; its requests come from the serving process, already limited.
            update={"api_build_process": False, "api_rate_limit_per_minute": 2**62}
        )
    )
    app.state.render_only = True
    try:
        asyncio.run(_serve(app, sock))
    finally:
        sock.close()


async def _serve(app: FastAPI, sock: socket.socket) -> None:
    from sunlight import memory

    # Rows a page is made of are reused, but never used stale: rebuilt first (a build here
    # waits for it, no request does).
    app.state.reuse.background = False
    loop = asyncio.get_running_loop()
    send_lock = threading.Lock()
    closed = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: tuple[int, str, bytes, bytes, bytes]) -> None:
        number, path, raw_path, query, host = request
        try:
            status, media_type, content = await _render(app, path, raw_path, query, host)
        except Exception:
            logger.exception("building %s failed", path)
            status, media_type, content = 500, "", b""
        if status != 200:
            meta: Any = (_BODY, number, status, "", "", 0)
            await asyncio.to_thread(_send_frame, sock, send_lock, meta)
            return
        body = Body.of(content, media_type)
        meta = (_BODY, number, status, media_type, body.etag, len(content))
        try:
            await asyncio.to_thread(_send_frame, sock, send_lock, meta, content)
            if len(content) >= GZIP_MIN_BYTES:
                # Compressed here, once, after the body went (requests waiting for it need not
                # wait for this too): browsers ask for gzip, and the serving process need not.
                gzipped = await asyncio.to_thread(gzip.compress, content, GZIP_LEVEL, mtime=0)
                meta = (_GZIP, number, len(gzipped))
                await asyncio.to_thread(_send_frame, sock, send_lock, meta, gzipped)
                del gzipped
        except OSError:
            return  # the serving process closed its end: nobody is waiting for this any more
        del body, content
        await asyncio.to_thread(memory.release_free_memory)

    def started(request: Any) -> None:
        task = loop.create_task(answer(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def read() -> None:
        try:
            while True:
                loop.call_soon_threadsafe(started, _recv_meta(sock))
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            loop.call_soon_threadsafe(closed.set)

    async with app.router.lifespan_context(app):
        # The lists built once before the first build is taken: a fresh process works out
        # every station's AQI (seconds with thousands; memoised after), better now than in a
        # crowd's first rebuild. Only that memo is kept: the rows read now are not reused, so
        # nothing written after a child started is missing from its first pages.
        for path in WARM_PATHS:
            try:
                await _render(app, path, path.encode(), b"limit=1", b"")
            except Exception:
                logger.exception("warming %s failed", path)
        app.state.reuse.clear()
        try:
            await asyncio.to_thread(_send_frame, sock, send_lock, _READY)
        except OSError:
            return  # the serving process closed while this warmed up
        threading.Thread(target=read, name="sunlight-build-read", daemon=True).start()
        await closed.wait()
        if tasks:
            await asyncio.wait(list(tasks), timeout=CLOSE_WAIT_S)


async def _render(
    app: FastAPI, path: str, raw_path: bytes, query: bytes, host: bytes
) -> tuple[int, str, bytes]:
    """``GET path?query`` through the whole app, as the serving process would have answered a
    request without ``Accept-Encoding``: (status, Content-Type, body)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", host)] if host else [],
        "client": None,
        "server": None,
        "state": {},
    }
    status = 0
    media_type = ""
    chunks: list[bytes] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, media_type
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", ()):
                if name.lower() == b"content-type":
                    media_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, media_type, b"".join(chunks)
