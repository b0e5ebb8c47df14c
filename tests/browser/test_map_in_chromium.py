"""The map and an enterprise page as a person sees them: in headless Chromium (Debian's
``chromium``, driven by Playwright), against running Sunlight processes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

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
