"""The map and an enterprise page as a person sees them: in headless Chromium (Debian's
``chromium``, driven by Playwright), against running Sunlight processes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.integration.test_end_to_end import services  # noqa: F401 - the fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)"
)
# Chromium as root in a container: no sandbox; no background traffic to Google's hosts.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
COUNT_MARKERS = """() => {
    let n = 0;
    for (const key of Object.keys(window)) {
        const v = window[key];
        if (v instanceof L.Map) { v.eachLayer(l => { if (l instanceof L.CircleMarker) n++; }); }
    }
    return n;
}"""


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def visit(browser: object, url: str, lang: str) -> tuple[object, list[str], set[str]]:
    page = browser.new_page(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
    errors: list[str] = []
    hosts: set[str] = set()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
    page.goto(f"{url}?lang={lang}", wait_until="networkidle")
    return page, errors, hosts


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_map_renders_offline_without_errors(services: str, browser: object, lang: str) -> None:  # noqa: F811
    """Markers for stations and enterprises and the legend render; no console error; every
    request stays on the Sunlight server."""
    page, errors, hosts = visit(browser, f"{services}/map", lang)
    assert page.evaluate(COUNT_MARKERS) >= 8  # the 8 stations at least; enterprises may cluster
    legend = page.locator(".sl-legend")
    assert legend.count() == 1
    assert ("图例" if lang == "zh" else "Legend") in legend.inner_text()
    assert errors == []
    assert hosts == {urlsplit(services).netloc}


def test_enterprise_page_shows_its_charts(
    services: str,  # noqa: F811
    database_url: str,
    browser: object,
) -> None:
    """The enterprise page loads without errors and draws one chart per outlet and limited
    pollutant (two outlets × particulate, SO2, NOx) once hours have been judged."""
    from alerts.service import Engine
    from sunlight.settings import Settings

    Engine(Settings(database_url=database_url, alerts_backfill_hours=3)).judge_hours()
    page, errors, hosts = visit(browser, f"{services}/enterprises/lc-ent-tp-north", "en")
    assert page.locator("h1").inner_text() == "Lumen North Thermal Power Co., Ltd."
    assert page.locator("svg.chart").count() == 6
    assert errors == []
    assert hosts == {urlsplit(services).netloc}


MAP_POINT = """([lat, lon]) => {
    const map = Object.values(window).find(v => v instanceof L.Map);
    const p = map.latLngToContainerPoint([lat, lon]);
    const r = map.getContainer().getBoundingClientRect();
    return [r.left + p.x, r.top + p.y];
}"""


@pytest.mark.parametrize("lazy", [False, True], ids=["inline", "fetched"])
def test_markers_open_their_own_popup_and_tooltip(browser: object, lazy: bool) -> None:
    """Each station and enterprise shows its own name on hover and its own popup (values,
    units, flags, links) on click, whether the page carries the popups or fetches each one
    once, when first opened (a large map)."""
    from maps.assets import static_dirs
    from maps.builder import build_map, popup_data
    from tests.maps.test_builder import DISTRICTS, ENTERPRISES, STATIONS

    html = build_map(
        STATIONS,
        ENTERPRISES,
        DISTRICTS,
        enterprise_url="/e/{id}",
        popup_url="/pop/{kind}/{id}" if lazy else None,
    )
    sites = {f["properties"]["id"]: f for f in (*STATIONS["features"], *ENTERPRISES["features"])}
    fetched: list[str] = []

    def serve(route: Any) -> None:
        path = urlsplit(route.request.url).path
        if path == "/map":
            route.fulfill(body=html, content_type="text/html; charset=utf-8")
        elif path.startswith("/static/"):
            sub_prefix, _, rest = path.removeprefix("/static/").partition("/")
            route.fulfill(path=static_dirs()[sub_prefix] / rest)
        elif path.startswith("/pop/"):
            fetched.append(path)
            _, _, kind, site_id = path.split("/")
            route.fulfill(
                json=popup_data(kind, sites[unquote(site_id)], DISTRICTS, enterprise_url="/e/{id}")
            )
        else:
            route.fulfill(status=404)

    page = browser.new_page(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("http://sunlight.test/**", serve)
    page.goto("http://sunlight.test/map", wait_until="networkidle")

    def open_popup(lat: float, lon: float, tooltip: str) -> Any:
        # An open popup may cover the next marker: closed first, as a reader would.
        close = page.locator(".leaflet-popup-close-button")
        if close.count():
            close.click()
            page.locator(".leaflet-popup").wait_for(state="detached", timeout=5_000)
        x, y = page.evaluate(MAP_POINT, [lat, lon])
        page.mouse.move(x, y)
        page.wait_for_function(
            "t => [...document.querySelectorAll('.leaflet-tooltip')]"
            ".some(e => e.textContent === t)",
            arg=tooltip,
            timeout=5_000,
        )
        page.mouse.click(x, y)
        content = page.locator(".leaflet-popup-content").filter(
            has=page.locator("h4", has_text=tooltip)
        )
        content.wait_for(timeout=5_000)
        return content

    station = open_popup(39.90, 116.40, 'Dongcheng <script>alert("x")</script>')
    assert station.locator("h4").inner_text() == 'Dongcheng <script>alert("x")</script>'
    text = station.inner_text()
    assert "35.2 ug/m3" in text and "D Fault" in text and "PM2.5" in text
    link = station.locator("a")
    assert link.get_attribute("href") == "/api/v1/sites/st-1/readings?interval=hour"

    enterprise = open_popup(39.80, 116.30, 'Power "Plant" & <b>Co</b>')
    title = enterprise.locator("h4 a")
    assert title.inner_text() == 'Power "Plant" & <b>Co</b>'
    assert title.get_attribute("href") == "/e/e-1"
    assert "Outlet o-1" in enterprise.inner_text()
    assert "12.35 mg/m3" in enterprise.inner_text()

    # Opened again: the station's popup is its own again, and fetched only the first time.
    again = open_popup(39.90, 116.40, 'Dongcheng <script>alert("x")</script>')
    assert "35.2 ug/m3" in again.inner_text()
    assert fetched == (["/pop/station/st-1", "/pop/enterprise/e-1"] if lazy else [])
    assert errors == []
    page.close()
