"""A resident reports pollution on the map in headless Chromium, in English and Chinese; an
office replies through the API; the tracking page shows the reply. Against a real ``sunlight
api`` process and database."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from PIL import Image

from domain.reports import leading_zero_bits, pow_digest
from registry.loader import load_registry
from tests.browser.test_map_in_chromium import ARGS, CHROMIUM
from tests.conftest import EXAMPLE_REGISTRY
from tests.processes import api_process
from tests.reports.helpers import token

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)"
)

DONGSHAN = (40.07, 116.47)  # (lat, lon): in Dongshan, clear of every marker
GANGKOU = (39.90, 116.45)
CONTACT = "downwind-resident@example.org"

COUNT_REPORTS = """() => {
    let n = 0;
    for (const key of Object.keys(window)) {
        const v = window[key];
        if (v instanceof L.Map) {
            v.eachLayer(l => { if (l instanceof L.CircleMarker && l.options.dashArray === "2 2") n++; });
        }
    }
    return n;
}"""
FIND_MAP = """() => {
    for (const key of Object.keys(window)) {
        if (window[key] instanceof L.Map) { return key; }
    }
    return null;
}"""


@pytest.fixture
def api_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """``sunlight api`` on a free port, with an easy proof of work so the test stays quick."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with api_process(
        database_url, tmp_path / "api.log", SUNLIGHT_REPORTS_POW_DIFFICULTY="10"
    ) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def photo_file(tmp_path: Path) -> Path:
    image = Image.new("RGB", (120, 90), (70, 70, 70))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    path = tmp_path / "smoke.jpg"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("lang", "where", "office", "reply_word"),
    [
        ("en", DONGSHAN, "lc-eeb-dongshan", "Confirmed"),
        ("zh", GANGKOU, "lc-eeb-gangkou", "已核实"),
    ],
)
def test_report_on_the_map_then_see_the_reply(
    api_server: str,
    database_url: str,
    browser: object,
    tmp_path: Path,
    lang: str,
    where: tuple[float, float],
    office: str,
    reply_word: str,
) -> None:
    """English: the place is clicked on the map, with a photo; Chinese: the browser's location
    is used. The report reaches the district's office, the tracking link opens its page, and the
    office's reply shows there; no console error, no request off the server, no contact shown."""
    lat, lon = where
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 1200, "height": 800},
        geolocation={"latitude": lat, "longitude": lon},
        permissions=["geolocation"],
        timezone_id="Asia/Shanghai" if lang == "zh" else "UTC",
    )
    page = context.new_page()
    errors: list[str] = []
    hosts: set[str] = set()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
    page.goto(f"{api_server}/map?lang={lang}", wait_until="networkidle")

    opener = page.locator(".sl-report-open")
    assert opener.inner_text() == ("举报污染" if lang == "zh" else "Report pollution")
    opener.click()
    if lang == "en":
        key = page.evaluate(FIND_MAP)
        x, y = page.evaluate(
            """([key, lat, lon]) => {
                const map = window[key];
                const p = map.latLngToContainerPoint([lat, lon]);
                const r = map.getContainer().getBoundingClientRect();
                return [r.left + p.x, r.top + p.y];
            }""",
            [key, lat, lon],
        )
        page.mouse.click(x, y)
        page.set_input_files("#sl-report-photo", str(photo_file(tmp_path)))
    else:
        page.click(".sl-report-locate")
        # Noticed an hour ago, entered in the browser's local time (UTC+8).
        local = datetime.now(UTC) + timedelta(hours=8) - timedelta(hours=1)
        page.fill("#sl-report-when", local.strftime("%Y-%m-%dT%H:%M"))
    page.wait_for_function(
        "() => document.querySelector('.sl-report-point').textContent.length > 0"
    )
    page.select_option("#sl-report-category", "smoke")
    description = "黑烟从高烟囱冒出，已持续一小时" if lang == "zh" else "Black smoke since 7 am"
    page.fill("#sl-report-description", description)
    page.fill("#sl-report-contact", CONTACT)
    page.click(".sl-report-form button[type=submit]")
    link = page.locator(".sl-report-link")
    link.wait_for(timeout=60_000)
    href = link.get_attribute("href")
    assert href is not None and href.endswith(f"?lang={lang}")
    code = href.split("/reports/")[1].split("?")[0]

    report = httpx.get(f"{api_server}/api/v1/reports/{code}", timeout=10).json()
    assert (report["regulator_id"], report["category"], report["description"]) == (
        office,
        "smoke",
        description,
    )
    assert abs(report["lat"] - lat) < 0.002 and abs(report["lon"] - lon) < 0.002
    assert (report["photo_url"] is not None) == (lang == "en")
    if lang == "zh":
        observed = datetime.fromisoformat(report["observed_at"])
        assert abs(observed - (datetime.now(UTC) - timedelta(hours=1))) < timedelta(minutes=3)
    else:
        assert report["observed_at"] is None
    answer = httpx.post(
        f"{api_server}/api/v1/regulator/reports/{report['id']}/replies",
        json={"body": f"Inspected the stack: confirmed ({lang}).", "status": "confirmed"},
        headers=token(database_url, office),
        timeout=10,
    )
    assert answer.status_code == 201, answer.text

    link.click()
    page.wait_for_load_state("networkidle")
    assert page.url == f"{api_server}{href}"
    assert page.locator(".reply-body").inner_text() == f"Inspected the stack: confirmed ({lang})."
    assert reply_word in page.locator(".status").inner_text()
    assert description in page.locator(".description").inner_text()
    assert CONTACT not in page.content()
    if lang == "en":
        assert page.locator("img.photo").evaluate("img => img.naturalWidth") == 120
    # Back on the map, the report is one of the recent reports drawn there.
    page.goto(f"{api_server}/map?lang={lang}", wait_until="networkidle")
    assert page.evaluate(COUNT_REPORTS) == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select contact from citizen_report_contacts").fetchall() == [
            (CONTACT,)
        ]
    assert errors == []
    assert hosts == {urlsplit(api_server).netloc}
    context.close()


def test_fallback_sha256_and_solver_agree_with_python(api_server: str, browser: object) -> None:
    """The page's own SHA-256 (used where WebCrypto is withheld) matches hashlib on one- and
    two-block messages, and its solver's answer passes the server's check."""
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{api_server}/map", wait_until="networkidle")
    for text in ("", "abc", "nonce:12345", "x" * 55, "y" * 56, "長い" * 40):
        got = page.evaluate(
            """(s) => Array.from(window.sunlight_report.sha256(new TextEncoder().encode(s)))
                .map(b => b.toString(16).padStart(2, '0')).join('')""",
            text,
        )
        assert got == hashlib.sha256(text.encode()).hexdigest(), text
    for use_subtle in (False, True):
        solution = page.evaluate(
            "([n, d, s]) => window.sunlight_report.solve(n, d, s)", ["abc-nonce", 12, use_subtle]
        )
        assert leading_zero_bits(pow_digest("abc-nonce", solution)) >= 12
