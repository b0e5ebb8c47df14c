"""Reused responses built in the API's build process (api.build_process): the same bytes, ETags
and encodings as built in the serving process; errors still the serving process's problem+json;
a child that dies or hangs costs a restart, never a failed request."""

from __future__ import annotations

import gzip
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.build_process import BuildProcess
from api.cache import GZIP_MIN_BYTES, Body, Reuse
from registry.loader import load_registry
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY
from tests.readings import write_minutes

IDENTITY = {"accept-encoding": "identity"}


def _until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _builder(client: TestClient) -> BuildProcess:
    builder = client.app.state.builder  # type: ignore[attr-defined]
    assert isinstance(builder, BuildProcess)
    _until(lambda: builder.ready)
    return builder


def _client(database_url: str, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(database_url=database_url, **settings)))  # type: ignore[arg-type]


@pytest.fixture
def registry(database_url: str) -> str:
    load_registry(database_url, EXAMPLE_REGISTRY)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    write_minutes(database_url, "cems-lc-tpn-u1", hour, {"so2": (21.5, "mg/m3")})
    return database_url


@pytest.fixture
def child_and_here(registry: str) -> Iterator[tuple[TestClient, TestClient]]:
    """The API with its build process, and the API building everything itself."""
    with _client(registry) as child, _client(registry, api_build_process=False) as here:
        yield child, here


def test_the_child_builds_the_bytes_the_serving_process_would(
    child_and_here: tuple[TestClient, TestClient],
) -> None:
    """Lists and series come from the child (it answered each), byte for byte what the
    serving process builds, with the same ETag, gzip encoding (its own ETag), Vary and
    Cache-Control; HEAD is GET without the body; If-None-Match gets 304."""
    child, here = child_and_here
    builder = _builder(child)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    series = (
        "/api/v1/sites/lc-tpn-u1/readings?pollutant=so2&interval=hour"
        f"&start={(end - timedelta(days=2)).isoformat()}&end={end.isoformat()}".replace("+", "%2B")
    )
    for path in (
        "/api/v1/stations",
        "/api/v1/enterprises?limit=2",
        series,
        series + "&format=columns&fields=mean,n_valid",
    ):
        answered = builder.answered
        built = child.get(path, headers=IDENTITY)
        assert built.status_code == 200, built.text
        assert builder.answered == answered + 1, path
        ours = here.get(path, headers=IDENTITY)
        assert built.content == ours.content, path
        for name in ("etag", "content-type", "vary", "cache-control", "content-length"):
            assert built.headers[name] == ours.headers[name], (path, name)
        zipped = child.get(path, headers={"accept-encoding": "gzip"})
        if len(built.content) >= GZIP_MIN_BYTES:
            assert zipped.headers["content-encoding"] == "gzip"
            assert zipped.headers["etag"] == built.headers["etag"][:-1] + '-gz"'
        else:
            assert "content-encoding" not in zipped.headers
        assert zipped.content == built.content  # httpx decodes it
        assert builder.answered == answered + 1  # encoded by the child or here, not rebuilt
        head = child.head(path, headers=IDENTITY)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == built.headers["etag"]
        assert head.headers["content-length"] == built.headers["content-length"]
        unchanged = child.get(path, headers={**IDENTITY, "if-none-match": built.headers["etag"]})
        assert unchanged.status_code == 304
    assert b"so2" in child.get(series, headers=IDENTITY).content
    # The child compresses what it built after sending it; no request asked for gzip here.
    page = child.get("/map", headers=IDENTITY)
    assert page.status_code == 200 and "<html" in page.text
    reuse: Reuse = child.app.state.reuse  # type: ignore[attr-defined]
    _until(lambda: getattr(reuse.fresh("/map?"), "gzipped", None) is not None)
    zipped_page = child.get("/map", headers={"accept-encoding": "gzip"})
    assert zipped_page.headers["content-encoding"] == "gzip"
    assert zipped_page.content == page.content


def test_errors_are_still_problem_json(child_and_here: tuple[TestClient, TestClient]) -> None:
    """What the child cannot build is built, and refused, by the serving process: the same
    4xx problem+json as without a child."""
    child, here = child_and_here
    _builder(child)
    for path, status in (
        ("/api/v1/sites/nowhere/readings?pollutant=so2&interval=hour", 404),
        ("/api/v1/sites/lc-tpn-u1/readings?pollutant=so2&interval=hour&fields=bogus", 422),
        ("/map/popup/station/nowhere", 404),
    ):
        refused = child.get(path)
        assert refused.status_code == status, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json() == here.get(path).json()


def test_a_child_that_dies_is_replaced_and_nothing_fails(registry: str) -> None:
    """Killed mid-life, the child is started again; meanwhile requests are built here."""
    with _client(registry) as api:
        builder = _builder(api)
        assert api.get("/api/v1/stations?limit=1", headers=IDENTITY).status_code == 200
        answered, first = builder.answered, builder.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        for limit in range(2, 6):  # new keys, each built somewhere, none failing
            assert api.get(f"/api/v1/stations?limit={limit}").status_code == 200
        _until(lambda: builder.starts == 2 and builder.ready and builder.pid != first)
        again = builder.answered
        assert api.get("/api/v1/stations?limit=7", headers=IDENTITY).status_code == 200
        assert builder.answered == again + 1 >= answered + 1


def test_a_stuck_child_is_killed_and_the_build_done_here(registry: str) -> None:
    """A child that does not answer within api_build_timeout_s: the request is answered
    anyway (built here, about the timeout later), and the child replaced."""
    with _client(registry, api_build_timeout_s=1.0) as api:
        builder = _builder(api)
        stuck = builder.pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        t0 = time.monotonic()
        answered = api.get("/api/v1/enterprises?limit=3", headers=IDENTITY)
        assert answered.status_code == 200
        assert 1.0 <= time.monotonic() - t0 < 10.0
        _until(lambda: builder.starts == 2 and builder.ready and builder.pid != stuck)
        with pytest.raises(ProcessLookupError):
            os.kill(stuck, 0)  # killed, and reaped
        before = builder.answered
        assert api.get("/api/v1/enterprises?limit=4").status_code == 200
        assert builder.answered == before + 1


def test_a_new_child_serves_nothing_read_before_it_was_asked(registry: str) -> None:
    """A child warms up on the station and enterprise lists when it starts; what it read
    then is not reused: values stored after it was ready are on the first page it builds."""
    with _client(registry) as api:
        builder = _builder(api)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        write_minutes(registry, "aqms-lc-old-town", hour, {"pm25": (75.0, "ug/m3")})
        stations = api.get("/api/v1/stations", headers=IDENTITY).json()["features"]
        assert builder.answered == 1
        old_town = next(f["properties"] for f in stations if f["id"] == "lc-aq-old-town")
        assert old_town["aqi"] is not None and old_town["aqi"]["primary"] == ["pm25"]


def test_stale_responses_are_rebuilt_by_the_child(registry: str) -> None:
    """Past api_cache_seconds the stale body is served once more while the child rebuilds
    it, and the rebuilt one is served next, already gzip-encoded (swapped in with the child's
    encoding, not before)."""
    with _client(registry, api_cache_seconds=0.5) as api:
        builder = _builder(api)
        reuse: Reuse = api.app.state.reuse  # type: ignore[attr-defined]
        path = "/api/v1/stations"
        key = path + "?"  # its path and query: api.cache.response_key
        first = api.get(path, headers=IDENTITY)
        assert builder.answered == 1
        _until(lambda: reuse.fresh(key) is None)
        stale = api.get(path, headers=IDENTITY)
        assert stale.headers["etag"] == first.headers["etag"]
        _until(lambda: builder.answered == 2 and reuse.fresh(key) is not None)
        rebuilt = reuse.fresh(key)
        assert isinstance(rebuilt, Body) and len(rebuilt.content) >= GZIP_MIN_BYTES
        assert rebuilt.gzipped is not None
        assert gzip.decompress(rebuilt.gzipped) == rebuilt.content


def test_reuse_without_background_never_returns_a_stale_value() -> None:
    """What the child uses for the rows its pages are made of: past its age a value is
    rebuilt before it is returned."""
    calls = iter(range(1, 100))
    reuse = Reuse(0.2, background=False)
    assert reuse.get("k", lambda: next(calls)) == 1
    assert reuse.get("k", lambda: next(calls)) == 1
    _until(lambda: reuse.fresh("k") is None)
    assert reuse.get("k", lambda: next(calls)) == 2
    assert reuse.fresh("k") == 2
