"""The hourly judge counts minutes in SQL (``store.compliance.minute_counts``); its verdicts,
counts and means equal ``domain.compliance.judge`` applied to the same minutes one by one, on
awkward data: every flag, O2 missing, invalid or too high to correct, pollutants missing from
some minutes, minutes sent in two parts, several devices at one outlet."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from alerts.judge import judge_hour
from bench.rules import check
from domain.readings import Flag, Period
from registry.loader import load_registry
from store.readings import StoredReading, write_readings
from store.registry import list_devices
from store.schema import storage_mode
from tests.conftest import EXAMPLE_REGISTRY

POLLUTANTS = (("so2", 35.0), ("nox", 50.0), ("pm", 10.0))
FLAGS = [f.value for f in Flag]


def reading(
    rng: random.Random,
    device: dict[str, Any],
    t: datetime,
    pollutant: str,
    value: float,
    unit: str,
    bad: float,
) -> StoredReading:
    """One minute value, flagged invalid (any HJ 212 flag) with probability ``bad``."""
    flag = rng.choice(FLAGS) if rng.random() < bad else "N"
    return StoredReading(
        t, device["device_key"], device["site_key"], pollutant, Period.MINUTE, value, unit, flag
    )


def test_counted_minutes_judge_as_the_samples_do(database_url: str) -> None:
    load_registry(database_url, EXAMPLE_REGISTRY)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    rng = random.Random(7)
    with psycopg.connect(database_url) as conn:
        mode = storage_mode(conn)
        assert mode is not None
        gas = {
            site for (site,) in conn.execute("select id from outlets where kind = 'gas'").fetchall()
        }
        devices = [d for d in list_devices(conn) if d["site_id"] in gas]
        # A second device at the first outlet: its minutes count for the outlet too.
        conn.execute(
            "insert into devices (id, site_id) values ('cems-extra', %s)", (devices[0]["site_id"],)
        )
        conn.commit()
        devices = [d for d in list_devices(conn) if d["site_id"] in gas]
        first, second = [], []
        for n, device in enumerate(devices):
            # Most outlets mostly valid (so hours are judged), some mostly flagged.
            bad = 0.05 if n % 3 else 0.35
            for m in range(60):
                t = start + timedelta(minutes=m)
                minute = [
                    reading(rng, device, t, pol, limit * rng.uniform(0.3, 1.6), "mg/m3", bad)
                    for pol, limit in POLLUTANTS
                    if rng.random() > 0.08  # sometimes missing
                ]
                if rng.random() > 0.1:  # O2 sometimes missing, sometimes too high to correct
                    o2 = rng.choice([rng.uniform(3.0, 12.0), rng.uniform(19.0, 21.0)])
                    minute.append(reading(rng, device, t, "o2", round(o2, 2), "%", bad))
                # Some minutes arrive in two parts and are merged into one stored row.
                split = rng.random() < 0.2
                first.extend(minute[::2] if split else minute)
                second.extend(minute[1::2] if split else [])
        with conn.transaction():
            write_readings(conn, first, mode)
        with conn.transaction():
            write_readings(conn, second, mode)
        with conn.transaction():
            judge_hour(conn, start)
        checked, verdicts = check(conn, start)
    assert checked >= 20
    # The data reaches every kind of verdict, so each path of the counting is compared.
    assert {"compliant", "exceedance", "invalid"} <= set(verdicts)
