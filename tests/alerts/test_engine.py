"""The engine's scheduling guarantees on a real database: catch-up exactly once, one leader."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import psycopg
import pytest

from alerts.service import HOUR_JOB, Engine, floor_hour, run_alerts
from registry.loader import load_registry
from sunlight.brokers import wait_until
from sunlight.settings import Settings
from tests.alerts.test_scenario import Clock
from tests.conftest import EXAMPLE_REGISTRY
from tests.readings import write_minutes


def settings_for(url: str) -> Settings:
    return Settings(database_url=url, alerts_backfill_hours=3, alerts_gap_minutes=100_000)


def hours_judged(url: str) -> list[tuple[datetime, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select start, count(*) from judgements where period = 'hour' group by start order by start"
        ).fetchall()


def test_downtime_is_caught_up_exactly_once(database_url: str) -> None:
    """After 5 hours down, each missed hour is judged once for every rule, none twice."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    clock = Clock()
    engine = Engine(settings_for(database_url), clock)
    assert engine.judge_hours() == 3
    first = hours_judged(database_url)
    rules = first[0][1]
    assert [n for _, n in first] == [rules] * 3
    assert engine.judge_hours() == 0  # nothing new: nothing judged again
    clock.offset = timedelta(hours=5)
    assert engine.judge_hours() == 5
    after = hours_judged(database_url)
    assert [n for _, n in after] == [rules] * 8
    starts = [s for s, _ in after]
    assert starts == [starts[0] + timedelta(hours=i) for i in range(8)]
    with psycopg.connect(database_url) as conn:
        (through,) = conn.execute(
            "select done_through from job_state where job = %s", (HOUR_JOB,)
        ).fetchone()  # type: ignore[misc]
    grace = timedelta(minutes=engine.settings.alerts_grace_minutes)
    assert through == floor_hour(clock() - grace)


def test_late_data_rejudges_a_past_hour(database_url: str) -> None:
    """Readings arriving for an hour already judged 'no data' change its verdict."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    engine = Engine(settings_for(database_url), Clock())
    engine.judge_hours()
    with psycopg.connect(database_url) as conn:
        (start,) = conn.execute("select min(start) from judgements").fetchone()  # type: ignore[misc]
    write_minutes(database_url, "cems-lc-tpn-u1", start, {"so2": (20.0, "mg/m3"), "o2": (6.0, "%")})
    engine.judge_hours()
    with psycopg.connect(database_url) as conn:
        verdict = conn.execute(
            "select verdict, valid_count, mean from judgements where site_id = 'lc-tpn-u1'"
            " and pollutant = 'so2' and start = %s",
            (start,),
        ).fetchone()
    assert verdict == ("compliant", 60, 20.0)


@pytest.mark.timeout(120)
def test_two_processes_one_leader(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A second alerts process stands by while the first leads, and takes over when it stops."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    caplog.set_level(logging.INFO, logger="alerts.service")
    settings = settings_for(database_url)
    stops = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(
            target=run_alerts, args=(settings,), kwargs={"stop_event": s, "interval_s": 0.5}
        )
        for s in stops
    ]

    def leading() -> int:
        return sum("leading" in r.getMessage() for r in caplog.records)

    def sessions() -> int:
        with psycopg.connect(database_url) as conn:
            return conn.execute(  # type: ignore[no-any-return]
                "select count(*) from pg_stat_activity where application_name = 'sunlight-alerts-leader'"
                " and datname = current_database()"
            ).fetchone()[0]

    threads[0].start()
    try:
        wait_until(lambda: leading() == 1, 30, "the first process to lead")
        wait_until(lambda: len(hours_judged(database_url)) == 3, 30, "the backfill judged")
        threads[1].start()
        wait_until(lambda: sessions() == 2, 30, "the second process to try for leadership")
        wait_until(lambda: sessions() == 2 and leading() == 1, 5, "the standby to stay standby")
        stops[0].set()
        threads[0].join(30)
        wait_until(lambda: leading() == 2, 30, "the standby to take over")
        assert [n for _, n in hours_judged(database_url)] == [hours_judged(database_url)[0][1]] * 3
    finally:
        for s in stops:
            s.set()
        for t in threads:
            if t.is_alive():
                t.join(30)
