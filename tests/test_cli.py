"""The ``sunlight`` command as a user runs it: output, exit codes, error messages."""

from __future__ import annotations

import json
import subprocess
import sys


def sunlight(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sunlight", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_aqi_prints_json() -> None:
    """`sunlight aqi` prints sub-indices, AQI, category and primary pollutant as JSON."""
    out = sunlight("aqi", "--standard", "hj633", "pm25=35@24h", "pm10=350@24h")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["aqi"] == 200
    assert doc["category"]["name_zh"] == "中度污染"
    assert doc["primary_pollutants"] == ["pm10"]
    assert [s["index"] for s in doc["sub_indices"]] == [50, 200]


def test_aqi_us_epa_nowcast_free_example() -> None:
    """US EPA: PM2.5 35.5 µg/m³ over 24 h is AQI 101."""
    out = sunlight("aqi", "--standard", "us-epa", "pm25=35.5@24h")
    assert json.loads(out.stdout)["aqi"] == 101


def test_bad_aqi_argument_is_a_clear_error() -> None:
    """A bad argument exits non-zero with a message naming it, and no traceback."""
    out = sunlight("aqi", "--standard", "hj633", "kryptonite=3")
    assert out.returncode == 1
    assert "kryptonite" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_configuration_is_reported() -> None:
    """A malformed SUNLIGHT_MQTT_URL is a configuration error, not a crash."""
    out = subprocess.run(
        [sys.executable, "-m", "sunlight", "aqi", "--standard", "hj633", "pm25=1"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={"SUNLIGHT_MQTT_URL": "http://nope", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert "MQTT URL" in out.stderr


def test_unreachable_database_is_a_clear_error() -> None:
    """A command whose database is not there (e.g. `sunlight up`'s embedded one, not named)
    exits 1 with a message naming SUNLIGHT_DATABASE_URL, and no traceback."""
    from sunlight.brokers import free_port

    out = subprocess.run(
        [sys.executable, "-m", "sunlight", "tokens", "create", "lc-eeb", "--label", "x"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={
            "SUNLIGHT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/sunlight",
            "PATH": "/usr/bin:/bin",
        },
    )
    assert out.returncode == 1, out.stderr
    assert "SUNLIGHT_DATABASE_URL" in out.stderr
    assert "Traceback" not in out.stderr


def test_settings_that_did_nothing_are_ignored_not_refused() -> None:
    """SUNLIGHT_TOKEN_SECRET signed nothing (regulator tokens are random, stored as digests),
    and SUNLIGHT_ENVIRONMENT only made it mandatory; both are gone. An operator's environment
    that still sets them, or sets production without a secret, starts as any other."""
    for extra in (
        {"SUNLIGHT_ENVIRONMENT": "production"},
        {"SUNLIGHT_ENVIRONMENT": "production", "SUNLIGHT_TOKEN_SECRET": "an-old-secret"},
    ):
        out = subprocess.run(
            [sys.executable, "-m", "sunlight", "aqi", "--standard", "hj633", "pm25=35@24h"],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", **extra},
        )
        assert out.returncode == 0, (extra, out.stderr)
        assert json.loads(out.stdout)["aqi"] == 50
        assert "SECRET" not in out.stderr and "ENVIRONMENT" not in out.stderr, out.stderr
