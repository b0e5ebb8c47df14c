"""The accountability record on a crafted set of episodes and reports whose times are known,
so every median, 90th percentile and within-deadline share below is checked by hand.

Gangkou's office (deadline 60 min) received, in the last 30 days, six episodes: acknowledged
after 10, 20, 30 and 90 minutes (resolved after 100, 200, 300, 400), one never acknowledged
and 5 days past its deadline, one 30 minutes old and still inside it; and 40 days ago one more,
acknowledged after 5 minutes. Continuous percentiles of [10, 20, 30, 90]: median 25, p90 at
rank 0.9 × 3 = 2.7, 30 + 0.7 × 60 = 72. It received four reports: first replies after 30 (due
at 120) and 150 minutes (late), closed after 600 and 1000; one unanswered past its due time;
one unanswered not yet due.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.accountability.conftest import NOW


def by_id(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    return {r["id"]: r for r in doc["results"]}  # type: ignore[attr-defined, index]


def test_office_figures_by_hand(api: TestClient) -> None:
    """Counts, median and p90 to acknowledge/resolve and reply/close, within-deadline shares
    (pending items excluded), open items now."""
    doc = api.get("/api/v1/regulators").json()
    assert doc["period"]["label"] == "30d"
    gangkou = by_id(doc)["lc-eeb-gangkou"]
    assert gangkou["episodes"] == {
        "received": 6,
        "acknowledged": 4,
        "resolved": 4,
        "open_now": 2,
        "minutes_to_acknowledge": {"median": 25.0, "p90": 72.0},
        "minutes_to_resolve": {"median": 250.0, "p90": 370.0},
        "within_deadline": {"in_time": 3, "due": 5, "share": 0.6},
    }
    # Replies [30, 150]: median 90, p90 30 + 0.9 × 120 = 138; closes [600, 1000]: 800, 960.
    assert gangkou["reports"] == {
        "received": 4,
        "answered": 2,
        "closed": 2,
        "open_now": 2,
        "minutes_to_first_reply": {"median": 90.0, "p90": 138.0},
        "minutes_to_close": {"median": 800.0, "p90": 960.0},
        "within_deadline": {"in_time": 1, "due": 3, "share": 0.3333},
    }
    assert gangkou["within_deadline_share"] == 0.5  # (3 + 1) / (5 + 3)
    beiling = by_id(doc)["lc-eeb-beiling"]
    assert beiling["episodes"]["received"] == 0
    assert beiling["episodes"]["minutes_to_acknowledge"] == {"median": None, "p90": None}
    assert beiling["within_deadline_share"] is None
    assert [r["level"] for r in doc["results"]][:2] == ["province", "city"]


def test_subtree_rolls_up_offices_below(api: TestClient) -> None:
    """scope=subtree: the city (and the province above it) count their district branches'
    items with their own; each item keeps its own office's deadline."""
    own = by_id(api.get("/api/v1/regulators").json())
    tree = by_id(api.get("/api/v1/regulators", params={"scope": "subtree"}).json())
    assert own["lc-eeb"]["episodes"]["received"] == 1
    assert own["lc-eeb"]["episodes"]["minutes_to_acknowledge"]["median"] == 300.0
    city = tree["lc-eeb"]["episodes"]
    # [10, 20, 30, 40, 90, 300]: median 35; p90 at rank 4.5: 90 + 0.5 × 210 = 195.
    assert city["received"] == 8
    assert city["minutes_to_acknowledge"] == {"median": 35.0, "p90": 195.0}
    assert city["within_deadline"] == {"in_time": 5, "due": 7, "share": 0.7143}
    assert tree["aurora-deeb"]["episodes"] == city
    assert tree["lc-eeb-gangkou"] == own["lc-eeb-gangkou"]  # nothing below a district

    detail = api.get("/api/v1/regulators/lc-eeb").json()
    assert detail["office"] == own["lc-eeb"]
    assert detail["subtree"]["episodes"] == city
    assert detail["children"] == [
        "lc-eeb-beiling",
        "lc-eeb-dongshan",
        "lc-eeb-gangkou",
        "lc-eeb-nanhe",
    ]
    assert "subtree" not in api.get("/api/v1/regulators/lc-eeb-nanhe").json()


def test_period_selection(api: TestClient) -> None:
    """period=90d reaches the 40-day-old episode; from/to selects it alone; level filters."""
    ninety = by_id(api.get("/api/v1/regulators", params={"period": "90d"}).json())
    acks = ninety["lc-eeb-gangkou"]["episodes"]
    assert acks["received"] == 7
    assert acks["minutes_to_acknowledge"]["median"] == 20.0  # [5, 10, 20, 30, 90]
    start = (NOW - timedelta(days=41)).isoformat()
    end = (NOW - timedelta(days=39)).isoformat()
    window = api.get("/api/v1/regulators", params={"from": start, "to": end}).json()
    assert window["period"]["label"] == "custom"
    only = by_id(window)["lc-eeb-gangkou"]["episodes"]
    assert (only["received"], only["minutes_to_acknowledge"]["median"]) == (1, 5.0)
    assert by_id(window)["lc-eeb-gangkou"]["reports"]["received"] == 0
    week = by_id(api.get("/api/v1/regulators", params={"period": "7d"}).json())
    assert week["lc-eeb-gangkou"]["episodes"]["received"] == 2  # the overdue and the pending
    districts = api.get("/api/v1/regulators", params={"level": "district"}).json()
    assert {r["level"] for r in districts["results"]} == {"district"}
    assert len(districts["results"]) == 4


def test_csv_download(api: TestClient) -> None:
    """format=csv: one row per office, the same figures flattened."""
    response = api.get("/api/v1/regulators", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0].startswith("# ")
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO("\n".join(lines[1:])))}
    assert len(rows) == 6
    assert rows["lc-eeb-gangkou"]["ack_p90_min"] == "72.0"
    assert rows["lc-eeb-gangkou"]["within_deadline_share"] == "0.5"


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/api/v1/regulators", {"period": "2d"}, 422, "period"),
        ("/api/v1/regulators", {"period": "7d", "from": "2026-01-01T00:00:00Z"}, 422, "either"),
        (
            "/api/v1/regulators",
            {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            422,
            "before",
        ),
        ("/api/v1/regulators", {"from": "2026-01-01T00:00:00"}, 422, "time zone"),
        ("/api/v1/regulators", {"from": "yesterday"}, 422, "ISO 8601"),
        ("/api/v1/regulators", {"to": "2026-01-01T00:00:00Z"}, 422, "from"),
        ("/api/v1/regulators", {"from": "2000-01-01T00:00:00Z"}, 422, "3660"),
        ("/api/v1/regulators", {"scope": "everyone"}, 422, "scope"),
        ("/api/v1/regulators", {"level": "county"}, 422, "level"),
        ("/api/v1/regulators/nobody", {}, 404, "nobody"),
    ],
)
def test_bad_parameters_are_problems(
    api: TestClient, path: str, params: dict[str, str], status: int, words: str
) -> None:
    """Bad periods, scopes, levels and unknown offices get 4xx problem+json, never a 500."""
    response = api.get(path, params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]
