"""An enterprise's public page: each outlet's hourly means against its limit for the last days,
drawn as inline SVG (no script, no external asset), and its episode history."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

WIDTH, HEIGHT, PAD = 640, 180, 36
VERDICT_COLOURS = {"exceedance": "#d7301f", "compliant": "#1a9850"}

LABELS: dict[str, dict[str, Any]] = {
    "en": {
        "title": "Hourly means against the limit, last {days} days",
        "limit": "limit",
        "episodes": "Episodes",
        "none": "No episodes on record.",
        "no_data": "No judged hours yet.",
        "invalid": "grey: invalid hour (too few valid minutes) or no data",
        "cols": (
            "#",
            "Outlet",
            "Pollutant",
            "Status",
            "From",
            "Hours",
            "Highest mean",
            "Action taken",
        ),
        "back": "Map",
    },
    "zh": {
        "title": "最近{days}天小时均值与排放限值",
        "limit": "限值",
        "episodes": "超标与数据缺失事件",
        "none": "暂无事件记录。",
        "no_data": "暂无评价数据。",
        "invalid": "灰色：无效小时（有效分钟数不足）或无数据",
        "cols": ("编号", "排放口", "污染物", "状态", "开始", "小时数", "最高均值", "处理情况"),
        "back": "地图",
    },
}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _chart(
    points: Sequence[Mapping[str, Any]], start: datetime, end: datetime, unit: str, limit_word: str
) -> str:
    limit = max((p["limit_value"] for p in points), default=0.0)
    top = max([limit * 1.25] + [p["mean"] * 1.1 for p in points if p["mean"] is not None]) or 1.0
    span = (end - start).total_seconds()

    def x(t: datetime) -> float:
        return PAD + (WIDTH - 2 * PAD) * (t - start).total_seconds() / span

    def y(v: float) -> float:
        return HEIGHT - PAD + (2 * PAD - HEIGHT) * v / top

    marks = []
    for p in points:
        if p["mean"] is None:
            marks.append(
                f'<rect x="{x(p["start"]):.1f}" y="{HEIGHT - PAD}" width="3" height="4" fill="#9e9e9e"/>'
            )
        else:
            colour = VERDICT_COLOURS.get(p["verdict"], "#1f78b4")
            marks.append(
                f'<circle cx="{x(p["start"]):.1f}" cy="{y(p["mean"]):.1f}" r="2.2" fill="{colour}">'
                f"<title>{_e(p['start'].isoformat())}: {p['mean']:.2f} {_e(unit)} ({_e(p['verdict'])})</title></circle>"
            )
    line = ""
    if limit:
        ly = y(limit)
        line = (
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="#d7301f" '
            f'stroke-dasharray="5 3"/><text x="{WIDTH - PAD}" y="{ly - 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#d7301f">{_e(limit_word)} {limit:g} {_e(unit)}</text>'
        )
    axes = (
        f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{HEIGHT - PAD}" y2="{HEIGHT - PAD}" stroke="#555"/>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11">{_e(start.date())}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">{_e(end.date())}</text>'
        f'<text x="4" y="{PAD - 8}" font-size="11">{_e(unit)}</text>'
    )
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img">'
        f"{axes}{line}{''.join(marks)}</svg>"
    )


def build_enterprise_page(
    enterprise: Mapping[str, Any],
    judgements: Sequence[Mapping[str, Any]],
    episodes: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    days: int = 7,
    lang: str = "en",
    map_url: str = "/map",
) -> str:
    words = LABELS["zh" if lang == "zh" else "en"]
    name = (
        enterprise.get("name_zh")
        if lang == "zh" and enterprise.get("name_zh")
        else enterprise["name"]
    )
    start = now - timedelta(days=days)
    series: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for j in judgements:
        series[(j["outlet"], j["pollutant"], j["period"])].append(j)
    charts = []
    for (outlet, pollutant, period), points in sorted(series.items()):
        charts.append(
            f'<section class="outlet"><h3>{_e(outlet)} · {_e(pollutant)} · {_e(period)}</h3>'
            + _chart(points, start, now, points[0]["unit"], words["limit"])
            + "</section>"
        )
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(v)}</td>"
            for v in (
                e["id"],
                e["outlet"],
                e["pollutant"] or "—",
                e["status"],
                e["first_start"].isoformat() if e["first_start"] else "",
                e["hours"],
                f"{e['max_mean']:.2f}" if e["max_mean"] is not None else "—",
                e["resolution"] or "",
            )
        )
        + "</tr>"
        for e in episodes
    )
    table = (
        f"<table><thead><tr>{''.join(f'<th>{_e(c)}</th>' for c in words['cols'])}</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if episodes
        else f"<p>{_e(words['none'])}</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="{"zh-Hans" if lang == "zh" else "en"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(name)} — Sunlight</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 760px; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.4em; margin-bottom: .2em; }} h3 {{ font-size: 1em; margin: 1em 0 .2em; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3em; text-align: left; }}
.note {{ color: #666; font-size: 12px; }}
</style></head><body>
<p><a href="{_e(map_url)}">← {_e(words["back"])}</a></p>
<h1>{_e(name)}</h1>
<p class="note">{_e(enterprise.get("industry"))} · {_e(enterprise.get("district"))} · {_e(enterprise.get("regulator"))}</p>
<h2>{_e(words["title"].format(days=days))}</h2>
<p class="note">{_e(words["invalid"])}</p>
{"".join(charts) or f"<p>{_e(words['no_data'])}</p>"}
<h2>{_e(words["episodes"])}</h2>
{table}
</body></html>
"""
