"""Being a good public API: per-client rate limits with standard headers, ETags and caching.

Pure ASGI-level concerns, kept out of the routers; gzip and CORS come from Starlette.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.cache import GZIP_MIN_BYTES, Body, Reuse, response_key
from api.errors import problem


class RateLimiter:
    """A token bucket per client: ``limit`` requests per ``window_s``, refilled continuously."""

    def __init__(self, limit: int, window_s: float = 60.0, max_clients: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.rate = limit / window_s
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> tuple[bool, int, float]:
        """(allowed, remaining, seconds until one more request is allowed)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._buckets) > self.max_clients:  # bound memory under a flood of clients
                self._buckets.clear()
            tokens, last = self._buckets.get(client, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[client] = (tokens, now)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            return allowed, int(tokens), wait


class RateLimitMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware task and stream per request): the limit is checked
    before the app runs, and the headers are added to the response's start message."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt = exempt
        self.limit = str(limiter.limit)
        self.policy = f"{limiter.limit};w={int(limiter.window_s)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        allowed, remaining, wait = self.limiter.take(client)
        reset = max(1, math.ceil(wait)) if not allowed else math.ceil(wait)
        headers = {
            "RateLimit-Limit": self.limit,
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": self.policy,
        }
        if not allowed:
            response: Response = problem(
                429,
                "too many requests",
                f"at most {self.limiter.limit} requests per {int(self.limiter.window_s)} s;"
                f" retry after {reset} s",
            )
            response.headers.update({**headers, "Retry-After": str(reset)})
            await response(scope, receive, send)
            return

        # Appended raw: the app never sets these names, and MutableHeaders.update scans the
        # whole list once per header.
        added = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """HEAD answered like GET without the body (RFC 9110 §9.3.2): ``curl -I``, link checkers
    and uptime monitors get the status and headers (Content-Length, ETag) GET would give.

    FastAPI routes declare GET only and would answer HEAD with 405; this outermost layer hands
    the app a GET and drops the body on the way out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headless(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headless)


class ReusedResponses:
    """Answers a GET whose response :mod:`api.cache` holds (fresh, or stale while one
    background rebuild runs), before gzip, routing, dependency resolution and validation: the
    entry exists only because that exact path and query passed them. Placed inside the rate
    limit and CORS, which apply as to any request.

    What it sends is what :meth:`api.cache.Body.response` and :class:`CachingMiddleware` would
    have (the ETag of the encoding sent, 304 on a match, ``Vary``, a public max-age), written
    as raw headers: a crowd of small requests is mostly per-request overhead."""

    def __init__(self, app: ASGIApp, reuse: Reuse, max_age_s: int = 60) -> None:
        self.app = app
        self.reuse = reuse
        self.cache_control = f"public, max-age={max_age_s}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        body = self.reuse.serve(response_key(scope))
        if not isinstance(body, Body):
            await self.app(scope, receive, send)
            return
        accepts = if_none_match = b""
        for name, value in scope["headers"]:
            if name == b"authorization":  # private responses: the long way
                await self.app(scope, receive, send)
                return
            if name == b"accept-encoding":
                accepts = value
            elif name == b"if-none-match":
                if_none_match = value
        encoded = len(body.content) >= GZIP_MIN_BYTES and b"gzip" in accepts
        if encoded and body.gzipped is None:  # compressed once, in a worker thread: the long way
            await self.app(scope, receive, send)
            return
        etag = (body.etag[:-1] + '-gz"' if encoded else body.etag).encode()
        headers = [
            (b"etag", etag),
            (b"vary", b"Accept-Encoding"),
            (b"cache-control", self.cache_control),
        ]
        if etag in [t.strip() for t in if_none_match.split(b",")]:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        content = body.gzipped if encoded and body.gzipped is not None else body.content
        headers += [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", body.raw_media_type),
        ]
        if encoded:
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


class CachingMiddleware:
    """A strong ETag on successful GETs, 304 on a matching If-None-Match, and a short public
    max-age: values change every minute, and a crowd looking at one map should cost one query
    per minute per cache, not one per person. Authenticated responses are private.

    Pure ASGI: a response that already carries its ETag (bodies reused by :mod:`api.cache`)
    passes straight through; others are buffered once to hash them."""

    def __init__(self, app: ASGIApp, max_age_s: int = 60) -> None:
        self.app = app
        self.max_age_s = max_age_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/static/") or path.endswith(".csv"):
            await self.app(scope, receive, send)  # own caching; exports stream, never buffered
            return
        request_headers = Headers(scope=scope)
        private = "authorization" in request_headers
        start: Message | None = None
        chunks: list[bytes] = []
        passing = False

        async def intercept(message: Message) -> None:
            nonlocal start, passing
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                if message["status"] != 200:
                    passing = True
                elif private:
                    headers["Cache-Control"] = "private, no-store"
                    passing = True
                elif "etag" in headers:
                    headers["Cache-Control"] = f"public, max-age={self.max_age_s}"
                    passing = True
                message["headers"] = headers.raw
                if passing:
                    await send(message)
                else:
                    start = message
                return
            if passing or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            body = b"".join(chunks)
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers = MutableHeaders(raw=start["headers"])
            headers["ETag"] = etag
            headers["Cache-Control"] = f"public, max-age={self.max_age_s}"
            wanted = [t.strip() for t in request_headers.get("if-none-match", "").split(",")]
            if etag in wanted:
                del headers["content-length"]
                await send({**start, "status": 304, "headers": headers.raw})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, intercept)
