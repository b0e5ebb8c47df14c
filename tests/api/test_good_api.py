"""Being a good public API: gzip, ETag and caching, CORS, rate limits, read-only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.loader import load_registry
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    load_registry(database_url, EXAMPLE_REGISTRY)
    with TestClient(
        create_app(Settings(database_url=database_url, api_rate_limit_per_minute=5))
    ) as client:
        yield client


def test_gzip_etag_and_cache(api: TestClient) -> None:
    """Lists are gzipped, carry an ETag and a public max-age; a matching If-None-Match is 304."""
    r = api.get("/api/v1/stations", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["cache-control"] == "public, max-age=60"
    etag = r.headers["etag"]
    again = api.get("/api/v1/stations", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_cors_for_browsers(api: TestClient) -> None:
    """Any origin may read the public API from a browser; the preflight allows it."""
    r = api.get("/api/v1/enterprises", headers={"Origin": "https://newsroom.example"})
    assert r.headers["access-control-allow-origin"] in ("*", "https://newsroom.example")
    pre = api.options(
        "/api/v1/stations",
        headers={"Origin": "https://newsroom.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code == 200


def test_rate_limit_with_standard_headers(api: TestClient) -> None:
    """Past the per-client limit: 429 problem+json with Retry-After and RateLimit headers."""
    statuses = []
    for _ in range(7):
        r = api.get("/api/v1/districts")
        statuses.append(r.status_code)
    assert statuses[:5] == [200] * 5
    assert statuses[-1] == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-limit"] == "5"
    assert r.headers["ratelimit-remaining"] == "0"
    assert api.get("/healthz").status_code == 200  # health checks are not rate limited


def test_public_api_is_read_only(api: TestClient) -> None:
    """Writing to a public resource is refused with a problem document, not served."""
    for method in ("post", "put", "delete", "patch"):
        r = getattr(api, method)("/api/v1/stations")
        assert r.status_code == 405, method
        assert r.headers["content-type"].startswith("application/problem+json")
