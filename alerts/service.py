"""``sunlight alerts``: the scheduled jobs, run by exactly one process at a time.

Several processes may run; one holds a PostgreSQL advisory lock and runs the jobs, the others
wait as standby and take over when its connection (and so its lock) goes. Each job's progress
is a watermark row in PostgreSQL, advanced in the same transaction as the judgements it covers,
so after downtime every missed hour is judged exactly once, and a second process that somehow
ran a job concurrently would wait on the row lock and find the work done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from alerts.dispatch import Dispatcher
from alerts.judge import HOUR, judge_day, judge_hour
from alerts.lifecycle import apply_outcomes, check_gaps, remind_and_escalate
from alerts.reports import run as run_reports
from alerts.subscriptions import Subscribers
from domain.offsets import parse_utc_offset
from store import compliance as store
from store.db import connect
from sunlight.settings import Settings

logger = logging.getLogger(__name__)

LEADER_LOCK_ID = 0x53554E4C + 1
HOUR_JOB, DAY_JOB = "judge_hour", "judge_day"
MAX_HOURS_PER_RUN = 48  # catching up after downtime proceeds in slices, oldest first
DAY = timedelta(days=1)


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


class Engine:
    """The jobs themselves, callable directly (tests) or from the scheduler."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))
        self.day_offset = parse_utc_offset(settings.device_timezone)
        self.dispatcher = Dispatcher(settings)
        self.subscribers = Subscribers(settings)

    def _conn(self) -> psycopg.Connection:
        return connect(self.settings.database_url, application="sunlight-alerts")

    def judge_hours(self) -> int:
        """Judge every complete hour after the watermark, one transaction per hour."""
        now = self.clock()
        latest_end = floor_hour(now - timedelta(minutes=self.settings.alerts_grace_minutes))
        reopen = timedelta(hours=self.settings.alerts_reopen_hours)
        judged = 0
        with self._conn() as conn:
            for _ in range(MAX_HOURS_PER_RUN):
                with conn.transaction():
                    through = store.done_through(conn, HOUR_JOB)
                    if through is None:
                        through = latest_end - timedelta(hours=self.settings.alerts_backfill_hours)
                    if through + HOUR > latest_end:
                        break
                    store.forget_rejudging(conn, through, through + HOUR)
                    apply_outcomes(conn, judge_hour(conn, through), reopen_within=reopen)
                    store.set_done_through(conn, HOUR_JOB, through + HOUR)
                    judged += 1
            with conn.transaction():
                through = store.done_through(conn, HOUR_JOB)
                span = store.queued_rejudge_span(conn, through) if through else None
            if span is not None:  # days judged again read the hourly rollup
                store.materialise_hourly(self.settings.database_url, span[0], span[1] + HOUR)
            with conn.transaction():
                through = store.done_through(conn, HOUR_JOB)
                if through is not None:
                    hours = store.take_rejudge_hours(conn, through)
                    for hour in hours:
                        apply_outcomes(conn, judge_hour(conn, hour), reopen_within=reopen)
                    self._rejudge_days(conn, hours, reopen)
        return judged

    def _rejudge_days(
        self, conn: psycopg.Connection, hours: list[datetime], reopen: timedelta
    ) -> None:
        """Days already judged that late readings changed are judged again, as their hours
        are: a daily verdict must not stay 'no data' once the day's data has arrived."""
        if not hours:
            return
        days_through = store.done_through(conn, DAY_JOB)
        if days_through is None:
            return
        for day in sorted({self._day_start(h) for h in hours}):
            if day + DAY <= days_through:
                apply_outcomes(conn, judge_day(conn, day, day + DAY), reopen_within=reopen)

    def _day_start(self, t: datetime) -> datetime:
        """Start (UTC) of the local day containing ``t``: days follow the devices' clock."""
        local = (t + self.day_offset).replace(hour=0, minute=0, second=0, microsecond=0)
        return local - self.day_offset

    def judge_days(self) -> int:
        now = self.clock()
        latest_end = self._day_start(
            now - timedelta(minutes=self.settings.alerts_grace_minutes + 60)
        )
        reopen = timedelta(hours=self.settings.alerts_reopen_hours)
        judged = 0
        with self._conn() as conn:
            for _ in range(31):
                with conn.transaction():
                    through = store.done_through(conn, DAY_JOB)
                    if through is None:
                        through = latest_end - timedelta(days=1)
                    end = through + timedelta(days=1)
                    if end > latest_end:
                        break
                    apply_outcomes(conn, judge_day(conn, through, end), reopen_within=reopen)
                    store.set_done_through(conn, DAY_JOB, end)
                    judged += 1
        return judged

    def gaps(self) -> int:
        with self._conn() as conn, conn.transaction():
            return check_gaps(
                conn, self.clock(), after=timedelta(minutes=self.settings.alerts_gap_minutes)
            )

    def reminders(self) -> None:
        with self._conn() as conn, conn.transaction():
            remind_and_escalate(
                conn,
                self.clock(),
                remind_every=timedelta(minutes=self.settings.alerts_reminder_minutes),
            )

    def notify(self) -> int:
        with self._conn() as conn:
            return self.dispatcher.send_due(conn, self.clock())

    def subscriptions(self) -> int:
        """Citizens' subscriptions: fan out new public events, send what is due."""
        with self._conn() as conn:
            return self.subscribers.run(conn, self.clock())

    def reports(self) -> int:
        """Citizen reports: reminders, escalation, then their notifications."""
        with self._conn() as conn:
            return run_reports(conn, self.dispatcher, self.clock())

    def run_all(self) -> None:
        self.judge_hours()
        self.judge_days()
        self.gaps()
        self.reminders()
        self.notify()


def run_alerts(
    settings: Settings,
    *,
    stop_event: threading.Event,
    clock: Callable[[], datetime] | None = None,
    interval_s: float = 30.0,
) -> None:
    """Wait for leadership, then run the jobs on a schedule until stopped or the lock is lost."""
    engine = Engine(settings, clock)
    while not stop_event.is_set():
        try:
            lock = psycopg.connect(
                settings.database_url, autocommit=True, application_name="sunlight-alerts-leader"
            )
        except psycopg.OperationalError as exc:
            logger.warning("database unavailable (%s); retrying", exc)
            stop_event.wait(5)
            continue
        with lock:
            row = lock.execute("select pg_try_advisory_lock(%s)", (LEADER_LOCK_ID,)).fetchone()
            if not (row and row[0]):
                stop_event.wait(2)  # standby: the leader's lock goes when its session ends
                continue
            logger.info("leading: running the compliance jobs")
            scheduler = _scheduler(engine, interval_s)
            scheduler.start()
            try:
                while not stop_event.wait(2):
                    lock.execute("select 1")  # the lock lives as long as this session
            except psycopg.OperationalError:
                logger.warning("lost the database session holding leadership; standing by")
            finally:
                scheduler.shutdown(wait=True)
    engine.dispatcher.close()


def _scheduler(engine: Engine, interval_s: float) -> BackgroundScheduler:
    # coalesce: a backlog of missed runs is one run (each job catches up from its watermark
    # anyway); max_instances 1: a slow run is never overlapped by the next; misfire grace:
    # a run delayed by a busy machine still happens instead of being dropped.
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": int(interval_s * 10),
        },
    )
    now = datetime.now(UTC)
    for job, every in (
        (engine.judge_hours, interval_s),
        (engine.judge_days, interval_s * 10),
        (engine.gaps, interval_s),
        (engine.reminders, interval_s),
        (engine.notify, max(1.0, interval_s / 6)),
        (engine.reports, max(1.0, interval_s / 6)),
        (engine.subscriptions, max(1.0, interval_s / 6)),
    ):
        scheduler.add_job(
            _logged(job), "interval", seconds=every, next_run_time=now, id=job.__name__
        )
    return scheduler


def _logged(job: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:
            logger.exception("job %s failed; it runs again at its next interval", job.__name__)

    run.__name__ = job.__name__
    return run
