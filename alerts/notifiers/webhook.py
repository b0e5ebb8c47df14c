"""The signed HTTPS webhook channel, and the signature check for the receiving side.

Each notification is one ``POST`` of ``Notification.envelope_bytes()`` (compact UTF-8 JSON: the
episode summary plus ``id``, ``kind`` and ``regulator``) with these headers:

``Content-Type: application/json``
``X-Sunlight-Timestamp: <unix seconds>``
``X-Sunlight-Signature: sha256=<hex>``, the HMAC-SHA256, keyed with the office's webhook secret
(UTF-8), of the bytes ``<timestamp>.<body>``: the timestamp header's ASCII digits, one ``.``,
then the raw request body, exactly as received.
``Idempotency-Key: <notification id>``, the same on every retry: a receiver that has seen it
answers 2xx again without acting twice.

A receiver recomputes the signature over the raw body (before any JSON parsing), compares in
constant time, and rejects timestamps more than a few minutes from its clock, which bounds
replays; ``verify_signature`` does all three. Any 2xx means delivered; 408, 429 and 5xx are
retried with backoff (``Retry-After`` in seconds is honoured); any other status is final.
Redirects are not followed: a signed POST must not silently become a GET elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import ssl
import time
import urllib.error
import urllib.request
from email.message import Message
from typing import ClassVar, Final

from alerts.notifiers.base import DeliveryError, Notification, Target, WebhookTarget

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER: Final = "X-Sunlight-Timestamp"
SIGNATURE_HEADER: Final = "X-Sunlight-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
SIGNATURE_PREFIX: Final = "sha256="
RETRYABLE_STATUSES: Final = frozenset({408, 429})
_DETAIL_BYTES = 300  # enough of a receiver's error body to diagnose, not enough to flood the log


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The ``X-Sunlight-Signature`` value for ``body`` sent at ``timestamp``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = str(timestamp).encode("ascii") + b"." + body
    return SIGNATURE_PREFIX + hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int | None,
    body: bytes,
    header: str | None,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` at ``timestamp`` with ``secret``, and ``timestamp``
    (unix seconds) is within ``tolerance_s`` of ``now`` (default: this machine's clock)."""
    if timestamp is None or header is None:
        return False
    stamp = str(timestamp).strip()
    if not stamp.isascii() or not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_s:
        return False
    expected = sign(secret, stamp, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None or not value.strip().isdigit():
        return None  # the HTTP-date form is rare for webhooks; backoff covers it
    return float(value.strip())


class WebhookNotifier:
    """POSTs signed JSON with the standard library's HTTP client; stateless, so thread-safe."""

    channel: ClassVar[str] = "webhook"
    target_type: ClassVar[type[Target]] = WebhookTarget

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        user_agent: str = "sunlight-alerts",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self._opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=ssl_context)
        )

    def send(self, notification: Notification, target: Target) -> None:
        if not isinstance(target, WebhookTarget):
            raise DeliveryError(f"not a webhook target: {type(target).__name__}", retryable=False)
        body = notification.envelope_bytes()
        timestamp = int(time.time())
        request = urllib.request.Request(
            target.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": self.user_agent,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(target.secret, timestamp, body),
                IDEMPOTENCY_HEADER: str(notification.id),
            },
        )
        # Details name the status or the socket error only: webhook URLs often carry tokens.
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            with exc:
                snippet = exc.read(_DETAIL_BYTES).decode("utf-8", errors="replace").strip()
            retryable = exc.code >= 500 or exc.code in RETRYABLE_STATUSES
            detail = f"HTTP {exc.code}" + (f": {snippet}" if snippet else "")
            raise DeliveryError(
                detail, retryable=retryable, retry_after_s=_retry_after(exc.headers)
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            # A certificate the receiver does not have will not appear by itself.
            retryable = not isinstance(reason, ssl.SSLCertVerificationError)
            raise DeliveryError(f"connection failed: {reason}", retryable=retryable) from None
        except TimeoutError:
            raise DeliveryError(f"no response within {self.timeout_s}s", retryable=True) from None
        except (OSError, http.client.HTTPException) as exc:  # reset mid-exchange, garbled reply
            raise DeliveryError(f"exchange failed: {exc!r}", retryable=True) from None
        if not 200 <= status < 300:  # 1xx final statuses never reach here; be explicit anyway
            raise DeliveryError(f"HTTP {status}", retryable=False)

    def close(self) -> None:
        """Nothing to release: every request has its own connection."""
