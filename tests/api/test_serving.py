"""Serving a crowd cheaply and politely: small default pages a client can walk, a compact
series format, HEAD like GET, and reused responses answered before routing yet still
rate-limited."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from api.app import create_app
from api.cache import Reuse
from api.queries import DEFAULT_PAGE
from registry.loader import load_registry
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY
from tests.readings import write_minutes

WORLD = "-180,-90,180,90"


def test_pages_link_to_each_other_until_everything_is_walked(api: TestClient) -> None:
    """meta carries the total, the page count and relative next/previous links that keep the
    filters; following next from the first page yields every site once."""
    assert DEFAULT_PAGE == 100
    first = api.get("/api/v1/enterprises", params={"limit": 5, "bbox": WORLD}).json()
    found = first["meta"]["found"]
    assert found > 5
    assert first["meta"]["pages"] == -(-found // 5)
    assert first["meta"]["previous"] is None
    seen = [f["id"] for f in first["features"]]
    doc = first
    while doc["meta"]["next"] is not None:
        link = doc["meta"]["next"]
        assert link.startswith("/api/v1/enterprises?") and "bbox=" in link
        doc = api.get(link).json()
        assert doc["meta"]["previous"] is not None
        seen += [f["id"] for f in doc["features"]]
    assert len(seen) == len(set(seen)) == found
    everything = api.get("/api/v1/enterprises", params={"bbox": WORLD}).json()
    assert everything["meta"] | {"next": None} == everything["meta"]  # one page holds them
    assert [f["id"] for f in everything["features"]] == seen


def test_columns_carry_the_same_values_as_objects(api: TestClient, database_url: str) -> None:
    """format=columns gives each field as an array in time order, the same values as the
    default objects; fields narrows either shape; an unknown field is a 422 naming it."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for h in range(2):
        write_minutes(
            database_url, "cems-lc-tpn-u1", hour + timedelta(hours=h), {"so2": (20.0 + h, "mg/m3")}
        )
    path = "/api/v1/sites/lc-tpn-u1/readings"
    query = {"pollutant": "so2", "interval": "hour"}
    objects = api.get(path, params=query).json()
    columns = api.get(path, params=query | {"format": "columns"}).json()
    assert objects["count"] == columns["count"] == 2
    assert "data" not in columns and "columns" not in objects
    assert list(columns["columns"]) == list(objects["data"][0])
    for name, values in columns["columns"].items():
        assert values == [point[name] for point in objects["data"]], name
    assert columns["columns"]["mean"] == [20.0, 21.0]

    narrow = api.get(path, params=query | {"format": "columns", "fields": "n_valid,mean"}).json()
    assert narrow["columns"] == {k: columns["columns"][k] for k in ("time", "mean", "n_valid")}
    narrow_objects = api.get(path, params=query | {"fields": "mean"}).json()
    assert narrow_objects["data"] == [
        {"time": p["time"], "mean": p["mean"]} for p in objects["data"]
    ]

    bad = api.get(path, params=query | {"fields": "mean,colour"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "colour" in bad.text
    assert api.get(path, params=query | {"format": "arrays"}).status_code == 422


@pytest.mark.parametrize(
    "path",
    ["/api/v1/stations", "/api/v1/districts", "/map", "/healthz", "/static/leaflet/leaflet-src.js"],
)
def test_head_is_get_without_the_body(api: TestClient, path: str) -> None:
    """HEAD answers with GET's status and headers (length, type, ETag) and no body."""
    got = api.get(path, headers={"Accept-Encoding": "identity"})
    head = api.head(path, headers={"Accept-Encoding": "identity"})
    assert head.status_code == got.status_code
    assert head.content == b""
    for name in ("content-type", "content-length", "etag"):
        assert head.headers.get(name) == got.headers.get(name), name


def test_head_of_what_does_not_exist_or_takes_no_get(api: TestClient) -> None:
    """HEAD of an unknown site is GET's 404; of a POST-only resource, 405 — both bodiless."""
    missing = api.head("/api/v1/enterprises/nobody")
    assert missing.status_code == 404
    assert missing.content == b""
    post_only = api.head("/api/v1/subscriptions")
    assert post_only.status_code == 405
    assert post_only.content == b""


def vary(response: Response) -> set[str]:
    return {token.strip().lower() for token in response.headers["vary"].split(",")}


def test_reused_responses_keep_etags_gzip_and_the_rate_limit(database_url: str) -> None:
    """A response answered from reuse before routing still says its ETag and max-age, is 304
    on a match, is gzipped for who asks, and counts against the client's rate limit."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    settings = Settings(database_url=database_url, api_rate_limit_per_minute=7)
    with TestClient(create_app(settings)) as api:
        first = api.get("/api/v1/stations", headers={"Accept-Encoding": "identity"})
        again = api.get("/api/v1/stations", headers={"Accept-Encoding": "identity"})
        # The first was built and went through every layer; the second was answered from reuse.
        assert again.content == first.content
        for name in ("etag", "content-type", "content-length", "cache-control"):
            assert again.headers[name] == first.headers[name], name
        assert vary(again) == vary(first) == {"accept-encoding", "origin"}
        assert again.headers["cache-control"] == "public, max-age=60"
        assert again.headers["ratelimit-remaining"] == "5"
        zipped = api.get("/api/v1/stations", headers={"Accept-Encoding": "gzip"})
        zipped_again = api.get("/api/v1/stations", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == first.content  # httpx decodes it
        for name in ("etag", "content-type", "content-encoding", "content-length"):
            assert zipped_again.headers[name] == zipped.headers[name], name
        assert vary(zipped_again) == vary(zipped)
        assert zipped.headers["etag"] != first.headers["etag"]
        unchanged = api.get(
            "/api/v1/stations",
            headers={"If-None-Match": first.headers["etag"], "Accept-Encoding": "identity"},
        )
        assert unchanged.status_code == 304
        statuses = [api.get("/api/v1/stations").status_code for _ in range(3)]
        assert statuses[-1] == 429


def test_serve_answers_stale_and_rebuilds_with_the_builder_it_was_built_by() -> None:
    """What answers before routing: nothing for an unknown key; a stale value at once while
    one background rebuild, by the function that built it, replaces it."""
    calls: list[int] = []

    def build() -> int:
        calls.append(1)
        return len(calls)

    reuse = Reuse(0.3)
    assert reuse.serve("k") is None
    assert reuse.get("k", build) == 1
    assert reuse.serve("k") == 1
    time.sleep(0.4)  # past the age: what is under test is expiry itself
    assert reuse.serve("k") == 1
    deadline = time.monotonic() + 5
    while reuse.fresh("k") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reuse.fresh("k") == 2
    assert len(calls) == 2
    never = Reuse(0)
    never.get("k", build)
    assert never.serve("k") is None


def test_downloads_named_after_any_site_id_have_a_valid_header(api: TestClient) -> None:
    """A CSV download named after a site id holding control characters and quotes still gets
    a Content-Disposition an HTTP server will send: printable ASCII, the exact name
    percent-encoded (a real server refused the raw one and closed the connection)."""
    site = 'É\x10÷"x'
    r = api.get(f"/api/v1/sites/{quote(site, safe='')}/judgements", params={"format": "csv"})
    assert r.status_code == 200
    header = r.headers["content-disposition"]
    assert all(32 <= ord(c) < 127 for c in header), header
    assert header == (
        'attachment; filename="sunlight-judgements-____x.csv";'
        " filename*=UTF-8''sunlight-judgements-%C3%89%10%C3%B7%22x.csv"
    )
