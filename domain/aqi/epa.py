"""US EPA AQI (EPA-454/B-24-002, PM2.5 revised 2024-05-06): tables, truncation, rules, NowCast."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from fractions import Fraction
from typing import Final

from domain import units as u
from domain.aqi.base import (
    AQIResult,
    Category,
    Number,
    SubIndex,
    Table,
    exact,
    round_half_up,
    segments,
    summarize,
    truncate,
)
from domain.errors import ValidationError
from domain.pollutants import get_pollutant

# Facts this module relies on (the Technical Assistance Document, "Calculating the AQI"):
#
# * Truncate the concentration first (O3 to 0.001 ppm, PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³, CO to
#   0.1 ppm, SO2 and NO2 to 1 ppb), then interpolate and round to the NEAREST integer (halves up).
# * 8 h O3 does not define AQI values of 301 and above: an 8 h value above 0.200 ppm gets no index
#   (the 1 h O3 index is used; without one the O3 index is only known to be >= 301). 1 h O3 starts
#   at AQI 101; below 0.125 ppm the 1 h value defines nothing and the 8 h value rules. When both
#   O3 indices exist the higher is reported.
# * 1 h SO2 does not define AQI values above 200: a 1 h value above 304 ppb gets no index and the
#   24 h SO2 index is used, which the table only defines from 305 ppb (AQI 201) up. With a 1 h value
#   above 304 ppb and a 24 h value below 305 ppb the SO2 index is 200 (verify against the TAD's
#   SO2 section); with no 24 h value it is only known to be >= 200.
# * Above the top breakpoint the index is reported as 500 (``reason="above_top_breakpoint"``);
#   AirNow shows such values as "beyond the AQI" (verify the TAD's wording for PM2.5 > 325.4).
# * NowCast for PM (see :func:`nowcast`).
#
# Sunlight stores ambient gases in µg/m³ (CO in mg/m³) while the EPA tables are in ppm/ppb. EPA
# converts at 25 °C and 1 atm, where one mole of gas occupies 24.45 L: ``ppb = µg/m³ × 24.45 / M``
# (M in g/mol) and ``ppm = mg/m³ × 24.45 / M``. :func:`from_ambient` does that, exactly.

STANDARD: Final = "us-epa"

# Table 6 of EPA-454/B-24-002, as (BP_lo, BP_hi, I_lo, I_hi). The 2024 revision merged the old
# 301-400 and 401-500 bands into one 301-500 band; standards.md says to verify that this holds
# for every pollutant, not only PM2.5 (it changes the PM10, SO2 and NO2 slopes above 300).
ROWS: Final[dict[tuple[str, str], tuple[tuple[str, str, int, int], ...]]] = {
    ("o3", "8h"): (
        ("0.000", "0.054", 0, 50),
        ("0.055", "0.070", 51, 100),
        ("0.071", "0.085", 101, 150),
        ("0.086", "0.105", 151, 200),
        ("0.106", "0.200", 201, 300),
    ),
    ("o3", "1h"): (
        ("0.125", "0.164", 101, 150),
        ("0.165", "0.204", 151, 200),
        ("0.205", "0.404", 201, 300),
        ("0.405", "0.604", 301, 500),  # verify: merged band
    ),
    ("pm25", "24h"): (
        ("0.0", "9.0", 0, 50),
        ("9.1", "35.4", 51, 100),
        ("35.5", "55.4", 101, 150),
        ("55.5", "125.4", 151, 200),
        ("125.5", "225.4", 201, 300),
        ("225.5", "325.4", 301, 500),
    ),
    ("pm10", "24h"): (
        ("0", "54", 0, 50),
        ("55", "154", 51, 100),
        ("155", "254", 101, 150),
        ("255", "354", 151, 200),
        ("355", "424", 201, 300),
        ("425", "604", 301, 500),  # verify: merged band
    ),
    ("co", "8h"): (
        ("0.0", "4.4", 0, 50),
        ("4.5", "9.4", 51, 100),
        ("9.5", "12.4", 101, 150),
        ("12.5", "15.4", 151, 200),
        ("15.5", "30.4", 201, 300),
        ("30.5", "50.4", 301, 500),  # verify: merged band
    ),
    ("so2", "1h"): (
        ("0", "35", 0, 50),
        ("36", "75", 51, 100),
        ("76", "185", 101, 150),
        ("186", "304", 151, 200),
    ),
    ("so2", "24h"): (
        ("305", "604", 201, 300),
        ("605", "1004", 301, 500),  # verify: merged band
    ),
    ("no2", "1h"): (
        ("0", "53", 0, 50),
        ("54", "100", 51, 100),
        ("101", "360", 101, 150),
        ("361", "649", 151, 200),
        ("650", "1249", 201, 300),
        ("1250", "2049", 301, 500),  # verify: merged band
    ),
}

UNITS: Final[dict[str, str]] = {
    "o3": u.PPM,
    "co": u.PPM,
    "so2": u.PPB,
    "no2": u.PPB,
    "pm25": u.UG_M3,
    "pm10": u.UG_M3,
}

TRUNCATION: Final[dict[str, Fraction]] = {
    "o3": Fraction("0.001"),
    "pm25": Fraction("0.1"),
    "pm10": Fraction(1),
    "co": Fraction("0.1"),
    "so2": Fraction(1),
    "no2": Fraction(1),
}

TABLES: Final[dict[tuple[str, str], Table]] = {
    key: Table(key[0], key[1], UNITS[key[0]], segments(rows)) for key, rows in ROWS.items()
}

# NowCast values are rated on the 24 h particle tables, as AirNow does.
TABLE_FOR: Final[dict[tuple[str, str], tuple[str, str]]] = {
    **{k: k for k in ROWS},
    ("pm25", "nowcast"): ("pm25", "24h"),
    ("pm10", "nowcast"): ("pm10", "24h"),
}

SUPPORTED: Final[dict[str, tuple[str, ...]]] = {
    "o3": ("8h", "1h"),
    "pm25": ("24h", "nowcast"),
    "pm10": ("24h", "nowcast"),
    "co": ("8h",),
    "so2": ("1h", "24h"),
    "no2": ("1h",),
}

DEFAULT_AVERAGING: Final[dict[str, str]] = {p: avg[0] for p, avg in SUPPORTED.items()}

O3_8H_TOP: Final = Fraction("0.200")
SO2_1H_TOP: Final = Fraction(304)
SO2_24H_BOTTOM: Final = Fraction(305)

# Molar masses (g/mol) for the µg/m³ → ppb conversion at 25 °C, 1 atm: the catalogue's, which
# ingest converts a station's ppb to µg/m³ with, so the index sees the ppb the station sent.
MOLAR_VOLUME_25C: Final = Fraction(str(u.MOLAR_VOLUME_AMBIENT))  # L/mol
MOLAR_MASS: Final[dict[str, Fraction]] = {
    code: Fraction(str(get_pollutant(code).exact_molar_mass)) for code in ("so2", "no2", "o3", "co")
}
# Values converted from Sunlight's units carry binary-float noise from storage (a station's
# 75 ppb comes back as 74.99999999…, which truncation would make 74): they are rounded to a
# thousandth of the truncation step first, far below what any monitor resolves.
_CONVERSION_NOISE_STEPS: Final = 1000

# name_zh: common Chinese renderings of EPA's category names, not an official EPA text (verify).
CATEGORIES: Final[tuple[Category, ...]] = (
    Category("good", 1, "Good", "良好", "#00E400", 0, 50),
    Category("moderate", 2, "Moderate", "中等", "#FFFF00", 51, 100),
    Category(
        "unhealthy_for_sensitive_groups",
        3,
        "Unhealthy for Sensitive Groups",
        "对敏感人群不健康",
        "#FF7E00",
        101,
        150,
    ),
    Category("unhealthy", 4, "Unhealthy", "不健康", "#FF0000", 151, 200),
    Category("very_unhealthy", 5, "Very Unhealthy", "非常不健康", "#8F3F97", 201, 300),
    Category("hazardous", 6, "Hazardous", "危险", "#7E0023", 301, None),
)

NOWCAST_HOURS: Final = 12
NOWCAST_MIN_WEIGHT: Final = Fraction(1, 2)


def check_supported(pollutant: str, averaging: str) -> None:
    """Raise ``ValidationError`` unless the EPA AQI rates ``pollutant`` over ``averaging``."""
    if pollutant not in SUPPORTED:
        raise ValidationError(
            f"{pollutant!r} is not a US EPA AQI pollutant (use one of {', '.join(SUPPORTED)})",
            reason="unknown_pollutant",
        )
    if averaging not in SUPPORTED[pollutant]:
        raise ValidationError(
            f"the US EPA AQI rates {pollutant} over {' or '.join(SUPPORTED[pollutant])}, "
            f"not {averaging}",
            reason="unsupported_averaging",
        )


def from_ambient(pollutant: str, value: Fraction) -> Fraction:
    """Convert a Sunlight ambient value (µg/m³; CO mg/m³) to the EPA unit, at 25 °C and 1 atm.

    SO2/NO2 µg/m³ → ppb: × 24.45 / M. O3 µg/m³ → ppm: × 24.45 / M / 1000. CO mg/m³ → ppm:
    × 24.45 / M. Particles are µg/m³ in both and pass unchanged.
    """
    if pollutant not in MOLAR_MASS:
        return value
    mixing = value * MOLAR_VOLUME_25C / MOLAR_MASS[pollutant]
    return mixing / 1000 if pollutant == "o3" else mixing


def rate(pollutant: str, averaging: str, concentration: Fraction) -> SubIndex:
    """Truncate and rate one value on its table alone (cross-value rules are in ``compute``)."""
    check_supported(pollutant, averaging)
    table = TABLES[TABLE_FOR[(pollutant, averaging)]]
    truncated = truncate(concentration, TRUNCATION[pollutant])

    def result(index: int | None, reason: str | None, at_least: int | None = None) -> SubIndex:
        return SubIndex(
            pollutant,
            averaging,
            concentration,
            UNITS[pollutant],
            index,
            truncated=truncated,
            at_least=at_least,
            reason=reason,
        )

    if (pollutant, averaging) == ("o3", "8h") and truncated > O3_8H_TOP:
        return result(None, "o3_8h_above_0.200_use_1h", at_least=301)
    if (pollutant, averaging) == ("so2", "1h") and truncated > SO2_1H_TOP:
        return result(None, "so2_1h_above_304_use_24h", at_least=200)
    if truncated > table.top:
        return result(500, "above_top_breakpoint")
    segment = table.segment_for(truncated)
    if segment is None:
        below = {
            ("o3", "1h"): "o3_1h_below_0.125_use_8h",
            ("so2", "24h"): "so2_24h_below_305_use_1h",
        }
        return result(None, below.get((pollutant, averaging), "outside_table"))
    return result(round_half_up(segment.interpolate(truncated)), None)


def compute(
    values: Mapping[tuple[str, str], Fraction], *, ambient_units: bool = False
) -> AQIResult:
    """The AQI from exact values keyed by (pollutant, averaging), in EPA units by default.

    With ``ambient_units`` gases are given in Sunlight's ambient units and converted first (see
    :func:`from_ambient`); sub-indices then show the converted concentration in the EPA unit.
    """
    subs: dict[tuple[str, str], SubIndex] = {}
    for (pollutant, averaging), c in values.items():
        check_supported(pollutant, averaging)
        conc = c
        if ambient_units and pollutant in MOLAR_MASS:
            step = TRUNCATION[pollutant] / _CONVERSION_NOISE_STEPS
            conc = round(from_ambient(pollutant, c) / step) * step
        subs[(pollutant, averaging)] = rate(pollutant, averaging, conc)

    o3_1h = subs.get(("o3", "1h"))
    o3_8h = subs.get(("o3", "8h"))
    if o3_8h is not None and o3_8h.index is None and o3_1h is not None and o3_1h.index is not None:
        subs[("o3", "8h")] = replace(o3_8h, at_least=None)

    so2_1h = subs.get(("so2", "1h"))
    so2_24h = subs.get(("so2", "24h"))
    if so2_1h is not None and so2_24h is not None:
        if so2_1h.index is None and so2_24h.index is not None:
            subs[("so2", "1h")] = replace(so2_1h, at_least=None)
        elif so2_1h.index is None and so2_24h.index is None:
            # 1 h says "200 or more", 24 h (below 305 ppb) says "200 or less".
            subs[("so2", "1h")] = replace(
                so2_1h, index=200, at_least=None, reason="so2_1h_above_304_24h_below_305"
            )

    return summarize(
        STANDARD, None, subs.values(), CATEGORIES, primary_above=None, over_standard_above=None
    )


def nowcast(hours: Sequence[Number | None], pollutant: str = "pm25") -> Fraction | None:
    """The PM NowCast from hourly means, latest first; ``None`` when it is not valid.

    Of the last 12 hours (``hours[0]`` is the latest; ``None`` marks a missing hour; later items
    are ignored) at least 2 of the 3 latest must exist. ``w = min/max`` over the available hours,
    at least 0.5; NowCast = Σ w^(i−1)·c_i / Σ w^(i−1) over available hours i, then truncated
    (PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³).
    """
    if pollutant not in ("pm25", "pm10"):
        raise ValidationError(
            f"NowCast here is for pm25 and pm10, not {pollutant!r}", reason="unknown_pollutant"
        )
    window = [None if h is None else exact(h, what="hourly mean") for h in hours[:NOWCAST_HOURS]]
    if sum(h is not None for h in window[:3]) < 2:
        return None
    present = [(i, c) for i, c in enumerate(window) if c is not None]
    c_max = max(c for _, c in present)
    c_min = min(c for _, c in present)
    w = Fraction(1) if c_max == 0 else max(c_min / c_max, NOWCAST_MIN_WEIGHT)
    numerator = sum((w**i * c for i, c in present), Fraction(0))
    denominator = sum((w**i for i, _ in present), Fraction(0))
    return truncate(numerator / denominator, TRUNCATION[pollutant])
