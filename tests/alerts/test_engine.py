"""The engine's scheduling guarantees on a real database: catch-up exactly once, one leader."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import psycopg
import pytest

from alerts.judge import Outcome
from alerts.service import HOUR_JOB, Engine, floor_hour, run_alerts
from registry.loader import load_registry
from store.schema import StorageMode, storage_mode
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


def test_data_in_before_the_judgement_is_judged_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An hour's readings stored after the hour ends but before it is judged (every hour's
    last minutes, in service) are judged with it, not a second time as late data."""
    from alerts import service

    load_registry(database_url, EXAMPLE_REGISTRY)
    engine = Engine(settings_for(database_url), Clock())
    grace = timedelta(minutes=engine.settings.alerts_grace_minutes)
    last = floor_hour(engine.clock() - grace) - timedelta(hours=1)
    write_minutes(database_url, "cems-lc-tpn-u1", last, {"so2": (20.0, "mg/m3"), "o2": (6.0, "%")})
    with psycopg.connect(database_url) as conn:
        queued = conn.execute("select count(*) from rejudge_queue").fetchone()
    assert queued == (1,)  # the hour is over, so its readings queue it
    judged: list[datetime] = []
    judge_hour = service.judge_hour

    def counting(conn: psycopg.Connection, start: datetime) -> list[Outcome]:
        judged.append(start)
        return judge_hour(conn, start)

    monkeypatch.setattr(service, "judge_hour", counting)
    assert engine.judge_hours() == 3
    assert sorted(judged) == [last - timedelta(hours=2), last - timedelta(hours=1), last]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from rejudge_queue").fetchone() == (0,)
        verdict = conn.execute(
            "select verdict, valid_count from judgements where site_id = 'lc-tpn-u1'"
            " and pollutant = 'so2' and start = %s",
            (last,),
        ).fetchone()
    assert verdict == ("compliant", 60)


def test_late_data_rejudges_a_past_day(database_url: str) -> None:
    """A day judged 'no data' (wastewater, GB 18918 daily means) becomes compliant or an
    exceedance when its readings arrive late, without waiting for any other day."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    engine = Engine(settings_for(database_url), Clock())
    engine.judge_hours()
    assert engine.judge_days() == 1
    day = "select start, verdict, valid_count, mean from judgements where site_id = 'lc-ww1-out1'"
    with psycopg.connect(database_url) as conn:
        before = {r[0]: r[1:] for r in conn.execute(day + " and pollutant = %s", ("cod",))}
    ((start, verdict),) = [(s, v[0]) for s, v in before.items()]
    assert verdict == "no_data"
    with psycopg.connect(database_url, autocommit=True) as conn:
        if storage_mode(conn) is StorageMode.TIMESCALEDB:
            # As the aggregate's policy would have: the day materialised before its data came
            # (a reading after it moves the watermark past it), so only a refresh shows it.
            write_minutes(
                database_url,
                "cems-lc-tpn-u1",
                start + timedelta(days=1),
                {"so2": (20.0, "mg/m3")},
                minutes=1,
            )
            conn.execute(
                "call refresh_continuous_aggregate('readings_hourly', %s, %s)",
                (start - timedelta(days=1), start + timedelta(days=1, hours=1)),
            )
    # The whole day arrives late: 24 valid hours of COD at 30 mg/L (limit 50), NH3-N at 9 (5).
    write_minutes(
        database_url,
        "cems-lc-ww1-out1",
        start,
        {"cod": (30.0, "mg/L"), "nh3n": (9.0, "mg/L")},
        minutes=24 * 60,
    )
    assert engine.judge_days() == 0  # the day job itself does not go back
    engine.judge_hours()
    with psycopg.connect(database_url) as conn:
        cod = conn.execute(
            day + " and pollutant = 'cod' and period = 'day' and start = %s", (start,)
        ).fetchone()
        nh3n = conn.execute(
            day + " and pollutant = 'nh3n' and period = 'day' and start = %s", (start,)
        ).fetchone()
    assert cod == (start, "compliant", 24, 30.0)
    assert nh3n == (start, "exceedance", 24, 9.0)


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
