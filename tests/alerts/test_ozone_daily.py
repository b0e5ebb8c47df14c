"""A station's ozone day judged as GB 3095 asks: on the day's maximum 8-hour mean of its hourly
means, through the alerts engine's daily run, and an exceedance opens an episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.judge import judge_day
from alerts.lifecycle import apply_outcomes
from registry.loader import load_registry
from tests.conftest import EXAMPLE_REGISTRY
from tests.readings import refresh_hourly, write_minutes

DAY = datetime(2026, 7, 14, 16, tzinfo=UTC)  # 00:00 in China: a summer day
STATION, DEVICE = "lc-aq-riverside", "aqms-lc-riverside"  # zone class 2: 160 µg/m³


def test_an_afternoon_of_ozone_is_a_daily_exceedance(database_url: str) -> None:
    """80 µg/m³ all day and 200 from 12:00 to 20:00 local: the 24-hour mean (120) is under
    160, the maximum 8-hour mean (200) is over it; the day is recorded and an episode opened."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    write_minutes(database_url, DEVICE, DAY, {"o3": (80.0, "ug/m3")}, minutes=12 * 60)
    write_minutes(database_url, DEVICE, DAY + timedelta(hours=12), {"o3": (200.0, "ug/m3")}, 480)
    write_minutes(database_url, DEVICE, DAY + timedelta(hours=20), {"o3": (80.0, "ug/m3")}, 240)
    refresh_hourly(database_url, DAY - timedelta(days=1), DAY + timedelta(days=2))
    with psycopg.connect(database_url) as conn:
        outcomes = judge_day(conn, DAY, DAY + timedelta(days=1))
        apply_outcomes(conn, outcomes, reopen_within=timedelta(hours=2))
        conn.commit()
        row = conn.execute(
            "select verdict, mean, limit_value, valid_count, standard from judgements"
            " where site_id = %s and pollutant = 'o3' and period = 'day' and start = %s",
            (STATION, DAY),
        ).fetchone()
        episodes = conn.execute(
            "select kind, pollutant from episodes where site_id = %s", (STATION,)
        ).fetchall()
    assert row is not None
    verdict, mean, limit, valid, standard = row
    assert (verdict, limit, valid) == ("exceedance", 160.0, 17)
    assert mean == pytest.approx(200.0)
    assert standard == "GB 3095-2012 grade II, daily maximum 8-hour mean"
    assert ("exceedance", "o3") in episodes
