"""Reusing what the public endpoints compute: a crowd looking at one map costs one build per
``api_cache_seconds``, not one per person.

Lists, the map and series are the same for everyone for a while (values arrive each minute;
responses already say ``Cache-Control: public, max-age=60``). An entry past its age is served
once more while one background thread rebuilds it (stale-while-revalidate), so no request of a
crowd waits for a rebuild; only the first request for a key builds while the others for that
key wait for it (single flight). Entries are bounded in number and bytes, least recently used
evicted first. Responses are built by the API's build process when it has one
(:mod:`api.build_process`), so that no build holds the GIL the event loop serves with.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from psycopg import Connection
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from api.geojson import iso
from sunlight import memory

logger = logging.getLogger(__name__)
_ZERO = timedelta(0)


# Compressing once, on the first request that accepts gzip, not per request: GZipMiddleware
# would spend tens of milliseconds of CPU on every large response (the map page is megabytes).
GZIP_MIN_BYTES = 1024
GZIP_LEVEL = 6
# How long a background rebuild waits for an encoding made elsewhere before swapping in the
# body without it (it is then made here, when first wanted).
GZIP_DUE_WAIT_S = 10.0


@dataclass(slots=True)
class Body:
    """A serialised response, its gzip encoding (made when first wanted), and a strong ETag for
    each. Never changed once built, except to add the encoding."""

    content: bytes
    media_type: str
    etag: str
    gzipped: bytes | None = None
    _compressing: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # Set when an encoding being made elsewhere (:mod:`api.build_process`) has arrived, or
    # will not: a background rebuild swaps the body in with it, not before.
    gzip_due: threading.Event | None = field(default=None, repr=False, compare=False)

    @property
    def raw_media_type(self) -> bytes:
        """The Content-Type header's value, as Starlette's Response would write it."""
        if self.media_type.startswith("text/") and "charset=" not in self.media_type:
            return f"{self.media_type}; charset=utf-8".encode()
        return self.media_type.encode()

    @classmethod
    def of(cls, content: bytes, media_type: str) -> Body:
        return cls(content, media_type, '"' + hashlib.sha256(content).hexdigest()[:32] + '"')

    def wants_gzip(self, request: Request | Headers) -> bool:
        """The client accepts gzip and the body is worth compressing."""
        headers = request.headers if isinstance(request, Request) else request
        return len(self.content) >= GZIP_MIN_BYTES and "gzip" in headers.get("accept-encoding", "")

    def compress(self) -> bytes:
        """The gzip encoding, made once: a crowd arriving together waits for one compression
        instead of each compressing megabytes."""
        with self._compressing:
            if self.gzipped is None:
                self.gzipped = gzip.compress(self.content, GZIP_LEVEL, mtime=0)
            return self.gzipped

    def offer_gzip(self, gzipped: bytes) -> None:
        """The gzip encoding made elsewhere (:mod:`api.build_process`), kept unless one was
        made here meanwhile."""
        with self._compressing:
            if self.gzipped is None:
                self.gzipped = gzipped
        if self.gzip_due is not None:
            self.gzip_due.set()

    def response(self, request: Request | Headers) -> Response:
        """200 with the body (gzip-encoded when the client accepts it), or 304 when the client
        already holds this representation's ETag. Call :meth:`compress` first off the event
        loop when :meth:`wants_gzip`, else it is done here."""
        request_headers = request.headers if isinstance(request, Request) else request
        encoded = self.wants_gzip(request_headers)
        etag = self.etag[:-1] + '-gz"' if encoded else self.etag
        headers = {"ETag": etag, "Vary": "Accept-Encoding"}
        wanted = request_headers.get("if-none-match", "")
        if etag in [t.strip() for t in wanted.split(",")]:
            return Response(status_code=304, headers=headers)
        if encoded:
            headers["Content-Encoding"] = "gzip"
            return Response(self.compress(), media_type=self.media_type, headers=headers)
        return Response(self.content, media_type=self.media_type, headers=headers)


@dataclass(slots=True)
class _Entry:
    value: Any
    size: int
    built_at: float
    build: Callable[[], Any] | None = None  # how to rebuild it once stale


class Reuse:
    """Values by key, rebuilt when older than ``ttl_s``; ``ttl_s <= 0`` builds every time."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 256,
        max_bytes: int = 256 * 2**20,
        background: bool = True,
    ) -> None:
        self.ttl_s = ttl_s
        # False: a stale value is rebuilt before it is returned, never served (what the build
        # process does with the rows its pages are made of: no request waits there).
        self.background = background
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def fresh(self, key: str) -> Any | None:
        """The value when present and young enough, without building: the fast path."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry.built_at >= self.ttl_s:
                return None
            self._entries.move_to_end(key)
            return entry.value

    def serve(self, key: str) -> Any | None:
        """The value when present, without building: fresh, or stale while a background
        rebuild (by the function that built it) runs. What answers a crowd before routing."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            if time.monotonic() - entry.built_at < self.ttl_s or entry.build is None:
                return entry.value
            key_lock = self._building.setdefault(key, threading.Lock())
        if key_lock.acquire(blocking=False):
            threading.Thread(
                target=self._rebuild, args=(key, entry.build, key_lock), daemon=True
            ).start()
        return entry.value

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        """The value for ``key``: fresh, else stale while a background rebuild runs (unless
        not ``background``), else built now (one builder per key; concurrent callers wait)."""
        if self.ttl_s <= 0:
            return build()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            key_lock = self._building.setdefault(key, threading.Lock())
        now = time.monotonic()
        if entry is not None and now - entry.built_at < self.ttl_s:
            return entry.value
        if entry is not None and self.background:
            if key_lock.acquire(blocking=False):
                threading.Thread(
                    target=self._rebuild, args=(key, build, key_lock), daemon=True
                ).start()
            return entry.value
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and time.monotonic() - entry.built_at < self.ttl_s:
                return entry.value
            value = build()
            self._put(key, value, build)
            return value

    def clear(self) -> None:
        """Forget every value: the next request for each builds it anew."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _rebuild(self, key: str, build: Callable[[], Any], key_lock: threading.Lock) -> None:
        try:
            value = build()
            if isinstance(value, Body) and value.gzip_due is not None:
                # The stale body, encoded, is served until the new one's encoding is here
                # too: a crowd of browsers need not compress it in the serving process.
                value.gzip_due.wait(GZIP_DUE_WAIT_S)
            self._put(key, value, build)
        except Exception:
            # The stale value keeps being served; the next request past its age tries again.
            logger.exception("rebuilding %s failed", key)
        finally:
            key_lock.release()
        # The replaced value and the build's intermediates are free now: return their pages,
        # or the process keeps growing to the high-water mark of every rebuilding thread.
        memory.release_free_memory()

    def _put(self, key: str, value: Any, build: Callable[[], Any] | None = None) -> None:
        size = (
            len(value.content) + len(value.gzipped or b"")
            if isinstance(value, Body)
            else sys.getsizeof(value)
        )
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = _Entry(value, size, time.monotonic(), build)
            self._bytes += size
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                evicted_key, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size
                self._building.pop(evicted_key, None)


def json_body(content: Any) -> Body:
    """JSON as FastAPI's JSONResponse writes it (UTF-8, compact), serialised once.

    By orjson: the same bytes for what the API serves (floats, ints, text; UTC times as
    :func:`api.geojson.iso` writes them, ``2026-11-24T01:00:00Z``; other types through
    FastAPI's encoder) in a twentieth to a fortieth of the time — a year of hourly means is
    3 ms instead of 110 — and floats in their shortest exact form (``1e-5`` where the standard
    library writes ``1e-05``). NaN and infinities, which ingest never stores, become null.
    What orjson refuses (integers past 64 bits, keys that are not text) is written by the
    standard library instead, times likewise."""
    try:
        data = orjson.dumps(content, default=jsonable_encoder, option=orjson.OPT_UTC_Z)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(
            content,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            default=_encode,
        )
        data = text.encode()
    return Body.of(data, "application/json")


def _encode(value: Any) -> Any:
    """What orjson writes, for the standard library: UTC times with 'Z', others as given."""
    if isinstance(value, datetime):
        return iso(value) if value.utcoffset() == _ZERO else value.isoformat()
    return jsonable_encoder(value)


def reused(request: Request, key: str, build: Callable[[Connection], Any]) -> Any:
    """``build(conn)``'s value for ``key``, reused for ``api_cache_seconds``; the build gets its
    own pooled connection, since it may run after the request is answered."""
    reuse: Reuse = request.app.state.reuse
    pool: ConnectionPool = request.app.state.pool

    def with_conn() -> Any:
        with pool.connection() as conn:
            return build(conn)

    return reuse.get(key, with_conn)


def response_key(scope: Scope) -> str:
    """The key a URL's response is reused under: its path and query exactly as sent. The same
    function for :func:`respond` and for the middleware that serves fresh bodies
    before routing (:class:`api.middleware.CachingMiddleware`)."""
    query: bytes = scope.get("query_string", b"")
    return f"{scope['path']}?{query.decode('latin-1')}"


def _elsewhere(request: Request, build: Callable[[], Body]) -> Callable[[], Body]:
    """``build``, handed to the app's build process (:mod:`api.build_process`) when it has one
    that takes it: then the serving process only waits for the bytes, without the GIL. Built
    here when the process is not there, not ready, or fails."""
    builder = getattr(request.app.state, "builder", None)
    if builder is None:
        return build
    scope = request.scope
    path: str = scope["path"]
    raw_path: bytes = scope.get("raw_path") or path.encode()
    query: bytes = scope.get("query_string", b"")
    host = request.headers.get("host", "").encode("latin-1")

    def build_elsewhere() -> Body:
        body: Body | None = builder.build(path, raw_path, query, host)
        return build() if body is None else body

    return build_elsewhere


async def respond(request: Request, build: Callable[[], Body]) -> Response:
    """The response for this URL (path and query): reused when fresh, without leaving the event
    loop; built (by the build process when there is one), or its rebuild started, from a worker
    thread otherwise. In the build process itself: built every time, never reused."""
    reuse: Reuse = request.app.state.reuse
    if getattr(request.app.state, "render_only", False):
        built = await run_in_threadpool(build)
        return built.response(request)
    key = response_key(request.scope)
    body = reuse.fresh(key)
    if body is None:
        body = await run_in_threadpool(reuse.get, key, _elsewhere(request, build))
    assert isinstance(body, Body)
    if body.gzipped is None and body.wants_gzip(request):
        await run_in_threadpool(body.compress)
    return body.response(request)
