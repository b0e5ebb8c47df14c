"""The API's own documentation as a developer opens it: Swagger UI in headless Chromium,
served by a real ``sunlight api`` process with every asset from the installed
packages (an offline machine, or a reader who asks no third party, still gets the docs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.test_map_in_chromium import CHROMIUM, browser, visit  # noqa: F401
from tests.processes import api_process

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)"
)


@pytest.fixture
def api_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with api_process(database_url, tmp_path / "api.log") as url:
        yield url


def test_api_docs_render_from_the_server_alone(
    api_url: str,
    browser: object,  # noqa: F811
) -> None:
    """Swagger UI at /docs renders the documented operations (the stations list among them)
    with no console error and no request leaving the Sunlight server."""
    page, errors, hosts = visit(browser, f"{api_url}/docs", "en")
    page.wait_for_selector(".opblock", timeout=15_000)  # type: ignore[attr-defined]
    assert "/api/v1/stations" in page.inner_text("body")  # type: ignore[attr-defined]
    assert hosts == {urlsplit(api_url).netloc}, hosts
    assert errors == []
