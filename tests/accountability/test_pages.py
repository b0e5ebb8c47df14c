"""The accountability pages, en and zh, rendered from the same crafted record."""

from __future__ import annotations

from fastapi.testclient import TestClient

from maps.accountability_page import duration


def test_duration_reads_like_a_person() -> None:
    """Minutes below two hours, hours below two days, then days; missing is a dash."""
    assert duration(25.0, "en") == "25 min"
    assert duration(370.0, "en") == "6.2 h"
    assert duration(4320.0, "zh") == "3.0 天"
    assert duration(None, "en") == "—"


def test_regulators_page_compares_offices(api: TestClient) -> None:
    """Every office is a row with its figures and a link to its page; period and scope links;
    the JSON and CSV behind it are linked."""
    page = api.get("/regulators").text
    assert page.count('data-office="') == 6
    gangkou = page.split('data-office="lc-eeb-gangkou"')[1].split("</tr>")[0]
    assert "25 min / 72 min" in gangkou  # to acknowledge
    assert "4.2 h / 6.2 h" in gangkou  # to resolve: 250 and 370 minutes
    assert "60% <span class=note>(3/5)</span>" in gangkou
    assert "/regulators/lc-eeb-gangkou?lang=en" in gangkou
    assert "/regulators?period=90d&amp;scope=office&amp;lang=en" in page
    assert "/api/v1/regulators?period=30d&amp;scope=office&amp;format=csv" in page
    custom = api.get("/regulators", params={"from": "2026-01-01T00:00:00Z"}).text
    assert "/api/v1/regulators?from=2026-01-01T00%3A00%3A00Z&amp;to=" in custom
    tree = api.get("/regulators", params={"scope": "subtree", "period": "30d"}).text
    city = tree.split('data-office="lc-eeb"')[1].split("</tr>")[0]
    assert "35 min / 3.2 h" in city  # 35 and 195 minutes


def test_regulators_page_in_chinese(api: TestClient) -> None:
    """zh: office names and labels in Chinese."""
    page = api.get("/regulators", params={"lang": "zh"}).text
    assert '<html lang="zh-Hans">' in page
    assert "监管部门履职记录" in page
    assert "明光市生态环境局港口分局" in page
    assert "25 分钟 / 72 分钟" in page


def test_office_page_over_periods(api: TestClient) -> None:
    """An office's page: its figures for 7, 30, 90 and 365 days; a city's also with the
    offices below it; links up and down the hierarchy."""
    page = api.get("/regulators/lc-eeb").text
    assert "<h1>Lumen City Ecology and Environment Bureau</h1>" in page
    assert 'id="own"' in page
    assert 'id="subtree"' in page
    assert "/regulators/aurora-deeb?lang=en" in page
    assert "/regulators/lc-eeb-gangkou?lang=en" in page
    district = api.get("/regulators/lc-eeb-gangkou", params={"lang": "zh"}).text
    assert 'id="subtree"' not in district
    own = district.split('id="own"')[1]
    # 30 days: 25 and 72 minutes; 90 days adds the 5-minute acknowledgement: 20 min median.
    assert "25 分钟 / 72 分钟" in own
    assert "20 分钟 / " in own
    missing = api.get("/regulators/nobody")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert api.get("/regulators", params={"period": "5d"}).status_code == 422
