"""What an office reads in a notification names the statistic its limit bounds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.messages import compose


def row(pollutant: str, period: str, kind: str = "exceedance") -> dict[str, Any]:
    start = datetime(2026, 7, 14, 16, tzinfo=UTC)
    return {
        "id": 7,
        "kind": "opened",
        "regulator_id": "lc-eeb",
        "episode_id": 3,
        "episode_kind": kind,
        "site_id": "lc-aq-riverside",
        "pollutant": pollutant,
        "period": period,
        "status": "open",
        "severity": "moderate",
        "first_start": start,
        "last_end": start,
        "hours": 24,
        "max_mean": 200.0,
        "limit_value": 160.0,
        "office_in_charge": "lc-eeb",
    }


@pytest.mark.parametrize(
    ("pollutant", "period", "said"),
    [
        ("so2", "hour", "so2 hourly mean over its limit"),
        ("cod", "day", "cod daily mean over its limit"),
        ("o3", "day", "o3 daily maximum 8-hour mean over its limit"),
    ],
)
def test_the_subject_names_the_statistic(pollutant: str, period: str, said: str) -> None:
    subject, text, payload = compose(row(pollutant, period), "https://sunlight.example")
    assert subject.endswith(said)
    assert text.startswith(subject)
    assert payload["episode"]["url"] == "https://sunlight.example/api/v1/episodes/3"


def test_a_gap_is_named_as_one() -> None:
    subject, _text, _payload = compose(row("", "", kind="gap"), None)
    assert subject.endswith("monitoring gap (no valid data)")
