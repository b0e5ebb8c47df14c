"""The accountability pages as a person sees them: in headless Chromium (Debian's ``chromium``,
driven by Playwright), served by a real ``sunlight api`` process over the crafted record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.accountability.conftest import record
from tests.browser.test_map_in_chromium import CHROMIUM, browser, visit  # noqa: F401
from tests.processes import api_process

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)"
)


@pytest.fixture
def api_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The API alone (no broker needed) over the crafted episodes and reports."""
    record(database_url)
    with api_process(database_url, tmp_path / "api.log") as url:
        yield url


@pytest.mark.parametrize(
    ("lang", "title", "office", "figures"),
    [
        ("en", "How regulators answer", "Lumen City EEB, Gangkou Branch", "25 min / 72 min"),
        ("zh", "监管部门履职记录", "明光市生态环境局港口分局", "25 分钟 / 72 分钟"),
    ],
    ids=["en", "zh"],
)
def test_accountability_pages_render(
    api_url: str,
    browser: object,  # noqa: F811
    lang: str,
    title: str,
    office: str,
    figures: str,
) -> None:
    """The comparison table shows every office with its figures and bars; following an
    office's link opens its page with its own and nothing else; no console error, and no
    request leaves the server."""
    page, errors, hosts = visit(browser, f"{api_url}/regulators", lang)
    assert page.locator("h1").inner_text() == title  # type: ignore[attr-defined]
    rows = page.locator("#offices tbody tr")  # type: ignore[attr-defined]
    assert rows.count() == 6
    gangkou = page.locator('tr[data-office="lc-eeb-gangkou"]')  # type: ignore[attr-defined]
    assert figures in gangkou.inner_text()
    bar = gangkou.locator(".bar").first
    assert bar.bounding_box()["width"] == pytest.approx(36, abs=1)  # 60 % of 60 px
    gangkou.locator("a").first.click()
    page.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
    assert page.locator("h1").inner_text() == office  # type: ignore[attr-defined]
    assert page.locator("#own tbody tr").count() == 8  # type: ignore[attr-defined]
    assert page.locator("#subtree").count() == 0  # type: ignore[attr-defined]
    assert errors == []
    assert hosts == {urlsplit(api_url).netloc}
