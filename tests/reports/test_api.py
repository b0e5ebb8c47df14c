"""Citizen reports through the API on a real database: routing, privacy, photos, spam controls,
replies on the record and the time to first reply."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from registry.loader import load_registry
from sunlight.brokers import wait_until
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY
from tests.reports.helpers import CONTACT, jpeg_with_exif, solved, submit, token


def make_client(database_url: str, **overrides: object) -> TestClient:
    settings = Settings(database_url=database_url, reports_pow_difficulty=6, **overrides)  # type: ignore[arg-type]
    return TestClient(create_app(settings))


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    load_registry(database_url, EXAMPLE_REGISTRY)
    with make_client(database_url, reports_rate_limit_per_hour=100) as client:
        yield client


@pytest.mark.parametrize(
    ("lon", "lat", "district", "office", "minutes"),
    [
        (116.30, 40.02, "lc-beiling", "lc-eeb-beiling", 120),
        (116.50, 40.03, "lc-dongshan", "lc-eeb-dongshan", 120),
        (116.30, 39.88, "lc-nanhe", "lc-eeb-nanhe", 120),
        (116.50, 39.88, "lc-gangkou", "lc-eeb-gangkou", 60),
        (115.90, 39.50, None, "aurora-deeb", 1440),
    ],
)
def test_report_goes_to_the_office_of_its_district(
    api: TestClient, lon: float, lat: float, district: str | None, office: str, minutes: int
) -> None:
    """Each district's point goes to its branch with its deadline; outside every district, to
    the top office."""
    answer = submit(api, lon=lon, lat=lat)
    assert answer.status_code == 201, answer.text
    report = answer.json()
    assert (report["district_id"], report["regulator_id"]) == (district, office)
    received = datetime.fromisoformat(report["received_at"])
    assert datetime.fromisoformat(report["due_at"]) - received == timedelta(minutes=minutes)
    assert report["page_url"] == f"/reports/{report['tracking_code']}"
    assert len(report["tracking_code"]) >= 22


def test_contact_is_never_public(api: TestClient, database_url: str) -> None:
    """The contact reaches the office's authenticated view and no public response."""
    report = submit(api, contact=CONTACT, photo=jpeg_with_exif()).json()
    assert CONTACT not in str(report)
    code = report["tracking_code"]
    public = [
        api.get(f"/api/v1/reports/{code}"),
        api.get("/api/v1/reports"),
        api.get("/api/v1/reports", params={"format": "csv"}),
        api.get(f"/reports/{code}"),
        api.get(f"/reports/{code}", params={"lang": "zh"}),
        api.get(f"/api/v1/reports/{code}/photo"),
        api.get("/map"),
    ]
    for response in public:
        assert response.status_code == 200, response.url
        assert CONTACT.encode() not in response.content, response.url
    office = api.get("/api/v1/regulator/reports", headers=token(database_url, "lc-eeb-dongshan"))
    assert [r["contact"] for r in office.json()["results"]] == [CONTACT]
    # Public coordinates are rounded to about 100 m; the office sees the exact point.
    exact = submit(api, lon=116.512345, lat=40.031234).json()
    assert (exact["lon"], exact["lat"]) == (116.512, 40.031)


def test_photo_limits_and_metadata(database_url: str) -> None:
    """A photo over the size limit is refused (413), a non-image too (415); an accepted photo
    is served re-encoded with none of its EXIF (camera, GPS)."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with make_client(database_url, reports_photo_max_bytes=20_000) as api:
        big = io.BytesIO()
        Image.effect_noise((400, 400), 100).convert("RGB").save(big, format="PNG")
        assert len(big.getvalue()) > 20_000
        too_big = submit(api, photo=big.getvalue())
        assert too_big.status_code == 413
        assert "20000 bytes" in too_big.json()["detail"]
        not_image = submit(api, photo=b"#!/bin/sh\necho this is not a photo\n" * 10)
        assert not_image.status_code == 415
        assert not_image.headers["content-type"] == "application/problem+json"
        original = jpeg_with_exif()
        assert b"SpyCam" in original
        report = submit(api, photo=original).json()
        served = api.get(report["photo_url"])
        assert served.headers["content-type"] == "image/jpeg"
        assert b"SpyCam" not in served.content and b"Exif" not in served.content
        image = Image.open(io.BytesIO(served.content))
        assert dict(image.getexif()) == {}
        assert image.size == (64, 48)
        # Refused photos left nothing behind: only the accepted report exists.
        assert api.get("/api/v1/reports").json()["meta"]["found"] == 1
        with psycopg.connect(database_url) as conn:
            assert conn.execute("select count(*) from citizen_reports").fetchone() == (1,)


def test_proof_of_work_wrong_unknown_or_reused(api: TestClient) -> None:
    """A wrong solution and an unknown challenge are refused (422), a reused one too (409)."""
    proof = solved(api)
    wrong = {**proof, "solution": proof["solution"] + "x"}
    # A wrong solution might solve it by chance; find one that does not.
    from domain.reports import leading_zero_bits, pow_digest

    while leading_zero_bits(pow_digest(wrong["challenge"], wrong["solution"])) >= 6:
        wrong["solution"] += "x"
    assert submit(api, proof=wrong).status_code == 422
    assert submit(api, proof={**proof, "challenge": "made-up"}).status_code == 422
    assert submit(api, proof=proof).status_code == 201
    reused = submit(api, proof=proof)
    assert reused.status_code == 409
    assert "already used" in reused.json()["detail"]


def test_submissions_are_rate_limited(database_url: str) -> None:
    """Beyond the hourly allowance per address, a report is refused with 429; reads go on."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with make_client(database_url, reports_rate_limit_per_hour=2) as api:
        assert submit(api).status_code == 201
        assert submit(api).status_code == 201
        third = submit(api)
        assert third.status_code == 429
        assert "2 reports per hour" in third.json()["detail"]
        assert 1 <= int(third.headers["Retry-After"]) <= 1800  # a token back in half an hour
        assert third.headers["content-type"] == "application/problem+json"
        assert api.get("/api/v1/reports").status_code == 200


def test_bad_input_is_a_clear_4xx(api: TestClient) -> None:
    """Unknown category, missing description, out-of-range point: 422 problem+json."""
    for change in (
        {"category": "aliens"},
        {"description": "  "},
        {"lat": 123.0},
    ):
        form = {"lon": 116.5, "lat": 40.0, "category": "smoke", "description": "smoke"}
        form.update(change)  # type: ignore[arg-type]
        answer = api.post("/api/v1/reports", data={**form, **solved(api)})
        assert answer.status_code == 422, (change, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert api.get("/api/v1/reports/nope").status_code == 404
    assert api.get("/api/v1/reports", params={"bbox": "1,2"}).status_code == 422


def test_replies_are_public_and_scoped(api: TestClient, database_url: str) -> None:
    """Only offices over the report's district reply; the reply and status are public, and the
    first reply is timed against the deadline."""
    report = submit(api, lon=116.50, lat=40.03).json()  # Dongshan
    path = f"/api/v1/regulator/reports/{report['id']}/replies"
    nanhe = token(database_url, "lc-eeb-nanhe")
    assert api.post(path, json={"body": "not ours"}, headers=nanhe).status_code == 403
    assert api.get("/api/v1/regulator/reports", headers=nanhe).json()["meta"]["found"] == 0
    assert api.post(path, json={"body": "x"}).status_code == 401
    dongshan = token(database_url, "lc-eeb-dongshan")
    bad = api.post(path, json={"body": "x", "status": "merged"}, headers=dongshan)
    assert bad.status_code == 422
    first = api.post(path, json={"body": "Inspector on the way."}, headers=dongshan)
    assert first.status_code == 201, first.text
    city = token(database_url, "lc-eeb")
    closed = api.post(
        path,
        json={
            "body": "Stack emissions confirmed; the plant was ordered to stop unit 1.",
            "status": "confirmed",
        },
        headers=city,
    )
    assert closed.status_code == 201
    doc = api.get(f"/api/v1/reports/{report['tracking_code']}").json()
    assert [(r["regulator_id"], r["body"], r["status"]) for r in doc["replies"]] == [
        ("lc-eeb-dongshan", "Inspector on the way.", None),
        (
            "lc-eeb",
            "Stack emissions confirmed; the plant was ordered to stop unit 1.",
            "confirmed",
        ),
    ]
    assert doc["status"] == "confirmed" and doc["closed_at"] is not None
    assert doc["answered_within_deadline"] is True
    assert 0 <= doc["seconds_to_first_reply"] < 60
    assert doc["overdue"] is False
    listed = api.get("/api/v1/reports", params={"status": "confirmed"}).json()
    assert [f["id"] for f in listed["features"]] == [report["tracking_code"]]


def test_merge_needs_an_episode_in_jurisdiction(api: TestClient, database_url: str) -> None:
    """A report merges only into an episode the office may act on."""
    with psycopg.connect(database_url) as conn:
        ids = {}
        for site, office in (("lc-tpn-u1", "lc-eeb-dongshan"), ("lc-tpg-u1", "lc-eeb-gangkou")):
            row = conn.execute(
                "insert into episodes (kind, site_id, pollutant, period, regulator_id, status,"
                " first_start, last_end) values ('exceedance', %s, 'so2', 'hour', %s, 'notified',"
                " now() - interval '2 hours', now()) returning id",
                (site, office),
            ).fetchone()
            assert row is not None
            ids[office] = row[0]
    report = submit(api, lon=116.50, lat=40.03).json()
    path = f"/api/v1/regulator/reports/{report['id']}/replies"
    dongshan = token(database_url, "lc-eeb-dongshan")
    other = {"body": "same", "status": "merged", "episode_id": ids["lc-eeb-gangkou"]}
    assert api.post(path, json=other, headers=dongshan).status_code == 403
    own = {
        "body": "Part of the SO2 episode",
        "status": "merged",
        "episode_id": ids["lc-eeb-dongshan"],
    }
    answer = api.post(path, json=own, headers=dongshan)
    assert answer.status_code == 201
    assert (answer.json()["status"], answer.json()["episode_id"]) == (
        "merged",
        ids["lc-eeb-dongshan"],
    )
    timeline = api.get(f"/api/v1/episodes/{ids['lc-eeb-dongshan']}").json()["timeline"]
    assert [(e["kind"], e["regulator_id"]) for e in timeline] == [
        ("citizen_report_merged", "lc-eeb-dongshan")
    ]


def test_late_first_reply_is_measured(api: TestClient, database_url: str) -> None:
    """A report answered after its deadline shows as answered late; an unanswered one past its
    deadline shows as overdue."""
    from store import reports as store

    with psycopg.connect(database_url) as conn:
        old = store.create_report(
            conn,
            lon=116.50,
            lat=39.88,
            category="odour",
            description="Chemical smell near the port",
            observed_at=None,
            contact=None,
            photo=None,
            received_at=datetime.now(UTC) - timedelta(hours=3),
        )
    doc = api.get(f"/api/v1/reports/{old['tracking_code']}").json()
    assert doc["overdue"] is True and doc["answered_within_deadline"] is None
    gangkou = token(database_url, "lc-eeb-gangkou")
    api.post(
        f"/api/v1/regulator/reports/{old['id']}/replies",
        json={"body": "Sorry for the delay", "status": "unfounded"},
        headers=gangkou,
    )
    doc = api.get(f"/api/v1/reports/{old['tracking_code']}").json()
    assert doc["answered_within_deadline"] is False and doc["overdue"] is False
    assert doc["seconds_to_first_reply"] == pytest.approx(3 * 3600, abs=60)


def test_evidence_names_nearby_enterprises_and_stations(api: TestClient, database_url: str) -> None:
    """The report shows the nearest stations' hourly means at the time and the enterprises
    within the radius, nearest first, with status and open episodes."""
    from alerts.service import Engine
    from tests.alerts.test_scenario import Clock
    from tests.readings import write_minutes

    # The data is for the last full hour: do not let the hour turn while the test runs.
    wait_until(lambda: datetime.now(UTC).minute < 58, 150, "the hour not to turn mid-test")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    write_minutes(database_url, "cems-lc-tpn-u1", hour, {"so2": (90.0, "mg/m3"), "o2": (6.0, "%")})
    write_minutes(database_url, "aqms-lc-old-town", hour, {"pm25": (75.0, "ug/m3")})
    settings = Settings(database_url=database_url, alerts_backfill_hours=3, alerts_grace_minutes=0)
    Engine(settings, Clock()).judge_hours()
    report = submit(api, lon=116.545, lat=40.025).json()  # beside the North thermal plant
    evidence = api.get(f"/api/v1/reports/{report['tracking_code']}").json()["evidence"]
    plant = evidence["enterprises"][0]
    assert plant["id"] == "lc-ent-tp-north"
    assert plant["compliance"]["status"] == "exceeding"
    assert [e["pollutant"] for e in plant["episodes"]] == ["so2"]
    assert plant["direction"] == "SE" and plant["distance_m"] < 1000
    assert all(e["distance_m"] <= 3000 for e in evidence["enterprises"])
    assert len(evidence["stations"]) == 3
    distances = [s["distance_m"] for s in evidence["stations"]]
    assert distances == sorted(distances)
    assert evidence["stations"][0]["id"] == "lc-aq-sports-centre"
    old_town = submit(api, lon=116.30, lat=39.90).json()
    near = api.get(f"/api/v1/reports/{old_town['tracking_code']}").json()["evidence"]
    station = near["stations"][0]
    assert station["id"] == "lc-aq-old-town"
    assert [h["mean"] for h in station["hourly"]["pm25"]] == [75.0]


def test_oversized_body_is_refused_before_it_is_read(database_url: str) -> None:
    """A body far over the photo limit is refused with 413, by Content-Length or, sent in
    chunks without one, as soon as it grows past the limit."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with make_client(database_url, reports_photo_max_bytes=20_000) as api:
        boundary = "sunlightboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="x.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        declared = api.post("/api/v1/reports", content=head + b"\xff" * 200_000, headers=headers)
        assert declared.status_code == 413
        assert "20000 bytes" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the count while reading stops it
            yield head
            for _ in range(10):
                yield b"\xff" * 65_536

        streamed = api.post("/api/v1/reports", content=chunks(), headers=headers)
        assert streamed.status_code == 413
        assert "20000 bytes" in streamed.json()["detail"]


def test_list_filters(api: TestClient, database_url: str) -> None:
    """The public list filters by place (radius, bbox, district), category, status, office and
    time, pages with meta.found, and the office's list by unanswered."""
    near = submit(api, lon=116.300, lat=39.880, category="odour").json()  # Nanhe
    also_near = submit(api, lon=116.305, lat=39.882, category="smoke").json()  # ~500 m away
    far = submit(api, lon=116.50, lat=40.03, category="odour").json()  # Dongshan

    def codes(**params: object) -> list[str]:
        answer = api.get("/api/v1/reports", params=params)
        assert answer.status_code == 200, answer.text
        return [f["id"] for f in answer.json()["features"]]

    assert codes(coordinates="39.880,116.300", radius=1000) == [
        also_near["tracking_code"],
        near["tracking_code"],
    ]
    assert codes(coordinates="39.880,116.300", radius=100) == [near["tracking_code"]]
    assert codes(bbox="116.4,39.95,116.6,40.1") == [far["tracking_code"]]
    assert codes(district="lc-nanhe", category="odour") == [near["tracking_code"]]
    assert codes(regulator="lc-eeb-dongshan") == [far["tracking_code"]]
    assert codes(end="2000-01-01T00:00:00Z") == []
    assert len(codes(start="2000-01-01T00:00:00Z")) == 3
    page = api.get("/api/v1/reports", params={"limit": 2, "page": 2}).json()
    assert (page["meta"]["found"], [f["id"] for f in page["features"]]) == (
        3,
        [near["tracking_code"]],
    )
    assert api.get("/api/v1/reports", params={"radius": 100}).status_code == 422
    assert api.get("/api/v1/reports", params={"status": "lost"}).status_code == 422
    nanhe = token(database_url, "lc-eeb-nanhe")
    api.post(
        f"/api/v1/regulator/reports/{near['id']}/replies", json={"body": "seen"}, headers=nanhe
    )
    mine = api.get("/api/v1/regulator/reports", params={"unanswered": True}, headers=nanhe)
    assert [r["id"] for r in mine.json()["results"]] == [also_near["id"]]
    assert mine.json()["results"][0]["lon"] == 116.305  # the office sees the exact point
