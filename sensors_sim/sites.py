"""The simulator's view of the registry: one frozen ``SimDevice`` per registry device."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType

from domain.offsets import parse_utc_offset
from domain.pollutants import Medium
from domain.readings import Period
from registry.model import Industry, Outlet, Registry

logger = logging.getLogger(__name__)

AMBIENT_POLLUTANTS: tuple[str, ...] = (
    "pm25",
    "pm10",
    "so2",
    "no2",
    "co",
    "o3",
    "temperature",
    "humidity",
)
# Every flue-gas CEMS reports the stack conditions needed to correct and load-weight its values.
GAS_CONDITIONS: tuple[str, ...] = ("o2", "flow", "temperature")
WATER_POLLUTANTS: tuple[str, ...] = ("cod", "nh3n", "tn", "tp", "ph", "flow")

# Typical stack O2 (%) where the outlet has no reference O2 to sit just above.
_O2_WITHOUT_REFERENCE: Mapping[Industry, float] = {Industry.STEEL: 15.5}
_O2_DEFAULT = 9.0
# How far a well-run stack's O2 sits above its reference (6 % reference → about 8 %).
O2_ABOVE_REFERENCE = 2.0


class SiteKind(StrEnum):
    """What a simulated device measures, which decides its value model."""

    STATION = "station"
    GAS = "gas"
    WATER = "water"


@dataclass(frozen=True, slots=True)
class Limit:
    """The permit limit a simulated outlet stays under, in the pollutant's canonical unit."""

    pollutant: str
    value: float
    o2_corrected: bool


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One device to simulate, with the site facts and fixed random traits its values depend on.

    ``level`` scales the whole site (a station's local pollution, an outlet's size);
    ``loads`` is, per limited pollutant, the fraction of the limit the outlet normally runs at;
    ``weather_phase`` is shared by every device of one run so the whole city sees the same weather.
    """

    device_id: str
    site_id: str
    kind: SiteKind
    medium: Medium
    pollutants: tuple[str, ...]
    utc_offset: timedelta
    industry: Industry | None = None
    zone: int | None = None
    reference_o2: float | None = None
    o2_center: float = _O2_DEFAULT
    limits: Mapping[str, Limit] = field(default_factory=lambda: MappingProxyType({}))
    loads: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    level: float = 1.0
    phase_h: float = 0.0
    weather_phase: float = 0.0


def _outlet_limits(outlet: Outlet) -> dict[str, Limit]:
    """One limit per pollutant: the hourly one when the permit has both hourly and daily."""
    chosen: dict[str, Limit] = {}
    for limit in sorted(outlet.limits, key=lambda lim: lim.period != Period.HOUR):
        if limit.pollutant not in chosen:
            chosen[limit.pollutant] = Limit(limit.pollutant, limit.value, limit.o2_corrected)
    return chosen


def _traits(seed: int, device_id: str) -> random.Random:
    return random.Random(f"{seed}|{device_id}|traits")


def sim_devices(
    registry: Registry, *, seed: int = 0, default_timezone: str = "+08:00"
) -> tuple[SimDevice, ...]:
    """Every device of the registry as a ``SimDevice``; the same seed gives the same traits."""
    default_offset = parse_utc_offset(default_timezone)
    weather_phase = random.Random(f"{seed}|weather").uniform(0.0, 1.0)
    devices: list[SimDevice] = []
    for station in registry.stations:
        for device in station.devices:
            rng = _traits(seed, device.id)
            devices.append(
                SimDevice(
                    device_id=device.id,
                    site_id=station.id,
                    kind=SiteKind.STATION,
                    medium=Medium.AMBIENT,
                    pollutants=AMBIENT_POLLUTANTS,
                    utc_offset=_offset(device.timezone, default_offset),
                    zone=station.zone,
                    level=rng.uniform(0.8, 1.25),
                    phase_h=rng.uniform(-0.75, 0.75),
                    weather_phase=weather_phase,
                )
            )
    for enterprise in registry.enterprises:
        for outlet in enterprise.outlets:
            limits = _outlet_limits(outlet)
            for device in outlet.devices:
                rng = _traits(seed, device.id)
                gas = outlet.kind == "gas"
                base = (*limits, *GAS_CONDITIONS) if gas else WATER_POLLUTANTS
                extra = tuple(p for p in limits if p not in base)
                if outlet.reference_o2 is not None:
                    o2_center = outlet.reference_o2 + O2_ABOVE_REFERENCE
                else:
                    o2_center = _O2_WITHOUT_REFERENCE.get(enterprise.industry, _O2_DEFAULT)
                devices.append(
                    SimDevice(
                        device_id=device.id,
                        site_id=outlet.id,
                        kind=SiteKind.GAS if gas else SiteKind.WATER,
                        medium=outlet.medium,
                        pollutants=tuple(dict.fromkeys((*base, *extra))),
                        utc_offset=_offset(device.timezone, default_offset),
                        industry=enterprise.industry,
                        reference_o2=outlet.reference_o2,
                        o2_center=min(o2_center, 19.5),
                        limits=MappingProxyType(limits),
                        loads=MappingProxyType(
                            {p: rng.uniform(*_load_range(p, gas)) for p in limits}
                        ),
                        level=rng.uniform(0.7, 1.3),
                        phase_h=rng.uniform(-1.0, 1.0),
                        weather_phase=weather_phase,
                    )
                )
    logger.debug("simulating %d devices", len(devices))
    return tuple(devices)


def _offset(timezone: str | None, default: timedelta) -> timedelta:
    return default if timezone is None else parse_utc_offset(timezone)


def _load_range(pollutant: str, gas: bool) -> tuple[float, float]:
    """The fraction of its limit a compliant outlet typically runs at."""
    if gas:
        return (0.45, 0.72)
    # Nitrification usually keeps ammonia far below its limit; total N runs closest.
    return {"nh3n": (0.1, 0.35), "tn": (0.5, 0.72)}.get(pollutant, (0.35, 0.65))
