"""Public API under load: list endpoints, a year of hourly means and the map, against a do-nothing
FastAPI endpoint serving a payload of the same size, in the same run (issue 7 §2 and §5).

    python -m bench.api                  # 2,000 stations, 10,000 enterprises, history 1x (30 days)
    python -m bench.api --scale 16       # the same registry, 16x the history (480 days)
    python -m bench.api --smoke          # a tiny registry, a moment of load per endpoint (CI)
    python -m bench.api --database-url …  # reuse a database an earlier run filled (no generation)

It starts its own PostgreSQL cluster, migrates it, writes a synthetic registry and data, starts
the real API (``python -m sunlight api``, one uvicorn process, the rate limit raised for the run
only through ``SUNLIGHT_API_RATE_LIMIT_PER_MINUTE``) and the do-nothing app (one uvicorn process,
same settings), and loads each with 64 connections from a second process: ``wrk`` when installed
(``apt-get install wrk``), otherwise a Python asyncio + httpx generator (what ``--smoke`` uses).
Each endpoint is loaded in turn (stations, enterprises at the default page of 100 and all
10,000, a year of hourly means both repeated and every time another year, the same year as
``format=columns`` and as a chart's ``columns`` of ``fields=mean,n_valid``, a day of minute
readings, the map, and stations, the year's columns and the map again gzip-encoded as browsers
ask), each do-nothing run serving the very bytes its API twin answered; before each, the first
request (cold) and five requests of one warm client are timed, and right before its load
each of its subjects (the other year sites too) is asked until answered from the cache, so a
repeated scenario meets the steady state its cache is for, whatever the scenarios before it
evicted; first builds under load are the ``series_year_uncached`` scenario. Then headless
Chromium (Playwright) times ``/map`` until its markers and clusters are drawn. Last, the API
and the do-nothing app are restarted with 2 worker processes each (``sunlight api --workers 2``) and
stations, enterprises, the year's columns and the map are loaded again (``*_workers2``).

What is generated, and why not everything the issue names. Thirty days of minute data for 12,000
sites is about 3 billion readings: days of writing on a 2-core machine. The public endpoints do
not read minute data; they read the hourly rollup (``readings_hourly``), the latest values
(``latest_readings``), judgements and episodes. So the run writes:

* every site's latest values, and the last 13 hours of hourly means for every station (what its
  AQI needs: HJ 633's newest hour, US EPA NowCast's 12 hours);
* 30 x scale days of hourly means for a *history subset* of sites (half stations, half outlets),
  and at least 366 days for four of them (the subjects of the year-of-hourly-means query), so the
  answer's size stays fixed while the total history grows with ``--scale``;
* hourly judgements of SO2 and NOx for every outlet for the last 24 hours, and for the history
  subset's outlets over their whole history (2 % exceedances, 1 % invalid hours); episodes in
  chosen proportions (3 % of outlets exceeding now, 1 % in a monitoring gap, 10 % with an episode
  closed in the last 30 days, the history outlets one per further 30 days);
* true minute readings, written through ``store.readings.write_readings``, for a few stations
  over the last hours (fixed size: the raw-series endpoint reads a bounded window by index).

The plain PostgreSQL path only: on TimescaleDB the rollup is a continuous aggregate that cannot
be written directly. Results go to ``bench/results/api-<scale>.json`` (not in smoke mode);
``python -m bench.plot`` draws them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from domain.readings import Period
from store.readings import StoredReading, write_readings
from store.schema import StorageMode, migrate, storage_mode

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONNECTIONS = 64

# (medium, pollutant, unit, typical level): plausible magnitudes, not a model of any place.
POLLUTANTS = (
    ("ambient", "pm25", "ug/m3", 40.0),
    ("ambient", "pm10", "ug/m3", 70.0),
    ("ambient", "so2", "ug/m3", 12.0),
    ("ambient", "no2", "ug/m3", 35.0),
    ("ambient", "co", "mg/m3", 0.8),
    ("ambient", "o3", "ug/m3", 90.0),
    ("flue_gas", "so2", "mg/m3", 25.0),
    ("flue_gas", "nox", "mg/m3", 40.0),
    ("flue_gas", "pm", "mg/m3", 6.0),
    ("flue_gas", "o2", "%", 8.0),
)
# Hourly permit limits of a coal-fired boiler (GB 13223-2011, key areas), mg/m3 at 6 % O2.
LIMITS = (("so2", 35.0), ("nox", 50.0), ("pm", 10.0))
INDUSTRIES = ("thermal_power", "steel", "cement", "chemical", "other")

TARGETS_MS = {
    "stations": 50.0,
    "enterprises": 50.0,
    "series_year": 100.0,
    "series_year_columns": 100.0,
    "series_year_chart": 100.0,
    "map": 200.0,
}
# Loaded again with this many API (and do-nothing) worker processes: ``sunlight api --workers``.
MORE_WORKERS = 2
TARGET_MAP_RENDER_S = 2.0
TARGET_RATIO = 0.5


@dataclass(frozen=True, slots=True)
class Volume:
    """How much is generated; ``scale`` multiplies only the history."""

    scale: int
    stations: int = 2000
    enterprises: int = 10_000
    districts: int = 20
    history_sites: int = 100
    year_sites: int = 4
    minute_stations: int = 10
    minute_hours: int = 6

    @property
    def history_days(self) -> int:
        return 30 * self.scale

    @classmethod
    def smoke(cls) -> Volume:
        return cls(
            scale=1,
            stations=20,
            enterprises=40,
            districts=4,
            history_sites=4,
            year_sites=2,
            minute_stations=2,
            minute_hours=1,
        )


# ---------------------------------------------------------------------------------------------
# Synthetic data. SQL here builds a throwaway benchmark database; the application's SQL stays in
# store/.


def _copy(
    conn: psycopg.Connection, table: str, columns: str, rows: Iterator[tuple[Any, ...]]
) -> None:
    with conn.cursor().copy(f"copy {table} ({columns}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)


def _district_grid(n: int) -> list[tuple[str, float, float, float, float]]:
    """n rectangular districts tiling lon 112-118, lat 36-40: (id, west, south, east, north)."""
    cols = math.ceil(math.sqrt(n * 1.5))
    rows = math.ceil(n / cols)
    out = []
    for i in range(n):
        c, r = i % cols, i // cols
        w, s = 112 + 6 * c / cols, 36 + 4 * r / rows
        out.append((f"d{i:02d}", w, s, w + 6 / cols, s + 4 / rows))
    return out


# Row sources (site_id, medium, days) and spans for the generating statements below.
ALL_STATIONS = "(select id as site_id, 'ambient' as medium, 0 as days from stations)"
ALL_OUTLETS = "(select id as site_id, 'flue_gas' as medium, 1 as days from outlets)"
HISTORY_OUTLETS = "(select * from bench_history where medium = 'flue_gas')"
HISTORY_SPAN = "make_interval(days => x.days)"
RECENT_SPAN = "interval '13 hours'"
DAY_SPAN = "interval '24 hours'"

ROLLUP_SQL = """
    insert into readings_hourly (device_key, site_key, pollutant, period, unit, hour, n,
                                 n_valid, mean, min, max, mean_all, flags_mask)
    select device_key, site_key, pollutant, 'minute', unit, hour, 60, n_valid, mean,
           mean * 0.7, mean * 1.4, mean, case when n_valid = 60 then 1 else 33 end
    from (
        select d.key as device_key, s.key as site_key, p.pollutant, p.unit, h.hour,
               p.level * (0.5 + random()) as mean,
               case when random() < 0.97 then 60 else 40 end as n_valid
        from {source} x
        join devices d on d.site_id = x.site_id
        join sites s on s.id = x.site_id
        join bench_pollutants p on p.medium = x.medium
        cross join lateral generate_series(%(now)s - {span}, %(now)s - interval '1 hour',
                                           interval '1 hour') h(hour)
    ) v
    on conflict do nothing
"""

# 2 % exceedances, 1 % invalid hours, the rest compliant.
JUDGEMENTS_SQL = """
    insert into judgements (site_id, pollutant, period, start, limit_value, unit, standard,
                            o2_reference, mean, measured_mean, o2_mean, valid_count,
                            total_count, verdict)
    select site_id, pollutant, 'hour', hour, lim, 'mg/m3', 'GB 13223-2011', 6,
           case when r >= 0.02 and r < 0.03 then null
                else lim * (case when r < 0.02 then 1.3 else 0.3 + r * 0.5 end) end,
           lim * 0.5, 8.0, case when r >= 0.02 and r < 0.03 then 30 else 58 end, 60,
           case when r < 0.02 then 'exceedance' when r < 0.03 then 'invalid'
                else 'compliant' end
    from (
        select x.site_id, l.pollutant, l.value as lim, h.hour, random() as r
        from {source} x
        join permit_limits l on l.outlet_id = x.site_id and l.pollutant in ('so2', 'nox')
        cross join lateral generate_series(%(now)s - {span}, %(now)s - interval '1 hour',
                                           interval '1 hour') h(hour)
    ) j
    on conflict do nothing
"""


def generate(url: str, vol: Volume) -> dict[str, Any]:
    """Write the registry and data; return what was written (row counts) and how long it took."""
    began = time.perf_counter()
    migrate(url)
    rng = random.Random(7)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(url, options="-c TimeZone=UTC") as conn:
        mode = storage_mode(conn)
        if mode is not StorageMode.POSTGRES:
            raise SystemExit("bench.api writes the hourly rollup directly: plain PostgreSQL only")
        districts = _district_grid(vol.districts)
        _copy(
            conn,
            "regulators",
            "id, name, name_zh, level, parent_id",
            iter(
                [("prov", "Provincial bureau", "省生态环境厅", "province", None)]
                + [
                    (f"r-{d[0]}", f"Office {d[0]}", f"{d[0]}分局", "district", "prov")
                    for d in districts
                ]
            ),
        )
        _copy(
            conn,
            "districts",
            "id, name, name_zh, regulator_id, boundary",
            (
                (
                    d,
                    f"District {d}",
                    f"{d}区",
                    f"r-{d}",
                    json.dumps(
                        {
                            "type": "Polygon",
                            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
                        }
                    ),
                )
                for d, w, s, e, n in districts
            ),
        )

        def place() -> tuple[str, float, float]:
            d, w, s, e, n = rng.choice(districts)
            return d, round(rng.uniform(w, e), 5), round(rng.uniform(s, n), 5)

        stations = [(f"st-{i:05d}", *place()) for i in range(vol.stations)]
        enterprises = [(f"en-{i:05d}", *place()) for i in range(vol.enterprises)]
        outlets = [f"{e[0]}-o1" for e in enterprises]
        _copy(
            conn,
            "sites",
            "id, kind",
            iter([(s[0], "station") for s in stations] + [(o, "outlet") for o in outlets]),
        )
        _copy(
            conn,
            "stations",
            "id, name, name_zh, district_id, lon, lat, zone",
            ((s, f"Station {s}", f"监测站{s}", d, lon, lat, 2) for s, d, lon, lat in stations),
        )
        _copy(
            conn,
            "enterprises",
            "id, name, name_zh, industry, district_id, lon, lat",
            (
                (e, f"Enterprise {e}", f"企业{e}", INDUSTRIES[i % len(INDUSTRIES)], d, lon, lat)
                for i, (e, d, lon, lat) in enumerate(enterprises)
            ),
        )
        _copy(
            conn,
            "outlets",
            "id, enterprise_id, name, name_zh, kind, reference_o2",
            ((o, o[:-3], "Stack 1", "1号排气筒", "gas", 6.0) for o in outlets),
        )
        _copy(
            conn,
            "permit_limits",
            "outlet_id, pollutant, period, value, unit, standard, o2_corrected",
            ((o, p, "hour", v, "mg/m3", "GB 13223-2011", True) for o in outlets for p, v in LIMITS),
        )
        _copy(
            conn,
            "devices",
            "id, site_id",
            ((f"dev-{s}", s) for s in [s[0] for s in stations] + outlets),
        )
        conn.execute(
            "create temp table bench_pollutants"
            " (medium text, pollutant text, unit text, level float8)"
        )
        _copy(conn, "bench_pollutants", "medium, pollutant, unit, level", iter(POLLUTANTS))
        # Which sites carry history: the first stations and outlets; the year sites among them.
        half = vol.history_sites // 2
        year_half = vol.year_sites // 2
        history = [
            (sid, medium, max(366, vol.history_days) if i < year_half else vol.history_days)
            for medium, ids in (
                ("ambient", [s[0] for s in stations[:half]]),
                ("flue_gas", outlets[:half]),
            )
            for i, sid in enumerate(ids)
        ]
        conn.execute("create temp table bench_history (site_id text, medium text, days int)")
        _copy(conn, "bench_history", "site_id, medium, days", iter(history))
        year_sites = [h[0] for h in history[:year_half]] + [
            h[0] for h in history[half : half + year_half]
        ]

        # True minute readings for the last stations, through the ingest write path.
        minute_ids = [s[0] for s in stations[-vol.minute_stations :]]
        keys = dict(
            conn.execute(
                "select d.site_id, array[d.key, s.key] from devices d"
                " join sites s on s.id = d.site_id where d.site_id = any(%s)",
                (minute_ids,),
            ).fetchall()
        )
        batch: list[StoredReading] = []
        first = now - timedelta(hours=vol.minute_hours)
        for sid in minute_ids:
            dkey, skey = keys[sid]
            for m in range(vol.minute_hours * 60):
                t = first + timedelta(minutes=m)
                for medium, pol, unit, level in POLLUTANTS:
                    if medium == "ambient":
                        value = round(level * (1 + rng.gauss(0, 0.1)), 3)
                        flag = "N" if rng.random() > 0.02 else "C"
                        batch.append(
                            StoredReading(t, dkey, skey, pol, Period.MINUTE, value, unit, flag)
                        )
        minute_readings = len(batch)
        for i in range(0, len(batch), 20_000):
            with conn.transaction():
                write_readings(conn, batch[i : i + 20_000], mode)

        # Hourly means: the history subset over its days, then every station's last 13 hours.
        conn.execute(ROLLUP_SQL.format(source="bench_history", span=HISTORY_SPAN), {"now": now})
        conn.execute(ROLLUP_SQL.format(source=ALL_STATIONS, span=RECENT_SPAN), {"now": now})
        # Every site's latest values (minute stations already have theirs from ingest).
        conn.execute(
            """
            insert into latest_readings (site_key, pollutant, period, device_key, time, value,
                                         unit, flag, valid_received_at)
            select s.key, p.pollutant, 'minute', d.key, t, p.level * (0.5 + random()), p.unit,
                   f, case when f = 'N' then t end
            from sites s
            join devices d on d.site_id = s.id
            join bench_pollutants p
              on p.medium = case s.kind when 'station' then 'ambient' else 'flue_gas' end
            cross join lateral (select %(exact)s - interval '1 minute' * (random() * 5)::int as t,
                                       case when random() < 0.98 then 'N' else 'C' end as f
                                where s.key is not null) r
            on conflict do nothing
            """,
            {"exact": datetime.now(UTC)},
        )
        # Judgements: every outlet's last 24 hours, the history outlets over their history.
        conn.execute(JUDGEMENTS_SQL.format(source=ALL_OUTLETS, span=DAY_SPAN), {"now": now})
        conn.execute(JUDGEMENTS_SQL.format(source=HISTORY_OUTLETS, span=HISTORY_SPAN), {"now": now})
        # Episodes: 3 % of outlets exceeding now, 1 % in a gap, one closed episode per outlet
        # and 30 days of history (10 % of all outlets had one in the last 30 days).
        conn.execute(
            """
            insert into episodes (kind, site_id, pollutant, period, regulator_id, status, severity,
                                  first_start, last_end, hours, max_mean, limit_value, opened_at,
                                  notified_at, acknowledged_at, resolved_at, resolution)
            select kind, k.id, case when kind = 'gap' then '' else 'so2' end,
                   case when kind = 'gap' then '' else 'hour' end, 'r-' || e.district_id, status,
                   case when kind = 'gap' then null else 'moderate' end,
                   opened - interval '1 hour', opened + interval '2 hours', 3,
                   case when kind = 'gap' then null else 45.5 end,
                   case when kind = 'gap' then null else 35 end, opened, opened,
                   case when status in ('acknowledged', 'resolved')
                        then opened + interval '1 minute' * (10 + random() * 200)::int end,
                   case when status = 'resolved' then opened + interval '6 hours' end,
                   case when status = 'resolved' then 'fixed' end
            from (
                select o.id, o.enterprise_id, r, k.kind, k.status, k.opened
                from outlets o
                cross join lateral (select random() as r where o.id is not null) x
                cross join lateral (
                    values ('exceedance', case when r < 0.015 then 'notified' else 'acknowledged'
                            end, %(now)s - interval '2 hours')
                ) k(kind, status, opened)
                where r < 0.03
                union all
                select o.id, o.enterprise_id, r, 'gap', 'notified', %(now)s - interval '5 hours'
                from outlets o cross join lateral (select random() as r where o.id is not null) x
                where r < 0.01
                union all
                select o.id, o.enterprise_id, 0, 'exceedance', 'resolved',
                       %(now)s - interval '1 day' * (1 + random() * 28)
                from outlets o cross join lateral (select random() as r where o.id is not null) x
                where r < 0.10
                union all
                select h.site_id, o.enterprise_id, 0, 'exceedance', 'resolved',
                       %(now)s - interval '1 day' * (31 + g * 30 + random() * 20)
                from bench_history h join outlets o on o.id = h.site_id
                cross join lateral generate_series(0, h.days / 30 - 2) g
            ) k join enterprises e on e.id = k.enterprise_id
            """,
            {"now": now},
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("vacuum analyze")
        counts = {
            t: conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(t))
            ).fetchone()[0]  # type: ignore[index]
            for t in (
                "stations",
                "enterprises",
                "outlets",
                "permit_limits",
                "readings_hourly",
                "latest_readings",
                "judgements",
                "episodes",
                "readings",
            )
        }
    return {
        "rows": counts,
        "minute_readings_written": minute_readings,
        "history_days": vol.history_days,
        "history_sites": vol.history_sites,
        "year_sites": year_sites,
        "minute_sites": minute_ids,
        "generate_s": round(time.perf_counter() - began, 1),
    }


# ---------------------------------------------------------------------------------------------
# Servers: the real API and the do-nothing app, each one uvicorn process with the same settings.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no answer from {url} within {timeout_s} s")


def _settle(url: str, timeout_s: float = 120.0) -> float:
    """Wait until ``url`` answers within 100 ms: requests a load run left queued in the server
    must not be counted against the next endpoint. Returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        t0 = time.monotonic()
        with suppress(httpx.HTTPError):
            httpx.get(url, timeout=timeout_s)
        if time.monotonic() - t0 < 0.1:
            break
        time.sleep(0.2)
    return time.monotonic() - began


@contextmanager
def _server(
    cmd: list[str], env: dict[str, str], ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    try:
        _wait_http(ready_url, proc)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


BASELINE_PAYLOADS = "BENCH_API_BASELINE_PAYLOADS"


def baseline_app() -> Any:
    """The ceiling: FastAPI answering constant bodies (``/nothing/<name>`` serves the file
    ``<name>`` of the directory named by ``$BENCH_API_BASELINE_PAYLOADS``: the very bytes an API
    endpoint answered)."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    payloads = Path(os.environ[BASELINE_PAYLOADS])
    bodies = {p.name: p.read_bytes() for p in payloads.iterdir()}
    app = FastAPI()

    @app.get("/nothing/{name}")
    def nothing(name: str) -> Response:
        return Response(bodies[name], media_type="application/json")

    return app


def serve_baseline(port: int, payloads: Path, workers: int = 1) -> None:
    """The do-nothing app, with uvicorn run as ``sunlight api --workers N`` runs it."""
    import uvicorn

    os.environ[BASELINE_PAYLOADS] = str(payloads)
    if workers == 1:
        uvicorn.run(baseline_app(), host="127.0.0.1", port=port, log_level="warning")
    else:
        uvicorn.run(
            "bench.api:baseline_app",
            factory=True,
            workers=workers,
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )


def _warm(url: str, timeout_s: float = 180.0) -> None:
    """Until ``url`` answers 8 times in a row within 100 ms, each on a new connection: with
    several workers each builds its own reused responses, and a build under load is not what
    is measured."""
    deadline = time.monotonic() + timeout_s
    fast = 0
    while fast < 8 and time.monotonic() < deadline:
        t0 = time.monotonic()
        httpx.get(url, timeout=timeout_s, headers={"accept-encoding": "identity"})
        fast = fast + 1 if time.monotonic() - t0 < 0.1 else 0


# ---------------------------------------------------------------------------------------------
# Load: wrk when installed, else an asyncio + httpx generator in a second Python process.

WRK_SCRIPT = """
local paths = {PATHS}
local i = 0
{HEADERS}
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests": %%d, "duration_s": %%.3f, "errors": %%d, "non2xx": %%d, "bytes": %%d,'
        .. ' "p50_ms": %%.3f, "p90_ms": %%.3f, "p99_ms": %%.3f, "max_ms": %%.3f}\\n',
        summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
        e.status, summary.bytes, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
        latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


def _wrk(
    base: str, paths: list[str], connections: int, duration_s: float, gzip: bool
) -> dict[str, Any]:
    lua = WRK_SCRIPT.replace("{PATHS}", "{" + ", ".join(json.dumps(p) for p in paths) + "}")
    lua = lua.replace("{HEADERS}", 'wrk.headers["Accept-Encoding"] = "gzip"' if gzip else "")
    lua = lua.replace("%%", "%")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{duration_s:g}s",
                "--timeout",
                "30s",
                "-s",
                f.name,
                base + paths[0],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(f.name)
    line = next(x for x in out.stdout.splitlines() if x.startswith("{"))
    figures: dict[str, Any] = json.loads(line)
    return figures


def load(
    base: str,
    paths: list[str],
    connections: int,
    duration_s: float,
    generator: str,
    *,
    gzip: bool = False,
) -> dict[str, Any]:
    """Load ``paths`` in turn for ``duration_s`` with ``connections`` from a second process;
    ``gzip`` asks for gzip-encoded responses, as browsers do."""
    if generator == "wrk":
        figures = _wrk(base, paths, connections, duration_s, gzip)
    else:
        spec = {
            "base": base,
            "paths": paths,
            "connections": connections,
            "duration_s": duration_s,
            "gzip": gzip,
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(spec, f)
            f.flush()
            out = subprocess.run(
                [sys.executable, "-m", "bench.loadgen", f.name],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
        figures = json.loads(out.stdout.splitlines()[-1])
    figures["rps"] = figures["requests"] / figures["duration_s"] if figures["duration_s"] else 0.0
    return figures


# ---------------------------------------------------------------------------------------------
# The map in headless Chromium.

MAP_DRAWN = """() => {
    if (typeof L === 'undefined') { return false; }
    const maps = Object.values(window).filter(v => v instanceof L.Map);
    if (!maps.length) { return false; }
    let circles = 0;
    maps[0].eachLayer(l => { if (l instanceof L.CircleMarker) circles++; });
    const clusters = document.querySelectorAll('.marker-cluster').length;
    return circles > 0 && clusters > 0
        ? {circles: circles, clusters: clusters, t: performance.now()} : false;
}"""


def render_map(url: str, runs: int) -> dict[str, Any]:
    """Seconds from navigation start until stations and enterprise clusters are drawn."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return {"skipped": "chromium not installed"}
    times: list[float] = []
    drawn: dict[str, int] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            for _ in range(runs):
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(url, wait_until="commit")
                handle = page.wait_for_function(MAP_DRAWN, timeout=60_000, polling=20)
                drawn = handle.json_value()
                # performance.now() counts from navigation start, in the page's own clock.
                times.append(drawn.pop("t") / 1e3)
                page.close()
        finally:
            browser.close()
    return {
        "runs_s": [round(t, 3) for t in times],
        "median_s": statistics.median(times),
        "max_s": max(times),
        "drawn": drawn,
    }


# ---------------------------------------------------------------------------------------------
# The run.


def _machine() -> dict[str, Any]:
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1)}


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def subjects(vol: Volume) -> tuple[list[str], list[str]]:
    """(year sites, minute-data sites): the sites the series endpoints are asked about."""
    half = vol.year_sites // 2
    year = [f"st-{i:05d}" for i in range(half)] + [f"en-{i:05d}-o1" for i in range(half)]
    minute = [f"st-{i:05d}" for i in range(vol.stations - vol.minute_stations, vol.stations)]
    return year, minute


# The order endpoints are loaded in; each do-nothing run serves the bytes its API twin answered.
ORDER = (
    ("baseline_stations", "stations"),
    ("stations", None),
    ("enterprises", None),
    ("enterprises_all", None),
    ("series_year", None),
    ("series_year_uncached", None),
    ("baseline_series_year", "series_year"),
    # The same year as the compact representation a chart asks for (format=columns).
    ("series_year_columns", None),
    ("baseline_series_year_columns", "series_year_columns"),
    # What a chart needs of it: times, means and their coverage (fields=mean,n_valid).
    ("series_year_chart", None),
    ("baseline_series_year_chart", "series_year_chart"),
    ("raw_day", None),
    ("map", None),
    ("baseline_map", "map"),
    # What browsers get: the same bodies gzip-encoded (compressed once, when built).
    ("stations_gzip", None),
    ("series_year_columns_gzip", None),
    ("map_gzip", None),
    ("baseline_stations_again", "stations"),
)
# Then with MORE_WORKERS processes each (names suffixed ``_workers2``).
ORDER_WORKERS = (
    ("baseline_stations", "stations"),
    ("stations", None),
    ("enterprises", None),
    ("series_year_columns", None),
    ("map", None),
)


def run(
    vol: Volume,
    *,
    generator: str,
    duration_s: float,
    connections: int,
    browser_runs: int,
    database_url: str | None = None,
) -> dict[str, Any]:
    from tests.servers import PostgresCluster

    result: dict[str, Any] = {
        "scale": vol.scale,
        "volume": asdict(vol),
        "date": _iso(datetime.now(UTC).replace(microsecond=0)),
        "machine": _machine(),
        "loadavg_start": os.getloadavg(),
        "load_generator": generator,
        "connections": connections,
        "duration_s": duration_s,
    }
    cluster = None
    if database_url is None:
        cluster = PostgresCluster()
        cluster.start()
    scenarios: dict[str, dict[str, Any]] = {}
    try:
        if cluster is not None:
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                conn.execute("create database bench")
            url = cluster.url("bench")
            result["data"] = generate(url, vol)
            print(f"generated in {result['data']['generate_s']} s", file=sys.stderr)
        else:
            url = database_url  # type: ignore[assignment]
            result["data"] = {"reused_database": True}
        with psycopg.connect(url, autocommit=True) as conn:
            result["postgres"] = conn.execute("show server_version").fetchone()[0]  # type: ignore[index]
            result["data"]["rows"] = result["data"].get("rows", {}) | {
                t: conn.execute(
                    sql.SQL("select count(*) from {}").format(sql.Identifier(t))
                ).fetchone()[0]  # type: ignore[index]
                for t in ("readings_hourly", "judgements", "episodes", "readings")
            }
        print(f"rows: {result['data']['rows']}", file=sys.stderr)
        year_sites, minute_sites = subjects(vol)
        api = f"http://127.0.0.1:{_free_port()}"
        baseline = f"http://127.0.0.1:{_free_port()}"
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

        def year_of(site: str, back_h: int = 0) -> str:
            e = end - timedelta(hours=back_h)
            return (
                f"/api/v1/sites/{site}/readings?pollutant=so2&interval=hour"
                f"&start={_iso(e - timedelta(days=365))}&end={_iso(e)}"
            )

        paths = {
            "stations": ["/api/v1/stations"],
            "enterprises": ["/api/v1/enterprises"],
            "enterprises_all": ["/api/v1/enterprises?limit=10000"],
            "series_year": [year_of(s) for s in year_sites],
            # Every request another year (shifted by hours): none is answered from the cache.
            "series_year_uncached": [year_of(s, h) for h in range(1, 2001) for s in year_sites],
            "series_year_columns": [year_of(s) + "&format=columns" for s in year_sites],
            "series_year_chart": [
                year_of(s) + "&format=columns&fields=mean,n_valid" for s in year_sites
            ],
            "raw_day": [f"/api/v1/sites/{s}/readings?pollutant=pm25" for s in minute_sites],
            "map": ["/map"],
        }
        paths["stations_gzip"] = paths["stations"]
        paths["map_gzip"] = paths["map"]
        paths["series_year_columns_gzip"] = paths["series_year_columns"]
        env = {
            "SUNLIGHT_DATABASE_URL": url,
            # For the benchmark only: 64 clients from one address would otherwise be throttled.
            "SUNLIGHT_API_RATE_LIMIT_PER_MINUTE": str(10**9),
            "SUNLIGHT_LOG_LEVEL": "WARNING",
        }
        port = api.rsplit(":", 1)[1]
        api_cmd = [sys.executable, "-m", "sunlight", "api", "--host", "127.0.0.1", "--port", port]
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as api_stack:
            api_stack.enter_context(_server(api_cmd, env, f"{api}/healthz"))
            # The first request of each: what a cold cache (or an uncached deployment) costs.
            for name, ps in paths.items():
                if name.endswith("_gzip"):
                    continue
                t0 = time.perf_counter()
                r = httpx.get(api + ps[0], timeout=120, headers={"accept-encoding": "identity"})
                cold = (time.perf_counter() - t0) * 1e3
                r.raise_for_status()
                (Path(tmp) / name).write_bytes(r.content)
                # Then one client alone, warm: what serving costs without a crowd.
                warm = []
                with httpx.Client(timeout=120, headers={"accept-encoding": "identity"}) as c:
                    for _ in range(5):
                        t0 = time.perf_counter()
                        c.get(api + ps[0]).raise_for_status()
                        warm.append((time.perf_counter() - t0) * 1e3)
                scenarios[name] = {
                    "path": ps[0],
                    "cold_ms": round(cold, 1),
                    "warm_median_ms": round(statistics.median(warm), 1),
                    "warm_max_ms": round(max(warm), 1),
                    "body_bytes": len(r.content),
                }
            base_cmd = [
                *(sys.executable, "-m", "bench.api", "--serve-baseline"),
                *(baseline.rsplit(":", 1)[1], tmp),
            ]

            def load_in_turn(order: tuple[tuple[str, str | None], ...], suffix: str) -> None:
                """Each scenario of ``order`` in turn; a do-nothing one serves its twin's bytes."""
                for name, twin in order:
                    settled = _settle(f"{api}/healthz")
                    key = name + suffix
                    if twin is not None:
                        figures = load(
                            baseline, [f"/nothing/{twin}"], connections, duration_s, generator
                        )
                        scenarios[key] = {
                            "path": f"/nothing/{twin} (do-nothing app, same bytes as {twin})",
                            "body_bytes": scenarios[twin]["body_bytes"],
                            **figures,
                        }
                    else:
                        # Its subjects (the other year sites...) answered from the cache right
                        # before its crowd, which then meets the steady state a cache is for, as
                        # after the first visitor of each, whatever an earlier scenario (every
                        # request another year) evicted or left queued in the build process.
                        # First builds under load are what series_year_uncached measures, and
                        # cold_ms times one alone.
                        for path in paths[name] if name != "series_year_uncached" else []:
                            _warm(api + path)
                        zipped = name.endswith("_gzip")
                        scenarios.setdefault(key, {"path": paths[name][0] + (" (gzip)" * zipped)})
                        scenarios[key].update(
                            load(api, paths[name], connections, duration_s, generator, gzip=zipped)
                        )
                    f = scenarios[key]
                    f["settle_s"] = round(settled, 1)
                    print(
                        f"{key}: {f['rps']:.0f} req/s, p50 {f['p50_ms']:.1f} ms,"
                        f" p99 {f['p99_ms']:.1f} ms",
                        file=sys.stderr,
                    )

            with _server(base_cmd, {}, f"{baseline}/nothing/stations"):
                load_in_turn(ORDER, "")
            if browser_runs:
                _settle(f"{api}/healthz")
                result["map_render"] = render_map(f"{api}/map", browser_runs)
            api_stack.close()
            # Again with several worker processes, the do-nothing app likewise.
            more = ["--workers", str(MORE_WORKERS)]
            with (
                _server([*api_cmd, *more], env, f"{api}/healthz"),
                _server([*base_cmd, str(MORE_WORKERS)], {}, f"{baseline}/nothing/stations"),
            ):
                load_in_turn(ORDER_WORKERS, f"_workers{MORE_WORKERS}")
    finally:
        if cluster is not None:
            cluster.destroy()
    result["scenarios"] = scenarios
    result["loadavg_end"] = os.getloadavg()
    result["ratio_stations_to_baseline"] = (
        scenarios["stations"]["rps"] / scenarios["baseline_stations"]["rps"]
    )
    result["ratio_series_year_to_baseline"] = (
        scenarios["series_year"]["rps"] / scenarios["baseline_series_year"]["rps"]
    )
    result["ratio_map_to_baseline"] = scenarios["map"]["rps"] / scenarios["baseline_map"]["rps"]
    w = f"_workers{MORE_WORKERS}"
    result[f"ratio_stations_to_baseline{w}"] = (
        scenarios[f"stations{w}"]["rps"] / scenarios[f"baseline_stations{w}"]["rps"]
    )
    met = {name: scenarios[name]["p99_ms"] <= target for name, target in TARGETS_MS.items()}
    for name, twin in ORDER_WORKERS:
        if twin is None:
            met[name + w] = scenarios[name + w]["p99_ms"] <= TARGETS_MS[name]
    met[f"ratio{w}"] = result[f"ratio_stations_to_baseline{w}"] >= TARGET_RATIO
    met["enterprises_all"] = scenarios["enterprises_all"]["p99_ms"] <= TARGETS_MS["enterprises"]
    met["ratio"] = result["ratio_stations_to_baseline"] >= TARGET_RATIO
    if "median_s" in result.get("map_render", {}):
        met["map_render"] = result["map_render"]["max_s"] <= TARGET_MAP_RENDER_S
    result["targets_met"] = met
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"scale: {result['scale']}")
    print(f"load_generator: {result['load_generator']}")
    print(f"readings_hourly_rows: {result['data']['rows']['readings_hourly']}")
    print(f"judgements_rows: {result['data']['rows']['judgements']}")
    for name, f in result["scenarios"].items():
        print(f"{name}_rps: {f['rps']:.1f}")
        for key in ("p50_ms", "p90_ms", "p99_ms", "cold_ms", "warm_median_ms", "warm_max_ms"):
            if key in f:
                print(f"{name}_{key}: {f[key]:.1f}")
        print(f"{name}_errors: {f['errors'] + f['non2xx']}")
    for key in ("stations", "series_year", "map", f"stations_to_baseline_workers{MORE_WORKERS}"):
        name = key if "_to_" in key else f"{key}_to_baseline"
        print(f"ratio_{name}: {result[f'ratio_{name}']:.3f}")
    render = result.get("map_render", {})
    if "median_s" in render:
        print(f"map_render_median_s: {render['median_s']:.3f}")
        print(f"map_render_max_s: {render['max_s']:.3f}")
    for name, ok in result["targets_met"].items():
        print(f"target_{name}: {'met' if ok else 'not met'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=1, choices=(1, 4, 16))
    parser.add_argument("--smoke", action="store_true", help="tiny registry, a second per load")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per endpoint")
    parser.add_argument("--generator", choices=("wrk", "python"), default=None)
    parser.add_argument("--browser-runs", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="where the JSON results go")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a database this benchmark already filled (no generation)",
    )
    parser.add_argument(
        "--serve-baseline", nargs="+", metavar="PORT PAYLOAD [WORKERS]", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_baseline:
        port, payloads, *workers = args.serve_baseline
        serve_baseline(int(port), Path(payloads), int(workers[0]) if workers else 1)
        return
    vol = Volume.smoke() if args.smoke else Volume(scale=args.scale)
    generator = args.generator or ("python" if args.smoke or not shutil.which("wrk") else "wrk")
    result = run(
        vol,
        generator=generator,
        duration_s=args.duration or (0.3 if args.smoke else 10.0),
        connections=4 if args.smoke else CONNECTIONS,
        browser_runs=args.browser_runs
        if args.browser_runs is not None
        else (0 if args.smoke else 3),
        database_url=args.database_url,
    )
    output = args.output or (None if args.smoke else RESULTS / f"api-{vol.scale}.json")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1, default=str) + "\n")
    _print(result)


if __name__ == "__main__":
    main()
