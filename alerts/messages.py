"""What an office is told: the subject, text and JSON of one notification about an episode."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.ambient import DAILY_MAX_8H

_TITLES = {
    "opened": "New",
    "reopened": "Recurring",
    "reminder": "Reminder: unacknowledged",
    "escalation": "Escalated: unacknowledged",
    "resolved": "Resolved",
}


def _iso(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def _statistic(pollutant: str, period: str) -> str:
    """What a limit of ``period`` bounds: 'hourly mean', 'daily mean', or for GB 3095's daily
    ozone limit 'daily maximum 8-hour mean'."""
    if period == "day" and pollutant in DAILY_MAX_8H:
        return "daily maximum 8-hour mean"
    return {"hour": "hourly mean", "day": "daily mean"}.get(period, f"{period} mean")


def compose(row: dict[str, Any], public_url: str | None) -> tuple[str, str, dict[str, Any]]:
    """(subject, plain text, JSON payload) for an outbox row joined with its episode."""
    kind = row["kind"]
    what = (
        f"{row['pollutant']} {_statistic(row['pollutant'], row['period'])} over its limit"
        if row["episode_kind"] == "exceedance"
        else "monitoring gap (no valid data)"
    )
    subject = (
        f"[Sunlight] {_TITLES.get(kind, kind)} episode {row['episode_id']}: {row['site_id']} {what}"
    )
    link = f"{public_url.rstrip('/')}/api/v1/episodes/{row['episode_id']}" if public_url else None
    lines = [
        subject,
        "",
        f"Site: {row['site_id']}",
        f"Office in charge: {row['office_in_charge']}",
        f"Since: {_iso(row['first_start'])}  until: {_iso(row['last_end'])}  hours: {row['hours']}",
    ]
    if row["episode_kind"] == "exceedance":
        lines.append(
            f"Highest mean: {row['max_mean']:.3f} against limit {row['limit_value']} "
            f"(severity {row['severity']})"
        )
    if kind == "escalation":
        lines.append("The office in charge did not acknowledge within its deadline.")
    if link:
        lines.append(f"Public record: {link}")
    payload = {
        "notification_id": row["id"],
        "kind": kind,
        "regulator": row["regulator_id"],
        "episode": {
            "id": row["episode_id"],
            "kind": row["episode_kind"],
            "site": row["site_id"],
            "pollutant": row["pollutant"] or None,
            "period": row["period"] or None,
            "status": row["status"],
            "severity": row["severity"],
            "first_start": _iso(row["first_start"]),
            "last_end": _iso(row["last_end"]),
            "hours": row["hours"],
            "max_mean": row["max_mean"],
            "limit": row["limit_value"],
            "office_in_charge": row["office_in_charge"],
            "url": link,
        },
    }
    return subject, "\n".join(lines) + "\n", payload
