"""Value models of the simulator: daily shapes, limits, O2 consistency, units, determinism."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean

import pytest

from domain.pollutants import Medium, get_pollutant
from domain.readings import Flag
from registry.model import Registry, read_registry_file
from sensors_sim.events import DeviceState, device_state
from sensors_sim.profiles import (
    ambient_value,
    bump,
    device_readings,
    diurnal_factor,
    local_hour,
    o2_correction,
)
from sensors_sim.sites import SimDevice, SiteKind, sim_devices

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "registry.yaml"
START = datetime(2026, 11, 23, tzinfo=UTC)
QUIET = DeviceState(silent=False, flag=Flag.NORMAL, episode=None)

Week = dict[str, list[tuple[datetime, DeviceState, dict[str, float]]]]


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The example registry."""
    return read_registry_file(EXAMPLE)


@pytest.fixture(scope="module")
def devices(registry: Registry) -> tuple[SimDevice, ...]:
    """Simulated devices of the example registry with seed 7."""
    return sim_devices(registry, seed=7)


def _week(
    devices: tuple[SimDevice, ...], step: timedelta = timedelta(minutes=10), days: int = 7
) -> Week:
    """Per device: (time, state, {pollutant: value}) for every step where it is not silent."""
    out: Week = defaultdict(list)
    t = START
    while t < START + timedelta(days=days):
        for device in devices:
            state = device_state(device, t, seed=7)
            if state.silent:
                continue
            rng = random.Random(f"7|{device.device_id}|{t.isoformat()}")
            values = {r.pollutant: r.value for r in device_readings(device, t, rng, state)}
            out[device.device_id].append((t, state, values))
        t += step
    return out


@pytest.fixture(scope="module")
def week(devices: tuple[SimDevice, ...]) -> Week:
    """A simulated week at 10-minute steps."""
    return _week(devices)


def test_bump_peaks_at_its_centre_and_wraps_midnight() -> None:
    """The daily bell curve is 1 at its centre and symmetric across midnight."""
    assert bump(8.0, 8.0, 1.5) == pytest.approx(1.0)
    assert bump(23.0, 1.0, 2.0) == pytest.approx(bump(3.0, 1.0, 2.0))
    assert bump(20.0, 8.0, 1.5) < 0.01


@pytest.mark.parametrize(
    ("pollutant", "high", "low"),
    [
        ("no2", 8.0, 3.0),  # morning rush hour
        ("no2", 19.0, 14.0),  # evening rush hour
        ("co", 19.0, 3.0),
        ("o3", 15.0, 4.0),  # afternoon photochemistry
        ("o3", 15.0, 8.0),
        ("pm25", 2.0, 14.0),  # night-time build-up
        ("pm10", 1.0, 13.0),
    ],
)
def test_diurnal_shape(pollutant: str, high: float, low: float) -> None:
    """Each ambient pollutant is higher at its characteristic hour than at its quiet hour."""
    assert diurnal_factor(pollutant, high) > 1.2 * diurnal_factor(pollutant, low)


def test_local_hour_uses_the_device_offset(devices: tuple[SimDevice, ...]) -> None:
    """02:00 UTC is 10:00 at a +08:00 device, give or take its phase."""
    device = devices[0]
    hour = local_hour(device, datetime(2026, 11, 23, 2, tzinfo=UTC))
    assert hour == pytest.approx(10.0 + device.phase_h)


def test_station_no2_peaks_in_rush_hour(devices: tuple[SimDevice, ...]) -> None:
    """Over a week, a station's NO2 at 08:00 local beats 03:00 local, noise and all."""
    station = next(d for d in devices if d.kind is SiteKind.STATION)
    rng = random.Random(1)

    def at(local_hour_: int) -> float:
        days = [START + timedelta(days=d, hours=local_hour_ - 8) for d in range(7)]
        return mean(ambient_value(station, "no2", t, rng) for t in days)

    assert at(8) > 1.3 * at(3)


def test_park_station_is_cleaner(week: Week, devices: tuple[SimDevice, ...]) -> None:
    """The zone 1 park's weekly PM2.5 is below every zone 2 station's."""
    pm = {
        d.device_id: mean(v["pm25"] for _, _, v in week[d.device_id])
        for d in devices
        if d.kind is SiteKind.STATION
    }
    park = next(d.device_id for d in devices if d.zone == 1)
    assert all(pm[park] < value for dev, value in pm.items() if dev != park)


def test_ambient_values_are_plausible(week: Week, devices: tuple[SimDevice, ...]) -> None:
    """Weekly means sit in the ranges of a northern Chinese city in late autumn."""
    stations = [d for d in devices if d.kind is SiteKind.STATION]
    values = [v for d in stations for _, _, v in week[d.device_id]]
    assert 15 < mean(v["pm25"] for v in values) < 90
    assert mean(v["pm10"] for v in values) > mean(v["pm25"] for v in values)
    assert 0.2 < mean(v["co"] for v in values) < 3  # mg/m3
    assert -10 < mean(v["temperature"] for v in values) < 15
    assert all(0 <= v["humidity"] <= 100 for v in values)
    assert all(v[p] >= 0 for v in values for p in ("pm25", "pm10", "so2", "no2", "co", "o3"))


def test_o2_correction_worked_example() -> None:
    """At 6 % reference, 8 % measured O2 scales a concentration by 15/13."""
    assert o2_correction(6.0, 8.0) == pytest.approx(15 / 13)
    assert o2_correction(15.0, 15.0) == pytest.approx(1.0)


def test_coal_stack_o2_is_seven_to_nine_percent(
    week: Week,
    devices: tuple[SimDevice, ...],
) -> None:
    """Stacks judged at 6 % O2 measure 7-9 % O2 nearly all the time."""
    o2 = [v["o2"] for d in devices if d.reference_o2 == 6 for _, _, v in week[d.device_id]]
    assert o2
    inside = sum(1 for x in o2 if 7.0 <= x <= 9.0) / len(o2)
    assert inside > 0.95


def _judged(device: SimDevice, pollutant: str, values: dict[str, float]) -> float:
    """The value as the permit judges it: O2-corrected when the limit says so."""
    limit = device.limits[pollutant]
    if limit.o2_corrected and device.reference_o2 is not None:
        return values[pollutant] * o2_correction(device.reference_o2, values["o2"])
    return values[pollutant]


def test_gas_outlets_run_near_but_mostly_under_their_limits(
    week: Week,
    devices: tuple[SimDevice, ...],
) -> None:
    """Outside episodes every stack value is under its limit; overall ≥ 95 % are, means ≥ 35 %."""
    for device in (d for d in devices if d.kind is SiteKind.GAS):
        for pollutant, limit in device.limits.items():
            rows = week[device.device_id]
            judged = [(s, _judged(device, pollutant, v)) for _, s, v in rows]
            quiet = [x for s, x in judged if s.episode is None or s.episode.pollutant != pollutant]
            assert all(x <= limit.value for x in quiet), (device.device_id, pollutant)
            under = sum(1 for _, x in judged if x <= limit.value) / len(judged)
            assert under >= 0.95, (device.device_id, pollutant)
            assert mean(quiet) >= 0.35 * limit.value, (device.device_id, pollutant)


def test_measured_concentration_is_below_the_corrected_one(
    week: Week,
    devices: tuple[SimDevice, ...],
) -> None:
    """With O2 above the reference, the raw CEMS value is lower than the value judged."""
    device = next(d for d in devices if d.reference_o2 == 6)
    for _, _, values in week[device.device_id]:
        assert values["so2"] < _judged(device, "so2", values)


def test_exceedance_episodes_happen_and_exceed(
    devices: tuple[SimDevice, ...],
) -> None:
    """Over a month some outlet has 1-3 h episodes, and the judged values then exceed the limit."""
    outlets = [d for d in devices if d.limits]
    episodes = {
        (d.device_id, e.pollutant, e.start, e.end): d
        for d in outlets
        for h in range(30 * 24)
        if (e := device_state(d, START + timedelta(hours=h, minutes=30), seed=7).episode)
    }
    assert episodes
    for (_, pollutant, begin, end), device in episodes.items():
        assert timedelta(hours=1) <= end - begin <= timedelta(hours=3)
        t = begin + timedelta(minutes=20)
        state = device_state(device, t, seed=7)
        values = {r.pollutant: r.value for r in device_readings(device, t, random.Random(3), state)}
        assert _judged(device, pollutant, values) > device.limits[pollutant].value


def test_water_outlets_stay_under_daily_limits(
    week: Week,
    devices: tuple[SimDevice, ...],
) -> None:
    """Daily means of effluent values are under the daily limits on ≥ 6 of 7 days; pH 6-9."""
    for device in (d for d in devices if d.kind is SiteKind.WATER):
        rows = week[device.device_id]
        assert all(6 <= v["ph"] <= 9 for _, _, v in rows)
        for pollutant, limit in device.limits.items():
            by_day: dict[int, list[float]] = defaultdict(list)
            for t, _, v in rows:
                by_day[t.day].append(v[pollutant])
            under = sum(1 for day in by_day.values() if mean(day) <= limit.value)
            assert under >= 6, (device.device_id, pollutant)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            SiteKind.STATION,
            {
                "pm25": "ug/m3",
                "pm10": "ug/m3",
                "so2": "ug/m3",
                "no2": "ug/m3",
                "co": "mg/m3",
                "o3": "ug/m3",
                "temperature": "degC",
                "humidity": "%",
            },
        ),
        (
            SiteKind.GAS,
            {
                "pm": "mg/m3",
                "so2": "mg/m3",
                "nox": "mg/m3",
                "o2": "%",
                "flow": "m3/s",
                "temperature": "degC",
            },
        ),
        (
            SiteKind.WATER,
            {"cod": "mg/L", "nh3n": "mg/L", "tn": "mg/L", "tp": "mg/L", "ph": "pH", "flow": "L/s"},
        ),
    ],
)
def test_units_are_canonical(
    devices: tuple[SimDevice, ...], kind: SiteKind, expected: dict[str, str]
) -> None:
    """Each kind of device reports exactly its pollutants, in the catalogue's canonical units."""
    medium = {SiteKind.STATION: Medium.AMBIENT, SiteKind.GAS: Medium.FLUE_GAS}.get(
        kind, Medium.WASTEWATER
    )
    for device in (d for d in devices if d.kind is kind):
        readings = device_readings(device, START, random.Random(0), QUIET)
        units = {r.pollutant: r.unit for r in readings}
        assert units == expected
        assert all(get_pollutant(p).unit_for(medium) == u for p, u in units.items())


def test_values_repeat_with_the_same_rng(devices: tuple[SimDevice, ...]) -> None:
    """The value models draw only from the rng they are given."""
    for device in devices:
        a = device_readings(device, START, random.Random(42), QUIET)
        b = device_readings(device, START, random.Random(42), QUIET)
        assert a == b


def test_traits_depend_on_the_seed(registry: Registry) -> None:
    """Same seed, same device traits; another seed, other traits."""
    assert sim_devices(registry, seed=1) == sim_devices(registry, seed=1)
    assert sim_devices(registry, seed=1) != sim_devices(registry, seed=2)
