"""Value models: pure functions of (device, pollutant, time, rng) giving realistic readings.

Ambient values follow the daily rhythm of a northern Chinese city (traffic peaks for NO2 and CO,
an afternoon O3 peak, PM building up overnight) on top of a multi-day weather cycle shared by the
whole city. Stack values run at a fixed fraction of the permit limit, judged after O2 correction,
so the *measured* value is what a CEMS would see at the simulated O2. Water values sit under the
daily limits. All randomness comes from the ``rng`` argument, so a seeded rng repeats exactly.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from domain.pollutants import get_pollutant
from domain.readings import Flag
from registry.model import Industry
from sensors_sim.events import DeviceState
from sensors_sim.sites import SimDevice, SiteKind

logger = logging.getLogger(__name__)

_TAU: Final = 2 * math.pi

# Zone 2 city background in late autumn; ug/m3 except CO (mg/m3).
AMBIENT_BASE: Final[dict[str, float]] = {
    "pm25": 42.0,
    "pm10": 75.0,
    "so2": 9.0,
    "no2": 34.0,
    "co": 0.8,
    "o3": 48.0,
}
# A zone 1 park: less traffic and industry; O3 slightly higher because less NO titrates it.
ZONE_1_FACTOR: Final[dict[str, float]] = {"o3": 1.1}
ZONE_1_DEFAULT: Final = 0.6
WEATHER_PERIOD_DAYS: Final = 4.5  # a front clears the air about twice a week
WEATHER_AMPLITUDE: Final = 0.4

# Stack flow (m3/s) and temperature (degC) by industry.
STACK_FLOW: Final[dict[Industry, float]] = {
    Industry.THERMAL_POWER: 320.0,
    Industry.STEEL: 250.0,
    Industry.CEMENT: 110.0,
    Industry.CHEMICAL: 35.0,
}
STACK_TEMPERATURE: Final[dict[Industry, float]] = {
    Industry.THERMAL_POWER: 50.0,  # after wet desulphurisation
    Industry.STEEL: 135.0,
    Industry.CEMENT: 110.0,
    Industry.CHEMICAL: 140.0,
}
_STACK_FLOW_DEFAULT: Final = 60.0
_STACK_TEMPERATURE_DEFAULT: Final = 120.0

# Effluent flow (L/s): a 100 000 m3/day municipal plant is about 1 160 L/s.
EFFLUENT_FLOW: Final[dict[Industry, float]] = {Industry.WASTEWATER_TREATMENT: 1160.0}
_EFFLUENT_FLOW_DEFAULT: Final = 60.0
# Typical effluent where the permit sets no limit, mg/L.
EFFLUENT_TYPICAL: Final[dict[str, float]] = {
    "cod": 24.0,
    "nh3n": 1.0,
    "tn": 10.0,
    "tp": 0.25,
    "ss": 6.0,
}

_DECIMALS: Final[dict[str, int]] = {
    "temperature": 1,
    "humidity": 1,
    "co": 3,
    "o2": 2,
    "nh3n": 3,
    "tp": 3,
    "tn": 2,
    "ph": 2,
}


@dataclass(frozen=True, slots=True)
class SimReading:
    """One simulated value in the pollutant's canonical unit for the device's medium."""

    pollutant: str
    value: float
    unit: str
    flag: Flag


def local_hour(device: SimDevice, t: datetime) -> float:
    """Hour of the local day (0 ≤ h < 24) at the device, shifted by its own phase."""
    local = t + device.utc_offset
    hour = local.hour + local.minute / 60 + local.second / 3600
    return (hour + device.phase_h) % 24


def bump(hour: float, centre: float, width: float) -> float:
    """A daily bell curve peaking at 1 at ``centre`` o'clock, wrapping around midnight."""
    distance = (hour - centre + 12) % 24 - 12
    return math.exp(-0.5 * (distance / width) ** 2)


def diurnal_factor(pollutant: str, hour: float) -> float:
    """Multiplier of the daily mean for an ambient pollutant at local ``hour``."""
    if pollutant in ("no2", "co"):  # rush hours
        return 0.7 + 0.55 * bump(hour, 8.0, 1.5) + 0.7 * bump(hour, 19.0, 2.0)
    if pollutant == "o3":  # photochemistry: afternoon peak, titrated away at night
        return 0.3 + 1.5 * bump(hour, 15.0, 2.8)
    if pollutant in ("pm25", "pm10"):  # shallow night-time boundary layer traps particles
        return 1.0 + 0.35 * math.cos(_TAU * (hour - 1.0) / 24) + 0.1 * bump(hour, 8.0, 1.5)
    if pollutant == "so2":  # heating boilers and a morning fumigation bump
        return 0.9 + 0.3 * bump(hour, 10.0, 3.0)
    return 1.0


def weather_factor(device: SimDevice, t: datetime) -> float:
    """City-wide multi-day cycle of stagnation and clean-air days (same for all stations)."""
    days = t.timestamp() / 86400
    return 1.0 + WEATHER_AMPLITUDE * math.sin(
        _TAU * (days / WEATHER_PERIOD_DAYS + device.weather_phase)
    )


def _by_industry(table: dict[Industry, float], industry: Industry | None, default: float) -> float:
    return default if industry is None else table.get(industry, default)


def _noise(rng: random.Random, sigma: float) -> float:
    """Multiplicative noise, clipped at 3 sigma so a quiet outlet never crosses its limit."""
    return math.exp(max(-3.0, min(3.0, rng.gauss(0.0, 1.0))) * sigma)


def air_temperature(device: SimDevice, t: datetime, rng: random.Random) -> float:
    """degC: seasonal mean (coldest late January) plus a daily swing peaking mid-afternoon."""
    day_of_year = t.timetuple().tm_yday
    seasonal = 11.5 - 15.5 * math.cos(_TAU * (day_of_year - 20) / 365)
    daily = 5.0 * math.cos(_TAU * (local_hour(device, t) - 15.0) / 24)
    return seasonal + daily + rng.gauss(0.0, 0.4)


def ambient_value(device: SimDevice, pollutant: str, t: datetime, rng: random.Random) -> float:
    """An ambient station's minute value of ``pollutant`` in its canonical ambient unit."""
    hour = local_hour(device, t)
    if pollutant == "temperature":
        return air_temperature(device, t, rng)
    if pollutant == "humidity":
        humidity = 55.0 - 20.0 * math.cos(_TAU * (hour - 15.0) / 24) + rng.gauss(0.0, 2.0)
        return min(100.0, max(5.0, humidity))
    base = AMBIENT_BASE[pollutant]
    if device.zone == 1:
        base *= ZONE_1_FACTOR.get(pollutant, ZONE_1_DEFAULT)
    weather = weather_factor(device, t)
    if pollutant == "o3":  # stagnant, polluted days carry less O3 in the cold season
        weather = 2.0 - weather
    return base * device.level * weather * diurnal_factor(pollutant, hour) * _noise(rng, 0.08)


def stack_o2(device: SimDevice, t: datetime, rng: random.Random) -> float:
    """Measured stack O2 (%): a little above the reference, drifting with combustion."""
    drift = 0.4 * math.sin(_TAU * local_hour(device, t) / 24)
    floor = (device.reference_o2 or 0.0) + 0.3
    return min(20.0, max(floor, device.o2_center + drift + rng.gauss(0.0, 0.25)))


def plant_load(device: SimDevice, t: datetime) -> float:
    """Fraction of rated output: plants follow the daytime power and production demand."""
    hour = local_hour(device, t)
    return 0.85 + 0.1 * bump(hour, 11.0, 2.5) + 0.1 * bump(hour, 19.5, 2.0)


def o2_correction(reference_o2: float, measured_o2: float) -> float:
    """HJ 75 factor turning a measured concentration into one at the reference O2."""
    return (21.0 - reference_o2) / (21.0 - measured_o2)


def gas_value(
    device: SimDevice,
    pollutant: str,
    t: datetime,
    rng: random.Random,
    *,
    o2: float,
    state: DeviceState,
) -> float:
    """A stack value as the CEMS measures it (before O2 correction) in the flue-gas unit."""
    industry = device.industry
    if pollutant == "o2":
        return o2
    if pollutant == "flow":
        rated = _by_industry(STACK_FLOW, industry, _STACK_FLOW_DEFAULT)
        return rated * device.level * plant_load(device, t) * _noise(rng, 0.03)
    if pollutant == "temperature":
        typical = _by_industry(STACK_TEMPERATURE, industry, _STACK_TEMPERATURE_DEFAULT)
        return typical + rng.gauss(0.0, 1.5)
    limit = device.limits.get(pollutant)
    if limit is None:  # a pollutant reported without a permit limit: a low, steady value
        return 5.0 * _noise(rng, 0.1)
    episode = state.episode
    if episode is not None and episode.pollutant == pollutant:
        judged = limit.value * episode.severity * _noise(rng, 0.06)
    else:
        swing = 1.0 + 0.08 * math.sin(_TAU * local_hour(device, t) / 24)
        judged = limit.value * device.loads[pollutant] * swing * _noise(rng, 0.07)
    if limit.o2_corrected and device.reference_o2 is not None:
        return judged / o2_correction(device.reference_o2, o2)
    return judged


def water_value(
    device: SimDevice,
    pollutant: str,
    t: datetime,
    rng: random.Random,
    *,
    state: DeviceState,
) -> float:
    """An effluent value in its wastewater unit (mg/L, pH, L/s)."""
    hour = local_hour(device, t)
    if pollutant == "ph":
        return 7.1 + 0.15 * math.sin(_TAU * hour / 24) + rng.gauss(0.0, 0.05)
    if pollutant == "flow":
        rated = _by_industry(EFFLUENT_FLOW, device.industry, _EFFLUENT_FLOW_DEFAULT)
        # Inflow peaks mid-morning and evening; the plant's storage smooths it.
        shape = 0.85 + 0.25 * bump(hour, 10.0, 2.5) + 0.2 * bump(hour, 20.0, 2.5)
        return rated * device.level * shape * _noise(rng, 0.04)
    limit = device.limits.get(pollutant)
    episode = state.episode
    if limit is not None and episode is not None and episode.pollutant == pollutant:
        return limit.value * episode.severity * _noise(rng, 0.05)
    # The effluent lags the influent by a treatment time of about half a day.
    swing = 1.0 + 0.1 * bump(hour, 22.0, 3.0)
    typical = (
        limit.value * device.loads[pollutant]
        if limit is not None
        else EFFLUENT_TYPICAL.get(pollutant, 5.0)
    )
    return typical * swing * _noise(rng, 0.06)


def _round(pollutant: str, value: float) -> float:
    return round(value, _DECIMALS.get(pollutant, 1 if value >= 10 else 2))


def device_readings(
    device: SimDevice, t: datetime, rng: random.Random, state: DeviceState
) -> list[SimReading]:
    """All of ``device``'s readings at ``t``, each flagged with the device's current flag."""
    values: dict[str, float] = {}
    if device.kind is SiteKind.STATION:
        for pollutant in device.pollutants:
            values[pollutant] = ambient_value(device, pollutant, t, rng)
    elif device.kind is SiteKind.GAS:
        o2 = stack_o2(device, t, rng)
        for pollutant in device.pollutants:
            values[pollutant] = gas_value(device, pollutant, t, rng, o2=o2, state=state)
    else:
        for pollutant in device.pollutants:
            values[pollutant] = water_value(device, pollutant, t, rng, state=state)
    return [
        SimReading(
            pollutant=pollutant,
            value=_round(pollutant, value),
            unit=get_pollutant(pollutant).unit_for(device.medium),
            flag=state.flag,
        )
        for pollutant, value in values.items()
    ]
