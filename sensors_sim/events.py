"""What is happening to a device at a simulated time: exceedance episodes, gaps, C/M flags.

Every decision is a pure function of (seed, device, time bucket), so the state at any time can be
computed directly — without replaying the past — and two runs with one seed agree exactly.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from domain.readings import Flag
from sensors_sim.sites import SimDevice, SiteKind

logger = logging.getLogger(__name__)

HOUR_S = 3600
DAY_S = 86400

EPISODE_CHANCE_PER_HOUR = 1 / 96  # an outlet exceeds about once in four days
EPISODE_HOURS = (1, 3)
EPISODE_SEVERITY = (1.2, 1.7)  # multiple of the limit while exceeding
GAP_CHANCE_PER_HOUR = 1 / 60
GAP_MINUTES = (5, 40)
CALIBRATION_MINUTES = 10  # the daily automatic zero/span check
MAINTENANCE_CHANCE_PER_DAY = 0.1
MAINTENANCE_MINUTES = (30, 120)
MAINTENANCE_LOCAL_HOURS = (9, 16)  # technicians come in working hours


@dataclass(frozen=True, slots=True)
class Episode:
    """An exceedance under way: which pollutant, how many times its limit, from when to when."""

    pollutant: str
    severity: float
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DeviceState:
    """The device's condition at one instant. A silent device publishes nothing."""

    silent: bool
    flag: Flag
    episode: Episode | None


def _epoch(t: datetime) -> float:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("simulated times must be timezone-aware")
    return t.timestamp()


def _from_epoch(seconds: float, like: datetime) -> datetime:
    return datetime.fromtimestamp(seconds, tz=like.tzinfo)


@lru_cache(maxsize=65536)
def _episode_starting(
    seed: int, device_id: str, hour: int, pollutants: tuple[str, ...]
) -> tuple[str, float, int] | None:
    """The episode that starts at ``hour`` (epoch hours), as (pollutant, severity, hours)."""
    rng = random.Random(f"{seed}|{device_id}|episode|{hour}")
    if not pollutants or rng.random() >= EPISODE_CHANCE_PER_HOUR:
        return None
    return rng.choice(pollutants), rng.uniform(*EPISODE_SEVERITY), rng.randint(*EPISODE_HOURS)


@lru_cache(maxsize=65536)
def _gap_in_hour(seed: int, device_id: str, hour: int) -> tuple[int, int] | None:
    """A silent stretch starting in ``hour``, as (start, end) epoch seconds."""
    rng = random.Random(f"{seed}|{device_id}|gap|{hour}")
    if rng.random() >= GAP_CHANCE_PER_HOUR:
        return None
    start = hour * HOUR_S + rng.randrange(60) * 60
    return start, start + rng.randint(*GAP_MINUTES) * 60


@lru_cache(maxsize=4096)
def _calibration_second_of_day(seed: int, device_id: str) -> int:
    return random.Random(f"{seed}|{device_id}|calibration").randrange(DAY_S // 60) * 60


@lru_cache(maxsize=65536)
def _maintenance_on_day(
    seed: int, device_id: str, day: int, offset_s: int
) -> tuple[int, int] | None:
    """A maintenance visit on local ``day`` (epoch days), as (start, end) epoch seconds."""
    rng = random.Random(f"{seed}|{device_id}|maintenance|{day}")
    if rng.random() >= MAINTENANCE_CHANCE_PER_DAY:
        return None
    first, last = MAINTENANCE_LOCAL_HOURS
    start = day * DAY_S - offset_s + rng.randrange(first * 60, last * 60) * 60
    return start, start + rng.randint(*MAINTENANCE_MINUTES) * 60


def episode_at(device: SimDevice, t: datetime, *, seed: int) -> Episode | None:
    """The exceedance episode covering ``t``, if any. Stations have none: they follow weather."""
    if device.kind is SiteKind.STATION or not device.limits:
        return None
    now = _epoch(t)
    hour = math.floor(now / HOUR_S)
    pollutants = tuple(device.limits)
    for back in range(EPISODE_HOURS[1]):
        found = _episode_starting(seed, device.device_id, hour - back, pollutants)
        if found is not None and back < found[2]:
            pollutant, severity, hours = found
            start = (hour - back) * HOUR_S
            return Episode(
                pollutant,
                severity,
                _from_epoch(start, t),
                _from_epoch(start + hours * HOUR_S, t),
            )
    return None


def is_silent(device: SimDevice, t: datetime, *, seed: int) -> bool:
    """Whether the device is in a communication gap at ``t``."""
    now = _epoch(t)
    hour = math.floor(now / HOUR_S)
    for start_hour in (hour, hour - 1):  # a gap may run over into the next hour
        gap = _gap_in_hour(seed, device.device_id, start_hour)
        if gap is not None and gap[0] <= now < gap[1]:
            return True
    return False


def flag_at(device: SimDevice, t: datetime, *, seed: int) -> Flag:
    """M during a maintenance visit, C during the daily calibration, N otherwise."""
    now = _epoch(t)
    offset_s = int(device.utc_offset / timedelta(seconds=1))
    day = math.floor((now + offset_s) / DAY_S)
    for visit_day in (day, day - 1):
        visit = _maintenance_on_day(seed, device.device_id, visit_day, offset_s)
        if visit is not None and visit[0] <= now < visit[1]:
            return Flag.MAINTENANCE
    calibration = _calibration_second_of_day(seed, device.device_id)
    if 0 <= (now % DAY_S) - calibration < CALIBRATION_MINUTES * 60:
        return Flag.CALIBRATION
    return Flag.NORMAL


def device_state(device: SimDevice, t: datetime, *, seed: int) -> DeviceState:
    """Everything the value model and the publisher need to know about ``device`` at ``t``."""
    return DeviceState(
        silent=is_silent(device, t, seed=seed),
        flag=flag_at(device, t, seed=seed),
        episode=episode_at(device, t, seed=seed),
    )
