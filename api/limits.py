"""Request size limits, checked before any work: a public API answers oversized requests with a
clear 4xx instead of holding them in memory.

The HTTP server (uvicorn with httptools) reads a request's head whatever its size; these limits
refuse what no legitimate client sends: a URL over 8 KiB, request headers over 32 KiB in all,
a body over 16 MiB (declared or streamed).
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem

MAX_URL_BYTES: Final = 8 * 1024
MAX_HEADER_BYTES: Final = 32 * 1024
MAX_BODY_BYTES: Final = 16 * 1024 * 1024


class _TooLarge(Exception):
    pass


class RequestLimits:
    """Pure ASGI middleware: 414, 431 or 413 problem documents for oversized requests."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_url: int = MAX_URL_BYTES,
        max_headers: int = MAX_HEADER_BYTES,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.max_url = max_url
        self.max_headers = max_headers
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        headers = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), b"")
        refusal = None
        if url > self.max_url:
            refusal = problem(414, "URI too long", f"the URL exceeds {self.max_url} bytes")
        elif headers > self.max_headers:
            refusal = problem(
                431, "request headers too large", f"headers exceed {self.max_headers} bytes"
            )
        elif declared.isdigit() and int(declared) > self.max_body:
            refusal = problem(413, "payload too large", f"the body exceeds {self.max_body} bytes")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if started:
                raise
            too_large = problem(413, "payload too large", f"the body exceeds {self.max_body} bytes")
            await too_large(scope, receive, send)
