"""The simulation loop with an in-memory publisher: clock, steps, duration, stop, rate."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.model import Registry, read_registry_file
from sensors_sim.simulator import default_start, floor_time, run, simulated_time
from sunlight.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registry.yaml"
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class ListPublisher:
    """Collects (topic, payload) pairs; optionally sets an event after ``stop_after`` messages."""

    def __init__(self, stop_after: int | None = None, stop: threading.Event | None = None) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.stop_after = stop_after
        self.stop = stop

    def publish(self, topic: str, payload: bytes) -> bool:
        self.sent.append((topic, payload))
        if self.stop is not None and len(self.sent) == self.stop_after:
            self.stop.set()
        return True


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The example registry."""
    return read_registry_file(EXAMPLE)


@pytest.fixture
def settings() -> Settings:
    """Default settings (the broker is never contacted with an injected publisher)."""
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_simulated_clock() -> None:
    """Simulated time is start plus wall elapsed times the speedup."""
    assert simulated_time(START, 2.0, 60.0) == START + timedelta(minutes=2)


def test_floor_time() -> None:
    """The default start is a whole interval in UTC."""
    t = datetime(2026, 11, 23, 10, 7, 31, tzinfo=UTC)
    assert floor_time(t, 60) == datetime(2026, 11, 23, 10, 7, tzinfo=UTC)
    assert floor_time(t, 3600) == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_runs_for_a_duration_and_covers_every_device(
    registry: Registry, settings: Settings
) -> None:
    """With a large speedup, a short run publishes consecutive minutes for every device."""
    publisher = ListPublisher()
    stats = run(
        settings,
        registry,
        start=START,
        realtime_limit=False,
        speedup=36_000,
        duration_s=0.5,
        publisher=publisher,
    )
    assert stats.steps >= 10
    assert stats.messages == len(publisher.sent)
    device_ids = {d.id for d, _, _ in registry.devices()}
    topics = {topic.split("/")[3] for topic, _ in publisher.sent}
    assert topics == device_ids
    stamps = sorted({json.loads(p)["ts"] for _, p in publisher.sent})
    expected = [
        (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(stats.steps)
    ]
    assert stamps[: stats.steps] == expected
    assert len(stamps) - stats.steps in (0, 1)  # the run may end part-way through a step
    assert stats.last == START + timedelta(minutes=stats.steps - 1)


def test_paces_itself_by_the_clock(registry: Registry, settings: Settings) -> None:
    """At 60x and 60 s steps, 0.5 s of wall time holds only the first step."""
    publisher = ListPublisher()
    stats = run(
        settings,
        registry,
        start=START,
        realtime_limit=False,
        speedup=60,
        duration_s=0.5,
        publisher=publisher,
    )
    assert stats.steps == 1


def test_stop_event_ends_the_run_promptly(registry: Registry, settings: Settings) -> None:
    """Setting the stop event from another thread ends an unbounded run within a second."""
    stop = threading.Event()
    publisher = ListPublisher()
    result: list[object] = []
    worker = threading.Thread(
        target=lambda: result.append(
            run(
                settings,
                registry,
                start=START,
                realtime_limit=False,
                speedup=60,
                stop_event=stop,
                publisher=publisher,
            )
        )
    )
    worker.start()
    deadline = time.monotonic() + 5
    while not publisher.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert time.monotonic() - began < 1.0
    assert result


def test_stop_in_the_middle_of_a_step(registry: Registry, settings: Settings) -> None:
    """A stop while publishing ends after the current message; the step does not count."""
    stop = threading.Event()
    publisher = ListPublisher(stop_after=3, stop=stop)
    stats = run(
        settings,
        registry,
        start=START,
        realtime_limit=False,
        speedup=1e6,
        stop_event=stop,
        publisher=publisher,
    )
    assert stats.messages == 3
    assert stats.steps == 0


def test_rate_caps_messages_per_second(registry: Registry, settings: Settings) -> None:
    """With rate=40/s, half a second of wall time publishes at most about 20 messages."""
    publisher = ListPublisher()
    stats = run(
        settings,
        registry,
        start=START,
        realtime_limit=False,
        speedup=1e6,
        rate=40,
        duration_s=0.5,
        publisher=publisher,
    )
    assert 5 <= stats.messages <= 22


def test_never_runs_ahead_of_the_real_clock(registry: Registry, settings: Settings) -> None:
    """Started two minutes back at a huge speedup, it stops at the present minute."""
    start = floor_time(datetime.now(UTC) - timedelta(minutes=2), 60)
    publisher = ListPublisher()
    stats = run(
        settings,
        registry,
        start=start,
        speedup=1e6,
        duration_s=0.5,
        publisher=publisher,
    )
    end = datetime.now(UTC)
    assert stats.last is not None
    assert stats.last <= end
    # One step per minute from the start up to the present one (the clock may tick over
    # during the run), never more.
    assert stats.steps <= int((end - start).total_seconds() // 60) + 1


def test_default_start_backfills_from_the_start_of_yesterday(
    registry: Registry, settings: Settings
) -> None:
    """Without a start, the run begins at local midnight (the devices' time zone) of
    yesterday: a first run has one whole local day to judge daily limits on."""
    stats = run(settings, registry, speedup=1e6, duration_s=0.2, publisher=ListPublisher())
    offset = timedelta(hours=8)  # settings.device_timezone, +08:00
    local_start = stats.start + offset
    assert (local_start.hour, local_start.minute, local_start.second) == (0, 0, 0)
    back = datetime.now(UTC) - stats.start
    assert timedelta(days=1) <= back <= timedelta(days=2)


@pytest.mark.parametrize(
    ("now", "offset", "start"),
    [
        # 12:30 UTC is 20:30 in Beijing: yesterday there began at 16:00 UTC two days back.
        ("2026-11-24T12:30:00+00:00", 8, "2026-11-22T16:00:00+00:00"),
        # 17:00 UTC is already 01:00 on the 25th in Beijing: yesterday is the 24th.
        ("2026-11-24T17:00:00+00:00", 8, "2026-11-23T16:00:00+00:00"),
        ("2026-11-24T00:00:00+00:00", 0, "2026-11-23T00:00:00+00:00"),
        ("2026-11-24T03:00:00+00:00", -5, "2026-11-22T05:00:00+00:00"),
    ],
)
def test_default_start_is_local_midnight_of_yesterday(now: str, offset: int, start: str) -> None:
    assert default_start(datetime.fromisoformat(now), timedelta(hours=offset)) == (
        datetime.fromisoformat(start)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"speedup": 0},
        {"interval_s": -1},
        {"rate": 0},
        {"start": datetime(2026, 11, 23)},  # naive
    ],
)
def test_bad_arguments_are_refused(
    registry: Registry, settings: Settings, kwargs: dict[str, object]
) -> None:
    """Non-positive speeds and naive start times are errors, not silent misbehaviour."""
    with pytest.raises(ValueError, match=r"positive|timezone-aware"):
        run(settings, registry, duration_s=0.1, publisher=ListPublisher(), **kwargs)  # type: ignore[arg-type]
