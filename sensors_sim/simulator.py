"""The simulation loop: a simulated clock driving every registry device's messages to the broker.

The simulated clock runs at ``start + wall-clock elapsed × speedup``. Simulated time advances in
steps of ``interval_s``; when a step falls due, every device that is not in a gap publishes one
message for it. Steps are never skipped: if publishing cannot keep up, the messages lag behind
the clock rather than leaving holes in the data.

By default the clock never runs ahead of the real one (ingest rejects readings stamped more than
a few minutes in the future): a run starts at the beginning of yesterday in the devices' time
zone, back-fills from there at ``speedup``, then goes on in real time. Starting there, not just
a day back, gives a first run one whole local day: what daily limits (wastewater, GB 3095
24-hour means) are judged on.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.offsets import parse_utc_offset
from registry.model import Registry
from sensors_sim.payloads import messages_at, period_for_interval
from sensors_sim.publisher import MqttPublisher, Publisher
from sensors_sim.sites import sim_devices
from sunlight.settings import Settings

logger = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 3600.0  # log once per simulated hour
DEFAULT_BACKFILL = timedelta(days=1)  # at least; back to the start of that local day


def default_start(now: datetime, utc_offset: timedelta) -> datetime:
    """The start of yesterday, local time at ``utc_offset``, as UTC: 24 to 48 hours back."""
    local = (now + utc_offset - DEFAULT_BACKFILL).replace(hour=0, minute=0, second=0, microsecond=0)
    return local - utc_offset


@dataclass(frozen=True, slots=True)
class RunStats:
    """What a run did: simulated steps completed, messages published, simulated time covered."""

    steps: int
    messages: int
    start: datetime
    last: datetime | None


def floor_time(t: datetime, interval_s: float) -> datetime:
    """``t`` in UTC rounded down to a whole multiple of ``interval_s`` since the epoch."""
    seconds = math.floor(t.timestamp() / interval_s) * interval_s
    return datetime.fromtimestamp(seconds, tz=UTC)


def simulated_time(start: datetime, elapsed_wall_s: float, speedup: float) -> datetime:
    """The simulated clock: ``start`` plus wall-clock seconds elapsed times ``speedup``."""
    return start + timedelta(seconds=elapsed_wall_s * speedup)


def run(
    settings: Settings,
    registry: Registry,
    *,
    seed: int | None = None,
    start: datetime | None = None,
    speedup: float | None = None,
    interval_s: float | None = None,
    rate: float | None = None,
    duration_s: float | None = None,
    stop_event: threading.Event | None = None,
    publisher: Publisher | None = None,
    client_id: str | None = None,
    realtime_limit: bool = True,
) -> RunStats:
    """Publish simulated readings for every device in ``registry`` until stopped.

    Args:
        settings: ``settings.mqtt`` is the broker; ``sim_speedup``, ``sim_interval_s`` and
            ``device_timezone`` are the defaults for the arguments below.
        registry: the validated registry; every device in it publishes.
        seed: the same seed and start give the same messages; None means 0.
        start: simulated time of the first step (timezone-aware); default ``default_start``
            (a day) before now, floored to the interval.
        speedup: simulated seconds per wall-clock second (default ``settings.sim_speedup``).
        interval_s: simulated seconds between a device's messages (default
            ``settings.sim_interval_s``); 60 s gives ``"period": "minute"`` data.
        rate: at most this many messages per wall-clock second (for load tests); None: no cap.
        duration_s: stop after this many wall-clock seconds; None: run until ``stop_event``.
        stop_event: set it (from another thread or a signal handler) to stop promptly.
        publisher: where to send messages; default an ``MqttPublisher`` on ``settings.mqtt``,
            connected here and disconnected on return. A given publisher is not closed.
        client_id: MQTT client id of the default publisher; default ``sunlight-sim-<pid>``.
        realtime_limit: never publish a step stamped after the real (wall) clock; once the
            simulated clock catches up, it runs in real time. False lets it run ahead (tests).

    Returns the ``RunStats`` of the run. Raises ``PublishError`` if the broker is unreachable.
    """
    speedup = settings.sim_speedup if speedup is None else speedup
    interval_s = settings.sim_interval_s if interval_s is None else interval_s
    if speedup <= 0 or interval_s <= 0 or (rate is not None and rate <= 0):
        raise ValueError("speedup, interval_s and rate must be positive")
    if start is None:
        offset = parse_utc_offset(settings.device_timezone)
        start = floor_time(default_start(datetime.now(UTC), offset), interval_s)
    elif start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    seed = 0 if seed is None else seed
    stop = stop_event or threading.Event()
    devices = sim_devices(registry, seed=seed, default_timezone=settings.device_timezone)
    period = period_for_interval(interval_s)

    owned: MqttPublisher | None = None
    if publisher is None:
        owned = MqttPublisher(
            settings.mqtt, client_id=client_id or f"sunlight-sim-{os.getpid()}", cancel=stop
        )
        owned.connect()
        publisher = owned
    logger.info(
        "simulating %d devices from %s at %g× (a message every %g simulated s) to %s",
        len(devices),
        start.isoformat(),
        speedup,
        interval_s,
        settings.mqtt.display,
    )

    steps = messages = 0
    last: datetime | None = None
    wall0 = time.monotonic()
    deadline = None if duration_s is None else wall0 + duration_s
    next_progress = _PROGRESS_EVERY_S
    try:
        while not stop.is_set():
            now = time.monotonic()
            t = start + timedelta(seconds=steps * interval_s)
            due = wall0 + steps * interval_s / speedup
            if realtime_limit:
                due = max(due, now + (t - datetime.now(UTC)).total_seconds())
            if deadline is not None and (now >= deadline or due >= deadline):
                break
            if due > now:
                stop.wait(due - now)
                continue
            for message in messages_at(devices, t, seed=seed, period=period):
                if rate is not None:
                    wait = wall0 + messages / rate - time.monotonic()
                    if deadline is not None:
                        wait = min(wait, deadline - time.monotonic())
                    if wait > 0:
                        stop.wait(wait)
                if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    break
                if publisher.publish(message.topic, message.encode()):
                    messages += 1
            else:
                steps += 1
                last = t
                if steps * interval_s >= next_progress:
                    next_progress += _PROGRESS_EVERY_S
                    logger.info("simulated up to %s: %d messages", t.isoformat(), messages)
                continue
            break  # stopped or out of time in the middle of a step
    finally:
        if owned is not None:
            owned.close()
    logger.info("simulator stopped after %d steps, %d messages", steps, messages)
    return RunStats(steps=steps, messages=messages, start=start, last=last)
