"""Units of measure and the conversions between them that the standards define."""

from __future__ import annotations

from typing import Final

from domain.errors import UnitError

# Canonical spellings. ASCII forms are canonical because they survive every transport.
MG_M3: Final = "mg/m3"
UG_M3: Final = "ug/m3"
PPM: Final = "ppm"
PPB: Final = "ppb"
MG_L: Final = "mg/L"
PERCENT: Final = "%"
DEG_C: Final = "degC"
KPA: Final = "kPa"
M3_S: Final = "m3/s"
L_S: Final = "L/s"
PH: Final = "pH"
M_S: Final = "m/s"
DEGREE: Final = "deg"
DB_A: Final = "dB(A)"

_ALIASES: Final[dict[str, str]] = {
    "mg/m3": MG_M3,
    "mg/m³": MG_M3,
    "mg/nm3": MG_M3,
    "mg/nm³": MG_M3,
    "ug/m3": UG_M3,
    "µg/m3": UG_M3,
    "μg/m3": UG_M3,
    "µg/m³": UG_M3,
    "μg/m³": UG_M3,
    "ug/m³": UG_M3,
    "ppm": PPM,
    "ppb": PPB,
    "mg/l": MG_L,
    "%": PERCENT,
    "percent": PERCENT,
    "degc": DEG_C,
    "°c": DEG_C,
    "℃": DEG_C,
    "kpa": KPA,
    "m3/s": M3_S,
    "m³/s": M3_S,
    "l/s": L_S,
    "ph": PH,
    "m/s": M_S,
    "deg": DEGREE,
    "°": DEGREE,
    "db(a)": DB_A,
    "dba": DB_A,
}

# Molar volume at the standard state HJ 75 uses for flue gas (273 K, 101325 Pa), L/mol.
MOLAR_VOLUME_STD: Final = 22.4
# Molar volume at the reference state of ambient air (298.15 K, 101325 Pa), L/mol: GB 3095-2012
# states gaseous pollutants there since its 2018 amendment, and US EPA converts there too, so a
# station's ppb reaches the EPA index as the same ppb (domain.aqi.epa.MOLAR_VOLUME_25C).
MOLAR_VOLUME_AMBIENT: Final = 24.45

_MASS_SCALE: Final[dict[str, float]] = {MG_M3: 1.0, UG_M3: 1e-3}  # in mg/m3
_MIXING_SCALE: Final[dict[str, float]] = {PPM: 1.0, PPB: 1e-3}  # in ppm


def normalize_unit(text: str) -> str:
    """Return the canonical spelling of a unit, or raise ``UnitError``."""
    key = text.strip().lower().replace(" ", "")
    try:
        return _ALIASES[key]
    except KeyError:
        raise UnitError(f"unknown unit {text!r}") from None


def convert(
    value: float,
    from_unit: str,
    to_unit: str,
    molar_mass: float | None = None,
    molar_volume: float = MOLAR_VOLUME_STD,
) -> float:
    """Convert between canonical units; gas mixing ratios need the molar mass (g/mol) and the
    molar volume (L/mol) of the state the mass concentration is stated at."""
    if from_unit == to_unit:
        return value
    if from_unit in _MASS_SCALE and to_unit in _MASS_SCALE:
        return value * _MASS_SCALE[from_unit] / _MASS_SCALE[to_unit]
    if from_unit in _MIXING_SCALE and to_unit in _MASS_SCALE:
        if molar_mass is None:
            raise UnitError(f"cannot convert {from_unit} to {to_unit} without a molar mass")
        mg_m3 = value * _MIXING_SCALE[from_unit] * molar_mass / molar_volume
        return mg_m3 / _MASS_SCALE[to_unit]
    if from_unit in _MIXING_SCALE and to_unit in _MIXING_SCALE:
        return value * _MIXING_SCALE[from_unit] / _MIXING_SCALE[to_unit]
    raise UnitError(f"cannot convert {from_unit} to {to_unit}")
