"""The alerts process SIGKILLed while it notifies: every episode's notification reaches the
office, each recognisable once by its idempotency key, and no hour is judged twice or skipped."""

from __future__ import annotations

import os
import random
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from alerts.notifiers.webhook import IDEMPOTENCY_HEADER
from alerts.service import floor_hour
from registry.loader import load_registry
from sunlight.brokers import wait_until
from tests.conftest import EXAMPLE_REGISTRY
from tests.integration.streams import gas_devices
from tests.processes import sunlight_process
from tests.readings import write_minutes

SEED = int(os.environ.get("SUNLIGHT_FAULT_SEED", "20261123"))
SECRET = "reliability-webhook-secret"
HOURS = 3  # hours of exceedance written before the engine starts
KILLS = 2


@contextmanager
def slow_receiver(latency_s: float) -> Iterator[tuple[str, list[str]]]:
    """A webhook endpoint taking ``latency_s`` per answer, recording each Idempotency-Key."""
    keys: list[str] = []
    lock = threading.Lock()
    pause = threading.Event()  # never set: each request simply takes latency_s to answer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                keys.append(self.headers.get(IDEMPOTENCY_HEADER, ""))
            pause.wait(latency_s)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", keys
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def registry_notifying(tmp_path: Path, url: str) -> Path:
    doc = yaml.safe_load(EXAMPLE_REGISTRY.read_text())
    for reg in doc["regulators"]:
        reg["notify"] = {"webhook_url": url, "webhook_secret": SECRET, "mqtt": False}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def table(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


@pytest.mark.timeout(180)
def test_alerts_killed_while_notifying(database_url: str, tmp_path: Path) -> None:
    """Two SIGKILLs mid-notification: every notification is delivered, at most one extra time
    per kill and always under its own idempotency key; each episode has one 'opened'
    notification per office; every hour is judged once, none skipped."""
    rng = random.Random(SEED)
    with slow_receiver(0.08) as (hook, keys):
        load_registry(database_url, registry_notifying(tmp_path, hook))
        start = floor_hour(datetime.now(UTC)) - timedelta(hours=HOURS)
        for device in gas_devices(database_url):
            write_minutes(
                database_url,
                device,
                start,
                {"so2": (5000.0, "mg/m3"), "nox": (5000.0, "mg/m3"), "o2": (6.0, "%")},
                minutes=HOURS * 60,
            )
        env = {
            "SUNLIGHT_DATABASE_URL": database_url,
            "SUNLIGHT_ALERTS_BACKFILL_HOURS": str(HOURS + 2),
            "SUNLIGHT_ALERTS_GRACE_MINUTES": "0",
            "SUNLIGHT_ALERTS_GAP_MINUTES": "100000",
        }
        log = tmp_path / "alerts.log"
        kills: list[int] = []
        for _ in range(KILLS):
            with sunlight_process(["alerts", "--interval", "1"], env, log) as proc:
                floor = len(keys) + 1 + rng.randrange(8)
                wait_until(lambda f=floor: len(keys) >= f, 60, f"{floor} webhooks")
                os.kill(proc.pid, signal.SIGKILL)  # most likely mid-request: answers take 80 ms
                proc.wait(10)
                kills.append(len(keys))
        with sunlight_process(["alerts", "--interval", "1"], env, log) as proc:
            wait_until(
                lambda: (
                    table(database_url, "select count(*) from notifications where status <> 'sent'")
                    == [(0,)]
                    and len(keys) > kills[-1]
                ),
                90,
                "every notification sent",
            )
            assert proc.poll() is None
        sent = table(database_url, "select id from notifications where channel = 'webhook'")
    received = Counter(keys)
    rows = {str(r[0]) for r in sent}
    duplicates = len(keys) - len(received)
    print(
        f"alerts SIGKILL x{KILLS} (after {kills} webhook requests): notifications {len(rows)},"
        f" delivered {len(keys)}, distinct keys {len(received)}, duplicates {duplicates},"
        f" lost {len(rows - set(received))}"
    )
    assert set(received) == rows  # every notification arrived; nothing arrived unasked
    assert duplicates <= KILLS  # only the one in flight at each kill, under its own key
    # One 'opened' notification per episode and office, and an episode per exceeding pair.
    per_episode = table(
        database_url,
        "select e.id, count(n.id) from episodes e left join notifications n"
        " on n.episode_id = e.id and n.kind = 'opened' group by e.id",
    )
    assert per_episode and all(count == 1 for _, count in per_episode)
    exceeding = table(
        database_url,
        "select count(distinct (site_id, pollutant)) from judgements where verdict = 'exceedance'"
        " and period = 'hour'",
    )[0][0]
    assert len(per_episode) == exceeding
    # Every hour between the first and the watermark judged for every rule: none twice (the
    # key forbids it) and none skipped; each episode counts each exceeding hour once.
    hours = table(
        database_url,
        "select start, count(*) from judgements where period = 'hour' group by start order by 1",
    )
    (through,) = table(database_url, "select done_through from job_state where job = 'judge_hour'")[
        0
    ]
    expected_hours = [hours[0][0] + timedelta(hours=i) for i in range(len(hours))]
    assert [h for h, _ in hours] == expected_hours
    assert expected_hours[-1] + timedelta(hours=1) == through
    assert len({c for _, c in hours}) == 1
    mismatched = table(
        database_url,
        "select e.id from episodes e where e.hours <> (select count(*) from judgements j"
        " where j.site_id = e.site_id and j.pollutant = e.pollutant and j.period = e.period"
        " and j.verdict = 'exceedance' and j.start >= e.first_start and j.start < e.last_end)",
    )
    assert mismatched == []
    print(f"hours judged {len(hours)} x {hours[0][1]} rules, watermark {through:%Y-%m-%d %H:%M}")
