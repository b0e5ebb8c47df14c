"""Being a good public API: per-client rate limits with standard headers, ETags and caching.

Pure ASGI-level concerns, kept out of the routers; gzip and CORS come from Starlette.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Awaitable, Callable

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from api.errors import problem

Handler = Callable[[Request], Awaitable[Response]]


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


class RateLimitMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: object, limiter: RateLimiter, exempt: tuple[str, ...] = ()) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.limiter = limiter
        self.exempt = exempt

    async def dispatch(self, request: Request, call_next: Handler) -> Response:
        if request.url.path.startswith(self.exempt):
            return await call_next(request)
        client = request.client.host if request.client else "unknown"
        allowed, remaining, wait = self.limiter.take(client)
        reset = max(1, math.ceil(wait)) if not allowed else math.ceil(wait)
        headers = {
            "RateLimit-Limit": str(self.limiter.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{self.limiter.limit};w={int(self.limiter.window_s)}",
        }
        if not allowed:
            response: Response = problem(
                429,
                "too many requests",
                f"at most {self.limiter.limit} requests per {int(self.limiter.window_s)} s;"
                f" retry after {reset} s",
            )
            response.headers.update({**headers, "Retry-After": str(reset)})
            return response
        response = await call_next(request)
        response.headers.update(headers)
        return response


class CachingMiddleware(BaseHTTPMiddleware):
    """A strong ETag on successful GETs, 304 on a matching If-None-Match, and a short public
    max-age: values change every minute, and a crowd looking at one map should cost one query
    per minute per cache, not one per person. Authenticated responses are private."""

    def __init__(self, app: object, max_age_s: int = 60) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.max_age_s = max_age_s

    async def dispatch(self, request: Request, call_next: Handler) -> Response:
        response = await call_next(request)
        if request.method not in ("GET", "HEAD") or response.status_code != 200:
            return response
        if request.url.path.startswith("/static/") or request.url.path.endswith(".csv"):
            return response  # static files carry their own; exports stream and must not buffer
        if "authorization" in request.headers:
            response.headers["Cache-Control"] = "private, no-store"
            return response
        if "etag" in response.headers:
            # Reused bodies (api.cache) carry the ETag computed once when built; hashing
            # them again on every request would cost as much as serving them.
            response.headers["Cache-Control"] = f"public, max-age={self.max_age_s}"
            return response
        body = b""
        async for chunk in response.body_iterator:  # type: ignore[attr-defined]
            body += chunk if isinstance(chunk, bytes) else chunk.encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers["ETag"] = etag
        headers["Cache-Control"] = f"public, max-age={self.max_age_s}"
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, status_code=200, headers=headers, media_type=response.media_type)
