"""AQI input: CLI POLLUTANT=VALUE[@AVERAGING] parsing, mapping validation and JSON output."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from domain.aqi import compute, parse_args, to_json
from domain.aqi.base import Number, decimal_text
from domain.errors import ValidationError


@pytest.mark.parametrize(
    ("standard", "arg", "key", "value"),
    [
        ("hj633", "pm25=35@24h", ("pm25", "24h"), Decimal("35")),
        ("hj633", "PM2.5=35", ("pm25", "24h"), Decimal("35")),
        ("hj633", "o3=160", ("o3", "8h"), Decimal("160")),
        ("hj633", "so2=650@1h", ("so2", "1h"), Decimal("650")),
        ("hj633", "co=1.2@24H", ("co", "24h"), Decimal("1.2")),
        ("us-epa", "o3=0.070@8h", ("o3", "8h"), Decimal("0.070")),
        ("us-epa", "o3=0.125@1hr", ("o3", "1h"), Decimal("0.125")),
        ("us-epa", "no2=360", ("no2", "1h"), Decimal("360")),
        ("us-epa", "co=4.5", ("co", "8h"), Decimal("4.5")),
        ("us-epa", "pm25=12.3@nowcast", ("pm25", "nowcast"), Decimal("12.3")),
    ],
)
def test_parse_args(standard: str, arg: str, key: tuple[str, str], value: Decimal) -> None:
    """Arguments parse to (code, averaging) → Decimal; a missing @ takes the standard's default."""
    assert parse_args(standard, [arg]) == {key: value}


@pytest.mark.parametrize(
    ("standard", "arg", "reason"),
    [
        ("hj633", "xyz=3", "unknown_pollutant"),
        ("hj633", "cod=3", "unknown_pollutant"),  # a known pollutant, but not an AQI one
        ("hj633", "pm25=abc", "bad_number"),
        ("hj633", "pm25=", "bad_number"),
        ("hj633", "pm25=-1", "negative"),
        ("hj633", "pm25=nan", "not_finite"),
        ("hj633", "pm25=inf", "not_finite"),
        ("hj633", "pm25=35@8h", "unsupported_averaging"),
        ("hj633", "pm25=35@daily", "unsupported_averaging"),
        ("hj633", "pm25=35@", "unsupported_averaging"),
        ("us-epa", "co=4.5@1h", "unsupported_averaging"),
        ("us-epa", "so2=10@8h", "unsupported_averaging"),
        ("hj633", "pm25", "bad_argument"),
        ("hj633", "=35", "bad_argument"),
    ],
)
def test_parse_args_errors(standard: str, arg: str, reason: str) -> None:
    """Bad arguments are ValidationErrors with a machine-readable reason."""
    with pytest.raises(ValidationError) as info:
        parse_args(standard, [arg])
    assert info.value.reason == reason
    assert info.value.status == 422


def test_parse_args_duplicate_and_empty() -> None:
    """The same pollutant and averaging twice, or nothing at all, is an error."""
    with pytest.raises(ValidationError, match="more than once"):
        parse_args("hj633", ["pm25=35", "pm2.5=40@24h"])
    with pytest.raises(ValidationError, match="at least one"):
        parse_args("hj633", [])


def test_unknown_standard() -> None:
    """Only hj633 and us-epa are standards."""
    with pytest.raises(ValidationError) as info:
        parse_args("caqi", ["pm25=35"])
    assert info.value.reason == "unknown_standard"


@pytest.mark.parametrize(
    ("value", "reason"),
    [(float("nan"), "not_finite"), (-0.5, "negative"), ("x", "bad_number"), (True, "bad_number")],
)
def test_compute_validates_values(value: Number, reason: str) -> None:
    """compute() applies the same checks to mapping values as the parser does to arguments."""
    with pytest.raises(ValidationError) as info:
        compute("hj633", {("pm25", "24h"): value})
    assert info.value.reason == reason


def test_compute_normalises_keys() -> None:
    """Keys may use aliases and loose spellings of the averaging period."""
    result = compute("hj633", {("PM2.5", "24 h"): 35})
    assert result.sub_indices[0].pollutant == "pm25"
    assert result.sub_indices[0].averaging == "24h"


def test_parsed_args_feed_compute() -> None:
    """The parser's output is compute()'s input."""
    values = parse_args("us-epa", ["pm25=35.5", "o3=0.070@8h"])
    result = compute("us-epa", values)
    assert (result.aqi, result.primary_pollutants) == (101, ("pm25",))


def test_to_json() -> None:
    """to_json gives a JSON-serialisable dict with exact decimal strings and the category."""
    result = compute("hj633", {("pm25", "24h"): "115", ("so2", "24h"): 150})
    data = to_json(result)
    json.dumps(data, ensure_ascii=False)
    assert data["aqi"] == 150
    assert data["category"] == {
        "code": "lightly_polluted",
        "level": 3,
        "name_en": "Lightly polluted",
        "name_zh": "轻度污染",
        "colour": "#FF7E00",
    }
    assert data["primary_pollutants"] == ["pm25"]
    assert data["over_standard"] == ["pm25"]
    assert data["sub_indices"][0] == {
        "pollutant": "pm25",
        "averaging": "24h",
        "concentration": "115",
        "unit": "ug/m3",
        "truncated": None,
        "index": 150,
        "at_least": None,
        "counted": True,
        "reason": None,
    }


def test_to_json_epa_truncated() -> None:
    """EPA sub-indices carry the truncated concentration as a decimal string."""
    data = to_json(compute("us-epa", {("o3", "8h"): "0.0709"}))
    assert data["sub_indices"][0]["concentration"] == "0.0709"
    assert data["sub_indices"][0]["truncated"] == "0.07"
    assert data["report"] is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(0), "0"),
        (Fraction("0.070"), "0.07"),
        (Fraction("1250"), "1250"),
        (Fraction("0.02445"), "0.02445"),
        (Fraction(1, 3), "0.333333"),
    ],
)
def test_decimal_text(value: Fraction, text: str) -> None:
    """Fractions print as plain decimals: exact when they terminate, six places otherwise."""
    assert decimal_text(value) == text
