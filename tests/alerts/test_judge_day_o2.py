"""A daily permit limit judged on O2-corrected values (HJ 75) is corrected like an hourly one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from alerts.judge import judge_day
from registry.loader import load_registry
from tests.conftest import EXAMPLE_REGISTRY
from tests.readings import refresh_hourly, write_minutes

HOUR_LIMIT = (
    "          - {pollutant: so2, value: 35, unit: mg/m3, period: hour, o2_corrected: true,"
    ' standard: "GB 13223-2011 ultra-low emission"}\n'
)
DAY = datetime(2026, 11, 20, 16, tzinfo=UTC)  # 00:00 in China


def _registry_with_daily_so2(tmp_path: Path) -> Path:
    """The example registry with a daily SO2 limit of 35 mg/m³ at 6 % O2 on the coal units."""
    text = EXAMPLE_REGISTRY.read_text(encoding="utf-8")
    assert text.count(HOUR_LIMIT) == 1
    path = tmp_path / "registry.yaml"
    path.write_text(
        text.replace(HOUR_LIMIT, HOUR_LIMIT + HOUR_LIMIT.replace("period: hour", "period: day")),
        encoding="utf-8",
    )
    return path


def _day_so2(
    database_url: str,
) -> tuple[str, int, float | None, float | None, float | None, float | None]:
    """Judge the day and return the daily SO2 judgement of unit 1 as recorded."""
    refresh_hourly(database_url, DAY - timedelta(days=1), DAY + timedelta(days=2))
    with psycopg.connect(database_url) as conn:
        judge_day(conn, DAY, DAY + timedelta(days=1))
        conn.commit()
        row = conn.execute(
            "select verdict, valid_count, mean, measured_mean, o2_mean, o2_reference"
            " from judgements where site_id = 'lc-tpn-u1' and pollutant = 'so2'"
            " and period = 'day' and start = %s",
            (DAY,),
        ).fetchone()
    assert row is not None
    return row


def test_daily_limit_on_o2_corrected_values_is_judged_corrected(
    database_url: str, tmp_path: Path
) -> None:
    """SO2 30 mg/m³ at 9 % O2 all day is 37.5 at 6 %: over a daily 35 limit, not under it."""
    load_registry(database_url, _registry_with_daily_so2(tmp_path))
    write_minutes(
        database_url,
        "cems-lc-tpn-u1",
        DAY,
        {"so2": (30.0, "mg/m3"), "o2": (9.0, "%")},
        minutes=24 * 60,
    )
    verdict, valid, mean, measured, o2_mean, reference = _day_so2(database_url)
    assert (verdict, valid, reference) == ("exceedance", 24, 6.0)
    assert measured == pytest.approx(30.0)
    assert o2_mean == pytest.approx(9.0)
    assert mean == pytest.approx(37.5)


def test_daily_o2_corrected_hours_need_valid_o2(database_url: str, tmp_path: Path) -> None:
    """Hours without a valid O2 mean cannot be corrected, so they do not count as valid."""
    load_registry(database_url, _registry_with_daily_so2(tmp_path))
    write_minutes(database_url, "cems-lc-tpn-u1", DAY, {"so2": (30.0, "mg/m3")}, minutes=24 * 60)
    write_minutes(database_url, "cems-lc-tpn-u1", DAY, {"o2": (9.0, "%")}, minutes=19 * 60)
    verdict, valid, mean, *_ = _day_so2(database_url)
    assert (verdict, valid, mean) == ("invalid", 19, None)
