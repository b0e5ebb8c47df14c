"""What the public sees: stations with their AQI, enterprises with their compliance status,
and the map coloured by both."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from alerts.service import Engine
from domain.pollutants import Medium, get_pollutant, to_canonical
from sunlight.settings import Settings
from tests.alerts.test_scenario import Clock
from tests.readings import write_minutes

write = write_minutes


def test_station_aqi_and_enterprise_status(api: TestClient, database_url: str) -> None:
    """A station's last valid hour gives its HJ 633 AQI and colour; an outlet over its limit
    makes its enterprise 'exceeding' (red on the map); others show no judgement yet."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    write(database_url, "aqms-lc-old-town", hour, {"pm25": (75.0, "ug/m3"), "no2": (50.0, "ug/m3")})
    write(database_url, "cems-lc-tpn-u1", hour, {"so2": (90.0, "mg/m3"), "o2": (6.0, "%")})
    Engine(Settings(database_url=database_url, alerts_backfill_hours=3), Clock()).judge_hours()

    stations = {f["id"]: f["properties"] for f in api.get("/api/v1/stations").json()["features"]}
    aqi = stations["lc-aq-old-town"]["aqi"]
    assert (aqi["aqi"], aqi["category_zh"], aqi["colour"], aqi["primary"]) == (
        100,
        "良",
        "#FFFF00",
        ["pm25"],
    )
    assert stations["lc-aq-riverside"]["aqi"] is None

    enterprises = {
        f["id"]: f["properties"] for f in api.get("/api/v1/enterprises").json()["features"]
    }
    plant = enterprises["lc-ent-tp-north"]["compliance"]
    assert plant["status"] == "exceeding"
    assert plant["open_episodes"] == 1
    assert plant["exceedance_periods_30d"] == 1
    assert enterprises["lc-ent-wwtp-nanhe"]["compliance"]["status"] == "no_data"

    page = api.get("/map").text
    assert '"c": "#d7301f"' in page  # the exceeding enterprise is red
    assert "/enterprises/lc-ent-tp-north?lang=en" in page  # its popup links to its page
    # Districts shaded by exceedance hours: Dongshan (1 h) darkest, the others lightest.
    assert page.count('"c": "#bd0026"') == 1
    assert page.count('"c": "#ffffb2"') == 3
    plain = api.get("/map", params={"measure": "none"}).text
    assert '"c": "#bd0026"' not in plain
    assert api.get("/map", params={"measure": "votes"}).status_code == 422
    assert '"c": "#FFFF00"' in page  # the station in its AQI colour
    # Labels reach the page as JSON strings (escaped), like every text from the data.
    assert json.dumps("正在超标")[1:-1] in api.get("/map", params={"lang": "zh"}).text


def test_daily_series_export_and_district_summary(api: TestClient, database_url: str) -> None:
    """Daily means carry coverage; a time range exports as streamed CSV; districts compare."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    write(database_url, "cems-lc-tpn-u1", hour, {"so2": (90.0, "mg/m3"), "o2": (6.0, "%")})
    Engine(Settings(database_url=database_url, alerts_backfill_hours=3), Clock()).judge_hours()

    day = api.get(
        "/api/v1/sites/lc-tpn-u1/readings", params={"pollutant": "so2", "interval": "day"}
    ).json()
    (only,) = day["data"]
    assert (only["mean"], only["valid_hours"], only["expected_hours"], only["valid"]) == (
        90.0,
        1,
        24,
        False,
    )

    start = (hour - timedelta(hours=1)).isoformat()
    end = (hour + timedelta(hours=2)).isoformat()
    export = api.get("/api/v1/sites/lc-tpn-u1/readings.csv", params={"start": start, "end": end})
    assert export.status_code == 200
    lines = export.text.splitlines()
    assert lines[1] == "time,site,pollutant,period,value,unit,flag"
    assert len(lines) == 2 + 120
    assert lines[2].endswith(",lc-tpn-u1,o2,minute,6.0,%,N")
    bad = api.get("/api/v1/sites/lc-tpn-u1/readings.csv", params={"start": end, "end": start})
    assert bad.status_code == 422

    summary = {r["district"]: r for r in api.get("/api/v1/districts/summary").json()["results"]}
    dongshan = summary["lc-dongshan"]
    assert (dongshan["exceedance_hours"], dongshan["open_episodes"], dongshan["episodes"]) == (
        1,
        1,
        1,
    )
    assert dongshan["median_minutes_to_acknowledge"] is None  # nobody acknowledged yet
    assert summary["lc-nanhe"]["exceedance_hours"] == 0
    assert summary["lc-nanhe"]["aqi_max"] is None  # no station reported a valid hour


def test_enterprise_detail_and_page(api: TestClient, database_url: str) -> None:
    """The enterprise detail lists outlets, limits, judged hours and episodes; its page charts
    each outlet's hourly means against the limit, in both languages, with nothing external."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    write(database_url, "cems-lc-tpn-u1", hour, {"so2": (90.0, "mg/m3"), "o2": (6.0, "%")})
    Engine(Settings(database_url=database_url, alerts_backfill_hours=3), Clock()).judge_hours()
    doc = api.get("/api/v1/enterprises/lc-ent-tp-north").json()
    assert [o["id"] for o in doc["outlets"]] == ["lc-tpn-u1", "lc-tpn-u2"]
    assert {lim["pollutant"] for lim in doc["outlets"][0]["limits"]} == {"pm", "so2", "nox"}
    with psycopg.connect(database_url) as conn:
        (judged,) = conn.execute(
            "select count(*) from judgements j join outlets o on o.id = j.site_id"
            " where o.enterprise_id = 'lc-ent-tp-north'"
        ).fetchone()  # type: ignore[misc]
    assert len(doc["judgements"]) == judged > 0  # every judged period of every outlet
    exceed = [j for j in doc["judgements"] if j["verdict"] == "exceedance"]
    assert [(j["outlet"], j["pollutant"], j["mean"], j["limit_value"]) for j in exceed] == [
        ("lc-tpn-u1", "so2", 90.0, 35.0)
    ]
    assert doc["episodes"][0]["status"] == "open"
    assert api.get("/api/v1/enterprises/nope").status_code == 404
    page = api.get("/enterprises/lc-ent-tp-north").text
    assert "<svg" in page and "limit 35 mg/m3" in page
    assert "#d7301f" in page  # the exceedance hour in red
    assert "http://" not in page and "https://" not in page
    zh = api.get("/enterprises/lc-ent-tp-north", params={"lang": "zh"}).text
    assert "明光北郊热电有限公司" in zh and "限值" in zh


def test_station_us_epa_aqi_uses_nowcast(api: TestClient, database_url: str) -> None:
    """Twelve hours of PM2.5 at 10 µg/m³ give a NowCast of 10.0 and a US EPA AQI of 53."""
    latest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    write(
        database_url,
        "aqms-lc-riverside",
        latest - timedelta(hours=11),
        {"pm25": (10.0, "ug/m3")},
        minutes=720,
    )
    stations = {f["id"]: f["properties"] for f in api.get("/api/v1/stations").json()["features"]}
    us = stations["lc-aq-riverside"]["aqi_us"]
    assert (us["aqi"], us["category"], us["primary"]) == (53, "Moderate", ["pm25"])
    assert stations["lc-aq-riverside"]["aqi"]["aqi"] == 15  # HJ 633: 10 µg/m³ → ceil(10 × 50/35)
    district = stations["lc-aq-riverside"]["district"]
    summary = {r["district"]: r for r in api.get("/api/v1/districts/summary").json()["results"]}
    assert (summary[district]["aqi_max"], summary[district]["stations_reporting"]) == (15, 1)


def test_station_us_epa_aqi_rates_ozone_on_its_8_hour_mean_in_the_ppb_sent(
    api: TestClient, database_url: str
) -> None:
    """A station sending ozone in ppb: eight hours at 70 ppb are EPA's worked example O3 8 h
    0.070 ppm → 100 (stored as µg/m³ at 25 °C and converted back, nothing lost on the way), and
    1 h ozone, below EPA's 0.125 ppm, does not hide it."""
    latest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    value, unit = to_canonical(get_pollutant("o3"), Medium.AMBIENT, 70.0, "ppb")
    write(
        database_url, "aqms-lc-riverside", latest - timedelta(hours=7), {"o3": (value, unit)}, 480
    )
    stations = {f["id"]: f["properties"] for f in api.get("/api/v1/stations").json()["features"]}
    us = stations["lc-aq-riverside"]["aqi_us"]
    assert (us["aqi"], us["category"], us["primary"]) == (100, "Moderate", ["o3"])


def test_episodes_and_judgements_download_as_csv(api: TestClient, database_url: str) -> None:
    """The public record downloads as CSV too, with the licence notice."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    write(database_url, "cems-lc-tpn-u1", hour, {"so2": (90.0, "mg/m3"), "o2": (6.0, "%")})
    Engine(Settings(database_url=database_url, alerts_backfill_hours=3), Clock()).judge_hours()
    episodes = api.get("/api/v1/episodes", params={"format": "csv"}).text.splitlines()
    assert episodes[0].startswith("# ")
    assert episodes[1].startswith("id,kind,site_id,pollutant")
    assert len(episodes) == 3
    judged = api.get(
        "/api/v1/sites/lc-tpn-u1/judgements", params={"format": "csv", "pollutant": "so2"}
    )
    rows = judged.text.splitlines()
    assert rows[1].startswith("site_id,pollutant,period,start")
    assert any(",exceedance," in r for r in rows[2:])
