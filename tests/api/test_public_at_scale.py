"""What keeps the public endpoints cheap for a crowd: responses built once and reused (with
their ETag and gzip encoding), and a large map that fetches each popup when it is opened."""

from __future__ import annotations

import gzip
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.cache import Body, Reuse
from api.routers import map as map_router
from maps.builder import build_map, popup_data
from tests.maps.test_builder import DISTRICTS, ENTERPRISES, STATIONS, _json_values


def test_reuse_builds_once_then_serves_stale_while_one_rebuild_runs() -> None:
    """A fresh value is reused; past its age the old value is served at once while a single
    background rebuild replaces it; ttl 0 builds every time."""
    calls: list[int] = []
    release = threading.Event()

    def build() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(5)
        return len(calls)

    reuse = Reuse(0.5)  # long enough that a busy machine still calls twice within it
    assert reuse.get("k", build) == 1
    assert reuse.get("k", build) == 1
    assert reuse.fresh("k") == 1
    time.sleep(0.6)  # past the age: what is under test is expiry itself
    assert reuse.fresh("k") is None
    # Stale: both callers get the old value; only one rebuild starts.
    assert reuse.get("k", build) == 1
    assert reuse.get("k", build) == 1
    release.set()
    deadline = time.monotonic() + 5
    while reuse.fresh("k") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reuse.fresh("k") == 2
    assert len(calls) == 2

    never = Reuse(0)
    assert [never.get("k", lambda: len(calls)) for _ in range(2)] == [2, 2]
    calls.append(1)
    assert never.get("k", lambda: len(calls)) == 3


def test_reuse_is_bounded_least_recently_used_first() -> None:
    """Past max_entries the least recently used key is evicted."""
    reuse = Reuse(60, max_entries=2)
    for key in ("a", "b"):
        reuse.get(key, lambda key=key: key)
    reuse.get("a", lambda: "a")  # a is now the most recently used
    reuse.get("c", lambda: "c")
    assert reuse.fresh("a") == "a"
    assert reuse.fresh("b") is None
    assert reuse.fresh("c") == "c"


def test_large_map_carries_popup_urls_and_popup_data_matches_inline() -> None:
    """With popup_url the page holds each site's URL instead of its popup; popup_data gives
    the very popup an inline page would carry."""
    inline = build_map(STATIONS, ENTERPRISES, DISTRICTS, enterprise_url="/e/{id}")
    lazy = build_map(
        STATIONS, ENTERPRISES, DISTRICTS, enterprise_url="/e/{id}", popup_url="/pop/{kind}/{id}"
    )

    def points(page: str) -> list[dict[str, Any]]:
        collections = [v for v in _json_values(page) if isinstance(v, dict) and "features" in v]
        return [
            f["properties"]
            for c in collections
            for f in c["features"]
            if f["geometry"]["type"] == "Point"
        ]

    inline_points, lazy_points = points(inline), points(lazy)
    assert [p["q"] for p in lazy_points] == [
        "/pop/station/st-1",
        "/pop/station/st-2",
        "/pop/enterprise/e-1",
    ]
    assert not any("p" in p for p in lazy_points)
    # Same tooltips, colours and no-data marks as the inline page.
    assert [{k: v for k, v in p.items() if k != "q"} for p in lazy_points] == [
        {k: v for k, v in p.items() if k != "p"} for p in inline_points
    ]
    for kind, feature, inline_props in (
        ("station", STATIONS["features"][0], inline_points[0]),
        ("enterprise", ENTERPRISES["features"][0], inline_points[2]),
    ):
        assert popup_data(kind, feature, DISTRICTS, enterprise_url="/e/{id}") == inline_props["p"]
    # The pollutant names the fetched popups show are still on the page.
    (words,) = [v for v in _json_values(lazy) if isinstance(v, dict) and "names" in v]
    assert set(words["names"]) == {"pm25", "so2"}
    with pytest.raises(ValueError, match="kind"):
        popup_data("outlet", STATIONS["features"][0], DISTRICTS)


def test_lists_answer_from_one_build_with_etag_and_gzip(api: TestClient) -> None:
    """The stations list is served from its built body: a strong ETag (304 when the client has
    it), and the same bytes gzip-encoded, with their own ETag, for clients that accept it."""
    plain = api.get("/api/v1/stations", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    etag = plain.headers["etag"]
    again = api.get(
        "/api/v1/stations", headers={"accept-encoding": "identity", "if-none-match": etag}
    )
    assert again.status_code == 304
    zipped = api.get("/api/v1/stations", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["etag"] != etag
    assert zipped.content == plain.content  # httpx decodes it
    assert plain.json()["type"] == "FeatureCollection"
    body = Body.of(plain.content, "application/json")
    assert body.gzipped is None  # made only when a client asks for it
    assert gzip.decompress(body.compress()) == plain.content
    assert body.compress() is body.gzipped


def test_large_map_fetches_popups_from_the_api(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past INLINE_POPUPS_UP_TO sites the map links each popup; the popup endpoint answers it
    (the enterprise's outlets by id, its page linked), and 404 for an unknown site."""
    inline = api.get("/map").text
    assert "{&#x27;id" not in inline  # outlets are listed by id, not as Python reprs
    monkeypatch.setattr(map_router, "INLINE_POPUPS_UP_TO", 0)
    # The patched limit is this process's: built here, not by the app's build process.
    monkeypatch.setattr(api.app.state, "builder", None)
    page = api.get("/map", params={"lang": "zh"}).text
    assert "/map/popup/enterprise/lc-ent-tp-north?lang=zh" in page
    popup = api.get("/map/popup/enterprise/lc-ent-tp-north", params={"lang": "zh"}).json()
    assert "/enterprises/lc-ent-tp-north?lang=zh" in popup["h"]
    assert [s["o"] for s in popup["g"]] == ["lc-tpn-u1", "lc-tpn-u2"]
    station = api.get("/map/popup/station/lc-aq-old-town").json()
    assert station["h"]
    missing = api.get("/map/popup/station/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
