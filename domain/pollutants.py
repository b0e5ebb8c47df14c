"""The pollutant catalogue: names, HJ 212 codes, molar masses and units per medium.

Kept as data so a code or unit that the standard changes is corrected in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Final

from domain import units as u
from domain.errors import UnitError, ValidationError


class Medium(StrEnum):
    """Where a value was measured; decides the canonical unit."""

    AMBIENT = "ambient"
    FLUE_GAS = "flue_gas"
    WASTEWATER = "wastewater"


@dataclass(frozen=True, slots=True)
class Pollutant:
    """One measured quantity. ``units`` maps each medium it occurs in to its canonical unit."""

    code: str
    name_en: str
    name_zh: str
    units: dict[Medium, str]
    hj212: tuple[str, ...] = ()
    molar_mass: float | None = None  # g/mol as HJ 75 rounds it (flue-gas ppm → mg/m³)
    aliases: tuple[str, ...] = field(default=())
    # g/mol unrounded, for ambient ppb/ppm → µg/m³: the mass US EPA converts back with
    # (domain.aqi.epa), so a station's 75 ppb is rated as 75 ppb.
    exact_molar_mass: float | None = None

    def unit_for(self, medium: Medium) -> str:
        try:
            return self.units[medium]
        except KeyError:
            raise ValidationError(
                f"pollutant {self.code!r} is not measured in {medium.value}",
                reason="pollutant_not_for_medium",
            ) from None


_A, _F, _W = Medium.AMBIENT, Medium.FLUE_GAS, Medium.WASTEWATER

POLLUTANTS: Final[tuple[Pollutant, ...]] = (
    # Gases and particles: ambient in ug/m3 (CO in mg/m3, GB 3095), flue gas in mg/m3 (HJ 75).
    Pollutant(
        "so2",
        "SO2",
        "二氧化硫",
        {_A: u.UG_M3, _F: u.MG_M3},
        ("a21026",),
        64.0,
        exact_molar_mass=64.066,
    ),
    Pollutant(
        "no2",
        "NO2",
        "二氧化氮",
        {_A: u.UG_M3, _F: u.MG_M3},
        ("a21004",),
        46.0,
        exact_molar_mass=46.0055,
    ),
    Pollutant(
        "no",
        "NO",
        "一氧化氮",
        {_A: u.UG_M3, _F: u.MG_M3},
        ("a21003",),
        30.0,
        exact_molar_mass=30.0061,
    ),
    Pollutant(
        "nox",
        "NOx (as NO2)",
        "氮氧化物",
        {_A: u.UG_M3, _F: u.MG_M3},
        ("a21002",),
        46.0,
        exact_molar_mass=46.0055,
    ),
    Pollutant(
        "co",
        "CO",
        "一氧化碳",
        {_A: u.MG_M3, _F: u.MG_M3},
        ("a21005",),
        28.0,
        exact_molar_mass=28.0101,
    ),
    Pollutant("o3", "O3", "臭氧", {_A: u.UG_M3}, ("a05024",), 48.0, exact_molar_mass=47.9982),
    Pollutant("pm10", "PM10", "可吸入颗粒物", {_A: u.UG_M3}, ("a34002",), aliases=("pm_10",)),
    Pollutant("pm25", "PM2.5", "细颗粒物", {_A: u.UG_M3}, ("a34004",), aliases=("pm2.5", "pm2_5")),
    Pollutant("pm", "Particulate matter", "颗粒物", {_F: u.MG_M3}, ("a34013",), aliases=("dust",)),
    Pollutant("nmhc", "Non-methane hydrocarbons", "非甲烷总烃", {_F: u.MG_M3}, ("a24088",)),
    Pollutant("hg", "Mercury", "汞及其化合物", {_F: u.MG_M3}, ("a20058",)),
    Pollutant("co2", "CO2", "二氧化碳", {_F: u.PERCENT}, ("a05001",)),
    Pollutant("o2", "O2", "氧气含量", {_F: u.PERCENT}, ("a19001",)),
    Pollutant("flow", "Flow", "流量", {_F: u.M3_S, _W: u.L_S}, ("a00000", "w00000")),
    Pollutant(
        "temperature", "Temperature", "温度", {_A: u.DEG_C, _F: u.DEG_C}, ("a01012", "a01001")
    ),
    Pollutant("pressure", "Pressure", "压力", {_A: u.KPA, _F: u.KPA}, ("a01013", "a01006")),
    Pollutant("humidity", "Humidity", "湿度", {_A: u.PERCENT, _F: u.PERCENT}, ("a01014", "a01002")),
    Pollutant("wind_speed", "Wind speed", "风速", {_A: u.M_S}, ("a01007",)),
    Pollutant("wind_direction", "Wind direction", "风向", {_A: u.DEGREE}, ("a01008",)),
    Pollutant("ph", "pH", "pH值", {_W: u.PH}, ("w01001",)),
    Pollutant("cod", "Chemical oxygen demand", "化学需氧量", {_W: u.MG_L}, ("w01018",)),
    Pollutant(
        "nh3n", "Ammonia nitrogen", "氨氮", {_W: u.MG_L}, ("w21003",), aliases=("nh3-n", "nh3_n")
    ),
    Pollutant("tn", "Total nitrogen", "总氮", {_W: u.MG_L}, ("w21001",)),
    Pollutant("tp", "Total phosphorus", "总磷", {_W: u.MG_L}, ("w21011",)),
    Pollutant("ss", "Suspended solids", "悬浮物", {_W: u.MG_L}, ("w01012",)),
)

_BY_NAME: Final[dict[str, Pollutant]] = {
    name: p for p in POLLUTANTS for name in (p.code, *p.aliases)
}


def get_pollutant(name: str) -> Pollutant:
    """Look a pollutant up by code or alias, case-insensitively."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        raise ValidationError(f"unknown pollutant {name!r}", reason="unknown_pollutant") from None


def to_canonical(
    pollutant: Pollutant, medium: Medium, value: float, unit: str
) -> tuple[float, str]:
    """Express ``value`` in the pollutant's canonical unit for ``medium``.

    Accepts mass-concentration scales (mg/m3, ug/m3) and, for gases with a molar mass, ppm/ppb
    converted at the medium's state (``gas_state``); anything else is a wrong unit.
    """
    source, target = _units(pollutant.code, medium, unit)
    return u.convert(value, source, target, *gas_state(pollutant, medium)), target


def gas_state(pollutant: Pollutant, medium: Medium) -> tuple[float | None, float]:
    """(g/mol, L/mol) that ppm/ppb of ``pollutant`` in ``medium`` convert with: flue gas at
    HJ 75's standard state (273 K) with its rounded masses; ambient air at GB 3095-2012's
    reference state (298.15 K, as amended in 2018), where US EPA converts too."""
    if medium is Medium.AMBIENT:
        return pollutant.exact_molar_mass or pollutant.molar_mass, u.MOLAR_VOLUME_AMBIENT
    return pollutant.molar_mass, u.MOLAR_VOLUME_STD


def canonical_units(pollutant: Pollutant, medium: Medium, unit: str) -> tuple[str, str]:
    """(source, target) units of ``unit`` for ``pollutant`` in ``medium``: what
    ``to_canonical`` converts between. Raises as ``to_canonical`` does."""
    return _units(pollutant.code, medium, unit)


@lru_cache(maxsize=4096)
def _units(code: str, medium: Medium, unit: str) -> tuple[str, str]:
    """(source, target) units, checked convertible. Devices repeat a handful of spellings, so
    ingest looks each combination up once; refusals raise every time (never cached)."""
    pollutant = _BY_NAME[code]
    target = pollutant.unit_for(medium)
    source = u.normalize_unit(unit)
    try:
        u.convert(1.0, source, target, pollutant.molar_mass)
    except UnitError:
        raise UnitError(
            f"{pollutant.code} in {medium.value} is reported in {target}, not {unit!r}"
        ) from None
    return source, target
