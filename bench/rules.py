"""Rules: judging one hour of every flue-gas outlet, against a single SQL aggregate as the floor.

    python -m bench.rules                 # 10,000 outlets, history at 1x
    python -m bench.rules --scale 16      # the same hour with 16x the history already stored
    python -m bench.rules --smoke         # tiny sizes (CI)
    python -m bench.rules --output x.json # a trial run: results elsewhere, recorded ones kept

A synthetic registry of gas outlets (one CEMS device each, permit limits for pm, so2, nox and
co, most O2-corrected to the outlet's reference O2) gets one hour of minute data for the four
pollutants and O2, with invalid flags (random bad minutes, calibrations, stopped sources, O2
analyser faults) and a share of outlets over their limits. History is earlier minute data of a
subset of the outlets (``--history-outlets`` for ``--history-hours`` × ``--scale`` hours), so
the only thing a scale changes is how many readings are already stored. Everything is written
through ``store.readings.write_readings``, the writer ingest uses.

Judging is timed through ``alerts.service.Engine.judge_hours``, the scheduler's job: judge every
rule, record every judgement, open episodes and queue their notifications, advance the
watermark. The floor is one SQL aggregate (count and mean of valid values per outlet and
pollutant) over the same rows. The verdicts are then checked against ``domain.compliance.judge``
applied directly to the same minute rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from alerts.judge import judge_hour
from alerts.lifecycle import apply_outcomes
from alerts.service import HOUR_JOB, Engine
from domain.compliance import MAX_CORRECTABLE_O2, MIN_VALID_MINUTES, Sample, Verdict, judge
from domain.readings import Flag, Period
from store import compliance as compliance_store
from store.db import connect
from store.readings import StoredReading, write_readings
from store.registry import list_devices, write_registry
from store.schema import migrate, storage_mode
from sunlight.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PLOT = ROOT / "docs" / "bench-rules.png"

# (pollutant, hourly limit in mg/m3 at reference O2): GB 13223-2011-like values.
LIMITS = (("pm", 10.0), ("so2", 35.0), ("nox", 50.0), ("co", 80.0))
REFERENCE_O2 = ((6.0, 0.7), (10.0, 0.15), (3.0, 0.15))  # (value, share of outlets)
BAD_FLAGS = ("C", "D", "M", "T", "B")
JUDGED_HOUR = datetime(2026, 6, 1, 12, tzinfo=UTC)
BATCH = 30_000


@dataclass(frozen=True, slots=True)
class Shares:
    """What makes the hour realistic: the share of each kind of trouble."""

    stopped: float = 0.01  # source stopped all hour (flag F)
    calibration: float = 0.02  # 20 minutes of calibration: fewer than 45 valid minutes
    o2_fault: float = 0.005  # O2 analyser fault for 20 minutes: corrected rules invalid
    bad_minute: float = 0.01  # any single value flagged invalid
    over_limit: float = 0.02  # an outlet-pollutant emitting over its limit this hour
    uncorrected: float = 0.1  # outlets whose limits are judged as measured (no O2 correction)


def registry_rows(outlets: int, per_enterprise: int = 10) -> dict[str, list[dict[str, Any]]]:
    """A city office, 20 district offices, ``outlets`` gas outlets with 4 limits and 1 device."""
    rng = random.Random(11)
    channels = {"email": ["duty@example.org"], "mqtt": True}
    rows: dict[str, list[dict[str, Any]]] = {
        "regulators": [
            {
                "id": "city",
                "name": "City office",
                "name_zh": None,
                "level": "city",
                "parent_id": None,
                "ack_deadline_minutes": 120,
                "notify": channels,
            }
        ],
        "districts": [],
        "stations": [],
        "enterprises": [],
        "outlets": [],
        "permit_limits": [],
        "devices": [],
    }
    for d in range(20):
        rows["regulators"].append(
            {
                "id": f"d{d:02}",
                "name": f"District office {d}",
                "name_zh": None,
                "level": "district",
                "parent_id": "city",
                "ack_deadline_minutes": 120,
                "notify": channels,
            }
        )
        lon = 116.0 + (d % 5) * 0.1
        lat = 39.5 + (d // 5) * 0.1
        ring = [[lon, lat], [lon + 0.1, lat], [lon + 0.1, lat + 0.1], [lon, lat + 0.1], [lon, lat]]
        rows["districts"].append(
            {
                "id": f"dist{d:02}",
                "name": f"District {d}",
                "name_zh": None,
                "regulator_id": f"d{d:02}",
                "boundary": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    for i in range(outlets):
        e = i // per_enterprise
        d = e % 20
        if i % per_enterprise == 0:
            rows["enterprises"].append(
                {
                    "id": f"ent{e:05}",
                    "name": f"Enterprise {e}",
                    "name_zh": None,
                    "industry": "power",
                    "district_id": f"dist{d:02}",
                    "lon": 116.0 + (d % 5) * 0.1 + rng.random() * 0.1,
                    "lat": 39.5 + (d // 5) * 0.1 + rng.random() * 0.1,
                }
            )
        ref = rng.choices([v for v, _ in REFERENCE_O2], [w for _, w in REFERENCE_O2])[0]
        corrected = rng.random() >= Shares().uncorrected
        rows["outlets"].append(
            {
                "id": f"out{i:05}",
                "enterprise_id": f"ent{e:05}",
                "name": f"Stack {i}",
                "name_zh": None,
                "kind": "gas",
                "reference_o2": ref,
            }
        )
        for pol, value in LIMITS:
            rows["permit_limits"].append(
                {
                    "outlet_id": f"out{i:05}",
                    "pollutant": pol,
                    "period": "hour",
                    "value": value,
                    "unit": "mg/m3",
                    "standard": "GB 13223-2011",
                    "o2_corrected": corrected,
                }
            )
        rows["devices"].append(
            {
                "id": f"cems-{i:05}",
                "site_id": f"out{i:05}",
                "mn": None,
                "hj212_password": None,
                "timezone": None,
            }
        )
    return rows


def hour_readings(
    device: dict[str, Any], ref_o2: float, start: datetime, rng: random.Random, shares: Shares
) -> Iterator[StoredReading]:
    """One hour of minute readings (4 pollutants and O2) of one device."""
    key, site = device["device_key"], device["site_key"]
    trouble = rng.random()
    stopped = trouble < shares.stopped
    calibrating = shares.stopped <= trouble < shares.stopped + shares.calibration
    o2_fault = rng.random() < shares.o2_fault
    o2_level = min(18.0, max(2.0, rng.gauss(ref_o2, 1.5)))
    levels = {
        pol: limit
        * (rng.uniform(1.05, 2.0) if rng.random() < shares.over_limit else rng.uniform(0.2, 0.8))
        for pol, limit in LIMITS
    }
    for m in range(60):
        t = start + timedelta(minutes=m)
        common = "F" if stopped else "C" if calibrating and 10 <= m < 30 else None
        o2 = round(min(19.5, max(0.5, rng.gauss(o2_level, 0.3))), 2)
        o2_flag = common or ("D" if o2_fault and 30 <= m < 50 else None)
        o2_flag = o2_flag or (rng.choice(BAD_FLAGS) if rng.random() < shares.bad_minute else "N")
        yield StoredReading(t, key, site, "o2", Period.MINUTE, o2, "%", o2_flag)
        dilution = (21.0 - o2) / (21.0 - ref_o2)  # measured = corrected × dilution
        for pol, _ in LIMITS:
            value = round(max(0.0, levels[pol] * dilution * rng.gauss(1.0, 0.08)), 3)
            flag = common or (rng.choice(BAD_FLAGS) if rng.random() < shares.bad_minute else "N")
            yield StoredReading(t, key, site, pol, Period.MINUTE, value, "mg/m3", flag)


def write(conn: psycopg.Connection, rows: Iterator[StoredReading]) -> int:
    """Through the public writer, in batches of whole devices' hours; returns readings written."""
    mode = storage_mode(conn)
    assert mode is not None
    written, pending = 0, []
    for r in rows:
        pending.append(r)
        if len(pending) >= BATCH:
            with conn.transaction():
                write_readings(conn, pending, mode)
            written += len(pending)
            pending = []
    if pending:
        with conn.transaction():
            write_readings(conn, pending, mode)
        written += len(pending)
    return written


def hour_of_all(
    devices: list[dict[str, Any]], refs: dict[str, float], start: datetime, seed: int
) -> Iterator[StoredReading]:
    rng = random.Random(seed)
    for d in devices:
        yield from hour_readings(d, refs[d["site_id"]], start, rng, Shares())


@dataclass
class Figures:
    scale: int
    outlets: int
    rules: int
    readings_in_hour: int
    history_outlets: int
    history_hours: int
    history_readings: int
    stored_readings: int
    registry_s: float  # writing the registry through store.registry.write_registry
    write_readings_per_s: float  # the judged hour through store.readings.write_readings
    engine_s: float  # Engine.judge_hours for the one due hour
    floor_s: float  # median of 3 runs of the SQL aggregate
    counts_s: float  # median of 3 runs of the engine's own aggregate (store.minute_counts)
    ratio: float
    rejudge_s: float  # the same hour judged again, as late data makes the engine do
    exceedances: int
    invalid: int
    stopped: int
    compliant: int
    episodes_opened: int
    notifications_queued: int
    checked: int  # judgements equal to domain.compliance.judge of the same minutes
    load_before: float  # 1-minute load average just before judging (the machine is shared)
    load_after: float


def setup(url: str, outlets: int) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    """Migrated schema and the registry; returns devices, reference O2 by outlet, seconds."""
    migrate(url)
    rows = registry_rows(outlets)
    began = time.perf_counter()
    with connect(url, autocommit=True, application="bench-rules") as conn, conn.transaction():
        write_registry(conn, rows)
    seconds = time.perf_counter() - began
    with connect(url, autocommit=True, application="bench-rules") as conn:
        devices = sorted(list_devices(conn), key=lambda d: d["device_key"])
    refs = {o["id"]: o["reference_o2"] for o in rows["outlets"]}
    return devices, refs, seconds


def write_hours(
    url: str, devices: list[dict[str, Any]], refs: dict[str, float], first: datetime, hours: int
) -> int:
    """Minute data of ``devices`` for ``hours`` from ``first``, then the engine's watermark at
    the end of it. The rejudge queue is emptied: these hours stand for ones judged long ago,
    and judging them again is not what is timed (an hour's own entries, queued by its last
    minutes arriving after it ended, the engine drops as it judges the hour)."""
    written = 0
    with connect(url, autocommit=True, application="bench-rules") as conn:
        for h in range(hours):
            written += write(conn, hour_of_all(devices, refs, first + timedelta(hours=h), 1000 + h))
        with conn.transaction():
            compliance_store.set_done_through(conn, HOUR_JOB, first + timedelta(hours=hours))
            conn.execute("truncate rejudge_queue")
    return written


def engine_for(url: str, through: datetime) -> Engine:
    settings = Settings(database_url=url, alerts_gap_minutes=100_000)
    grace = timedelta(minutes=settings.alerts_grace_minutes)
    return Engine(settings, lambda: through + grace + timedelta(minutes=1))


def floor_query(conn: psycopg.Connection, start: datetime) -> int:
    """The floor: one aggregate per outlet and pollutant over the hour's minute rows."""
    rows = conn.execute(
        """
        select d.site_id, r.pollutant, count(*) filter (where r.flag = 'N'),
               avg(r.value) filter (where r.flag = 'N'), count(*)
        from readings r join devices d on d.key = r.device_key
        where r.period = 'minute' and r.pollutant <> 'o2'
          and r.time >= %s and r.time < %s
        group by d.site_id, r.pollutant
        """,
        (start, start + timedelta(hours=1)),
    ).fetchall()
    return len(rows)


def recompute(conn: psycopg.Connection, start: datetime) -> dict[tuple[str, str], Any]:
    """Straightforward verdicts: every minute row fetched, paired with its O2 in Python, and
    judged by ``domain.compliance.judge``."""
    end = start + timedelta(hours=1)
    minutes: dict[tuple[int, str], dict[datetime, tuple[float, str]]] = defaultdict(dict)
    for key, pol, t, value, flag in conn.execute(
        "select device_key, pollutant, time, value, flag from readings"
        " where period = 'minute' and time >= %s and time < %s",
        (start, end),
    ):
        minutes[(key, pol)][t] = (value, flag)
    site_of = {k: s for k, s in conn.execute("select key, site_id from devices")}
    keys_of: dict[str, list[int]] = defaultdict(list)
    for k, s in site_of.items():
        keys_of[s].append(k)
    out = {}
    for rule in (r for r in compliance_store.permit_rules(conn) if r.period == "hour"):
        samples = []
        for k in keys_of[rule.site_id]:
            o2 = minutes.get((k, "o2"), {})
            for t, (value, flag) in minutes.get((k, rule.pollutant), {}).items():
                o2v, o2f = o2.get(t, (None, None))
                samples.append(Sample(value, Flag(flag), o2v, Flag(o2f) if o2f else None))
        out[(rule.site_id, rule.pollutant)] = judge(
            samples, limit=rule.limit, min_valid=MIN_VALID_MINUTES, o2_reference=rule.o2_reference
        )
    return out


def check(conn: psycopg.Connection, start: datetime) -> tuple[int, Counter[str]]:
    """The engine's recorded judgements of outlets equal the recomputation, rule by rule."""
    expected = recompute(conn, start)
    got = {
        (s, p): (v, n, total, mean)
        for s, p, v, n, total, mean in conn.execute(
            "select site_id, pollutant, verdict, valid_count, total_count, mean from judgements"
            " where period = 'hour' and start = %s and site_id not in (select id from stations)",
            (start,),
        )
    }
    assert set(got) == set(expected), f"{len(got)} judgements recorded, {len(expected)} rules"
    verdicts: Counter[str] = Counter()
    for key, j in expected.items():
        verdict, n, total, mean = got[key]
        expect = (j.verdict.value, j.valid_count, j.total_count)
        if (verdict, n, total) != expect:
            raise AssertionError(f"{key}: engine {got[key]}, recomputed {j}")
        same_mean = (
            mean is None
            if j.mean is None
            else mean is not None and abs(mean - j.mean) <= 1e-9 * max(1.0, abs(j.mean))
        )
        if not same_mean:
            raise AssertionError(f"{key}: engine mean {mean}, recomputed {j.mean}")
        verdicts[verdict] += 1
    return len(expected), verdicts


def count(conn: psycopg.Connection, query: str, *args: object) -> int:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return int(row[0])


def run(url: str, outlets: int, history_outlets: int, history_hours: int, scale: int) -> Figures:
    devices, refs, registry_s = setup(url, outlets)
    history_readings = write_hours(
        url,
        devices[:history_outlets],
        refs,
        JUDGED_HOUR - timedelta(hours=history_hours),
        history_hours,
    )
    began = time.perf_counter()
    hour = write_hours(url, devices, refs, JUDGED_HOUR, 1)
    write_s = time.perf_counter() - began
    with connect(url, autocommit=True, application="bench-rules") as conn:
        # The judged hour is due, not done: the watermark at its start.
        compliance_store.set_done_through(conn, HOUR_JOB, JUDGED_HOUR)
        conn.execute("vacuum analyze")
        stored = count(conn, "select count(*) from readings")
        floor_query(conn, JUDGED_HOUR)  # the same warm cache for both
    engine = engine_for(url, JUDGED_HOUR + timedelta(hours=1))
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    hours = engine.judge_hours()
    engine_s = time.perf_counter() - began
    if hours != 1:
        raise AssertionError(f"the engine judged {hours} hours, not the one due")
    with connect(url, autocommit=True, application="bench-rules") as conn:
        floors = []
        for _ in range(3):
            began = time.perf_counter()
            floor_query(conn, JUDGED_HOUR)
            floors.append(time.perf_counter() - began)
        floor_s = statistics.median(floors)
        counts = []
        pollutants = sorted({pol for pol, _ in LIMITS})
        for _ in range(3):
            began = time.perf_counter()
            with conn.transaction():
                end = JUDGED_HOUR + timedelta(hours=1)
                compliance_store.minute_counts(
                    conn, pollutants, JUDGED_HOUR, end, MAX_CORRECTABLE_O2
                )
            counts.append(time.perf_counter() - began)
        counts_s = statistics.median(counts)
        checked, verdicts = check(conn, JUDGED_HOUR)
        opened = count(conn, "select count(*) from episodes where first_start = %s", JUDGED_HOUR)
        queued = count(
            conn,
            "select count(*) from notifications n join episodes e on e.id = n.episode_id"
            " where e.first_start = %s",
            JUDGED_HOUR,
        )
        if opened != verdicts[Verdict.EXCEEDANCE.value]:
            raise AssertionError(f"{opened} episodes opened for {verdicts} verdicts")
        # Late data: the scheduler judges an hour again in one transaction (alerts.service).
        began = time.perf_counter()
        with conn.transaction():
            apply_outcomes(conn, judge_hour(conn, JUDGED_HOUR), reopen_within=timedelta(hours=6))
        rejudge_s = time.perf_counter() - began
    load_after = os.getloadavg()[0]
    return Figures(
        scale=scale,
        outlets=outlets,
        rules=checked,
        readings_in_hour=hour,
        history_outlets=history_outlets,
        history_hours=history_hours,
        history_readings=history_readings,
        stored_readings=stored,
        registry_s=registry_s,
        write_readings_per_s=hour / write_s,
        engine_s=engine_s,
        floor_s=floor_s,
        counts_s=counts_s,
        ratio=engine_s / floor_s,
        rejudge_s=rejudge_s,
        exceedances=verdicts[Verdict.EXCEEDANCE.value],
        invalid=verdicts[Verdict.INVALID.value],
        stopped=verdicts[Verdict.STOPPED.value],
        compliant=verdicts[Verdict.COMPLIANT.value],
        episodes_opened=opened,
        notifications_queued=queued,
        checked=checked,
        load_before=load_before,
        load_after=load_after,
    )


def markdown(results: list[dict[str, Any]]) -> str:
    """The recorded runs as a Markdown table for BENCHMARKS.md (copied, never typed)."""
    lines = [
        "| figure | " + " | ".join(f"{r['scale']}x" for r in results) + " | target | met |",
        "| --- |" + " --- |" * len(results) + " --- | --- |",
    ]

    def row(label: str, text: str, limit: float | None = None, key: str = "") -> None:
        values = " | ".join(text.format(**r) for r in results)
        target = met = ""
        if limit is not None:
            target = f"≤ {limit:g}"
            met = "yes" if all(r[key] <= limit for r in results) else "no"
        lines.append(f"| {label} | {values} | {target} | {met} |")

    row("history: minute readings before the hour", "{history_readings:,}")
    row("readings stored in all", "{stored_readings:,}")
    row("rules judged, all equal to the recomputation", "{checked:,}")
    row("**engine: judge the hour (s)**", "{engine_s:.2f}", 10, "engine_s")
    row("floor: one SQL aggregate (s, median of 3)", "{floor_s:.2f}")
    row("**engine ÷ floor**", "{ratio:.2f}", 1.5, "ratio")
    row("of the engine: its aggregate query alone (s, median of 3)", "{counts_s:.2f}")
    row("the same hour judged again, as late data does (s)", "{rejudge_s:.2f}")
    row("exceedances = episodes opened", "{episodes_opened:,}")
    row("invalid / stopped / compliant", "{invalid:,} / {stopped:,} / {compliant:,}")
    row("notifications queued", "{notifications_queued:,}")
    row("registry written (s)", "{registry_s:.1f}")
    row("write_readings, the judged hour (readings/s)", "{write_readings_per_s:,.0f}")
    row("1-min load average before judging / at the end", "{load_before:.1f} / {load_after:.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=1, help="history multiplier (1, 4, 16)")
    parser.add_argument("--outlets", type=int, default=10_000)
    parser.add_argument("--history-outlets", type=int, default=1_000)
    parser.add_argument("--history-hours", type=int, default=1, help="at scale 1")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no result files")
    parser.add_argument("--database-url", default=None, help="an empty database")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON results elsewhere than bench/results/rules-SCALE.json (no plot then)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the recorded runs as a table and stop"
    )
    args = parser.parse_args()
    if args.markdown:
        from bench.plot import load_results

        print(markdown(load_results("rules")))
        return
    if args.smoke:
        args.outlets, args.history_outlets, args.history_hours = 40, 10, 1
    cluster = None
    url = args.database_url
    if url is None:
        from tests.servers import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("create database bench")
        url = cluster.url("bench")
    try:
        figures = run(
            url,
            args.outlets,
            min(args.history_outlets, args.outlets),
            args.history_hours * args.scale,
            args.scale,
        )
    finally:
        if cluster is not None:
            cluster.destroy()
    for name, value in vars(figures).items():
        print(f"{name}: {value:,.4f}" if isinstance(value, float) else f"{name}: {value:,}")
    if not args.smoke:
        output = args.output or RESULTS / f"rules-{args.scale}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        record = {
            **vars(figures),
            "command": f"python -m bench.rules --scale {args.scale}",
            "machine": f"{platform.machine()}, 2 cores, 24 GiB",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        output.write_text(json.dumps(record, indent=2) + "\n")
        if args.output is None:
            from bench.plot import load_results, plot_rules

            plot_rules(load_results("rules"), PLOT)


if __name__ == "__main__":
    main()
