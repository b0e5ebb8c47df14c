"""Delivering one notification on each of an office's channels: retries, backoff, attempt log.

Two ways in. ``deliver`` retries in-process until every channel has succeeded or given up, the
channels side by side so a slow relay never holds up the webhook. ``attempt_once`` makes a
single attempt on one channel and says when the next is due, for a scheduler that keeps pending
notifications in the database and survives restarts between attempts.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.notifiers.base import DeliveryError, Notification, Notifier, Target

logger = logging.getLogger(__name__)

MAX_WORKERS = 8  # channels per notification; three today


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try on one channel, as the attempt log records it."""

    notification_id: int
    channel: str
    attempt: int  # 1 for the first try
    ok: bool
    retryable: bool  # False when delivered or when the failure is final
    detail: str
    at: datetime  # when the attempt started, UTC
    duration_s: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where one channel stands after ``deliver`` or ``attempt_once``.

    ``next_attempt_at`` is set only when the last attempt failed, the failure is retryable and
    attempts remain; otherwise the channel is done, delivered (``ok``) or failed for good.
    """

    channel: str
    ok: bool
    retryable: bool
    detail: str
    attempts: int  # the number of the last attempt made
    next_attempt_at: datetime | None = None


def backoff(
    attempt: int,
    *,
    base_delay_s: float = 1.0,
    max_delay_s: float = 60.0,
    random_fraction: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): the exponential step
    ``base * 2**(attempt-1)``, capped at ``max_delay_s``, of which the upper half is random so
    that many notifications failing together do not retry together."""
    if attempt < 1:
        raise ValueError("attempts are numbered from 1")
    step = min(max_delay_s, base_delay_s * 2.0 ** min(attempt - 1, 62))
    return step / 2 + random_fraction() * step / 2


@dataclass(frozen=True, slots=True)
class _Retry:
    max_attempts: int
    base_delay_s: float
    max_delay_s: float

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def wait_s(self, attempt: int, retry_after: float | None) -> float:
        delay = backoff(attempt, base_delay_s=self.base_delay_s, max_delay_s=self.max_delay_s)
        if retry_after is not None:  # the receiver knows its own load; still never beyond the cap
            delay = max(delay, min(retry_after, self.max_delay_s))
        return delay


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _try(
    notification: Notification,
    channel: str,
    target: Target,
    notifier: Notifier | None,
    *,
    attempt: int,
    now: Callable[[], datetime],
) -> tuple[Attempt, float | None]:
    """Make one attempt; never raises. Returns the attempt and any receiver-requested wait."""
    at = now()
    started = time.monotonic()
    retry_after: float | None = None
    try:
        if notifier is None:
            raise DeliveryError(f"no notifier for channel {channel!r}", retryable=False)
        notifier.send(notification, target)
    except DeliveryError as exc:
        ok, retryable, detail, retry_after = False, exc.retryable, exc.detail, exc.retry_after_s
    except Exception as exc:
        # A bug in one channel must not take the others down; retrying is harmless if it is
        # deterministic and helps if it is not.
        logger.exception("notification %s: %s notifier raised", notification.id, channel)
        ok, retryable, detail = False, True, f"unexpected {type(exc).__name__}: {exc}"
    else:
        ok, retryable, detail = True, False, "delivered"
    record = Attempt(
        notification_id=notification.id,
        channel=channel,
        attempt=attempt,
        ok=ok,
        retryable=retryable,
        detail=detail,
        at=at,
        duration_s=time.monotonic() - started,
    )
    if ok:
        logger.info(
            "notification %s via %s, attempt %d: delivered", notification.id, channel, attempt
        )
    else:
        logger.warning(
            "notification %s via %s, attempt %d failed (%s): %s",
            notification.id,
            channel,
            attempt,
            "retryable" if retryable else "final",
            detail,
        )
    return record, retry_after


def _report(attempt_log: Callable[[Attempt], None] | None, record: Attempt) -> None:
    if attempt_log is None:
        return
    try:
        attempt_log(record)
    except Exception:
        # The log is for people; a failing log must not turn a delivery into a failure.
        logger.exception("attempt log failed for notification %s", record.notification_id)


def attempt_once(
    notification: Notification,
    channel: str,
    target: Target,
    notifier: Notifier | None,
    *,
    attempt: int,
    attempt_log: Callable[[Attempt], None] | None = None,
    max_attempts: int = 5,
    base_delay_s: float = 1.0,
    max_delay_s: float = 60.0,
    now: Callable[[], datetime] = _utc_now,
) -> Outcome:
    """Make attempt number ``attempt`` (1-based) on one channel and say when the next is due.

    For the scheduler: it stores ``Outcome.next_attempt_at`` and calls again with
    ``attempt + 1`` then; ``None`` there means stop (delivered, final failure, or
    ``max_attempts`` reached).
    """
    if attempt < 1:
        raise ValueError("attempts are numbered from 1")
    retry = _Retry(max_attempts, base_delay_s, max_delay_s)
    record, retry_after = _try(notification, channel, target, notifier, attempt=attempt, now=now)
    _report(attempt_log, record)
    next_at = None
    if not record.ok and record.retryable and attempt < max_attempts:
        next_at = record.at + timedelta(seconds=retry.wait_s(attempt, retry_after))
    return Outcome(channel, record.ok, record.retryable, record.detail, attempt, next_at)


def _deliver_channel(
    notification: Notification,
    channel: str,
    target: Target,
    notifier: Notifier | None,
    *,
    retry: _Retry,
    attempt_log: Callable[[Attempt], None] | None,
    sleep: Callable[[float], None],
    now: Callable[[], datetime],
) -> Outcome:
    attempt = 1
    while True:
        record, retry_after = _try(
            notification, channel, target, notifier, attempt=attempt, now=now
        )
        _report(attempt_log, record)
        if record.ok or not record.retryable or attempt >= retry.max_attempts:
            return Outcome(channel, record.ok, record.retryable, record.detail, attempt)
        sleep(retry.wait_s(attempt, retry_after))
        attempt += 1


def deliver(
    notification: Notification,
    targets: Mapping[str, Target],
    *,
    notifiers: Mapping[str, Notifier],
    attempt_log: Callable[[Attempt], None] | None = None,
    max_attempts: int = 5,
    base_delay_s: float = 1.0,
    max_delay_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = _utc_now,
) -> dict[str, Outcome]:
    """Deliver ``notification`` to every target, each channel in its own thread and retried
    with backoff on its own, so one failing or slow channel never holds up another.

    Returns once every channel has been delivered or given up. A target whose channel has no
    notifier fails for good, without affecting the others.
    """
    retry = _Retry(max_attempts, base_delay_s, max_delay_s)
    if not targets:
        return {}
    with ThreadPoolExecutor(
        max_workers=min(len(targets), MAX_WORKERS), thread_name_prefix="notify"
    ) as pool:
        futures = {
            channel: pool.submit(
                _deliver_channel,
                notification,
                channel,
                target,
                notifiers.get(channel),
                retry=retry,
                attempt_log=attempt_log,
                sleep=sleep,
                now=now,
            )
            for channel, target in targets.items()
        }
        # _deliver_channel never raises (every error becomes an attempt), so result() returns.
        return {channel: future.result() for channel, future in futures.items()}
