"""A citizen report's public page, the reporter's tracking link: the report, the office's
replies, whether it answered in time, and the evidence Sunlight holds nearby. Plain HTML, no
script and no external asset; every text from the data is escaped here."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from domain.pollutants import get_pollutant
from domain.reports import STATUS_LABELS, Status

LABELS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "title": "Pollution report",
        "back": "Map",
        "status": "Status",
        "received": "Received",
        "observed": "Noticed",
        "office": "Office in charge",
        "escalated": "Escalated to",
        "due": "Reply due by",
        "deadline": "{minutes} minutes after receipt",
        "first_reply": "First reply after",
        "in_time": "within the deadline",
        "late": "after the deadline",
        "overdue": "No reply yet, and the deadline has passed.",
        "waiting": "Waiting for the office's first reply.",
        "location": "Location (rounded to about 100 m)",
        "description": "What was reported",
        "photo": "Photo (metadata removed)",
        "replies": "Replies from the office (public)",
        "no_replies": "No reply yet.",
        "marked": "marked the report",
        "episode": "episode",
        "evidence": "Evidence Sunlight holds",
        "stations": "Nearest air-quality stations: hourly means around the time",
        "no_hours": "no hourly values in this window",
        "enterprises": "Enterprises within {radius} m: compliance now and episodes",
        "no_enterprises": "No monitored enterprise within {radius} m.",
        "distance": "{d} m {dir}",
        "open_episodes": "open or at the time",
        "none": "none",
        "tracking": "Keep this page's address: it is your tracking link.",
        "minutes": "min",
    },
    "zh": {
        "title": "污染举报",
        "back": "地图",
        "status": "状态",
        "received": "收到时间",
        "observed": "发现时间",
        "office": "负责部门",
        "escalated": "已上报至",
        "due": "答复期限",
        "deadline": "收到后{minutes}分钟内",
        "first_reply": "首次答复用时",
        "in_time": "在期限内",
        "late": "超过期限",
        "overdue": "尚未答复，已超过答复期限。",
        "waiting": "等待负责部门首次答复。",
        "location": "位置（精确到约100米）",
        "description": "举报内容",
        "photo": "照片（已去除元数据）",
        "replies": "部门答复（公开）",
        "no_replies": "暂无答复。",
        "marked": "将举报标记为",
        "episode": "事件",
        "evidence": "阳光平台已有的证据",
        "stations": "最近的空气质量监测站：举报前后的小时均值",
        "no_hours": "此时段无小时数据",
        "enterprises": "{radius}米内的企业：当前达标情况与事件",
        "no_enterprises": "{radius}米内没有受监控的企业。",
        "distance": "{dir} {d}米",
        "open_episodes": "未结或当时发生的事件",
        "none": "无",
        "tracking": "请保存本页地址：这是您的跟踪链接。",
        "minutes": "分钟",
    },
}
COMPLIANCE_WORDS: Final = {
    "exceeding": ("Exceeding a limit now", "正在超标", "#d7301f"),
    "monitoring_gap": ("Monitoring gap", "监测数据缺失", "#6a3d9a"),
    "compliant": ("Compliant", "达标", "#1a9850"),
    "no_data": ("No judgement yet", "暂无评价", "#757575"),
}
DIRECTIONS_ZH: Final = {
    "N": "北",
    "NE": "东北",
    "E": "东",
    "SE": "东南",
    "S": "南",
    "SW": "西南",
    "W": "西",
    "NW": "西北",
}
STATUS_COLOURS: Final = {
    "open": "#b35806",
    "confirmed": "#d7301f",
    "unfounded": "#4d4d4d",
    "merged": "#1f78b4",
}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _time(value: object) -> str:
    """'2026-11-23 16:05 UTC' from the API's ISO text."""
    if not value:
        return ""
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float, words: Mapping[str, str]) -> str:
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} {words['minutes']}"
    return f"{minutes // 60} h {minutes % 60:02d} {words['minutes']}"


def _pollutant(code: str, lang: str) -> str:
    try:
        p = get_pollutant(code)
    except ValueError:
        return code
    return p.name_zh if lang == "zh" else p.name_en


def _name(row: Mapping[str, Any], lang: str, key: str = "name") -> str:
    zh = row.get(f"{key}_zh")
    return str(zh if lang == "zh" and zh else row.get(key) or "")


def _stations(stations: Sequence[Mapping[str, Any]], lang: str, words: Mapping[str, str]) -> str:
    items = []
    for s in stations:
        where = words["distance"].format(
            d=s["distance_m"],
            dir=DIRECTIONS_ZH.get(s["direction"], s["direction"])
            if lang == "zh"
            else s["direction"],
        )
        rows = []
        for code, hours in s["hourly"].items():
            values = ", ".join(
                f"{_time(h['hour'])[11:16]} {h['mean']:.1f}" for h in hours if h["mean"] is not None
            )
            unit = hours[0]["unit"] if hours else ""
            rows.append(
                f"<tr><td>{_e(_pollutant(code, lang))}</td><td>{_e(values)} {_e(unit)}</td></tr>"
            )
        table = (
            f"<table>{''.join(rows)}</table>"
            if rows
            else f'<p class="note">{_e(words["no_hours"])}</p>'
        )
        items.append(
            f'<li class="station"><strong>{_e(_name(s, lang))}</strong>'
            f' <span class="note">{_e(where)}</span>{table}</li>'
        )
    return f"<ul>{''.join(items)}</ul>"


def _enterprises(
    enterprises: Sequence[Mapping[str, Any]], lang: str, words: Mapping[str, str], radius: int
) -> str:
    if not enterprises:
        return f'<p class="note">{_e(words["no_enterprises"].format(radius=radius))}</p>'
    items = []
    for e in enterprises:
        status = e["compliance"]["status"]
        en, zh, colour = COMPLIANCE_WORDS.get(status, (status, status, "#757575"))
        where = words["distance"].format(
            d=e["distance_m"],
            dir=DIRECTIONS_ZH.get(e["direction"], e["direction"])
            if lang == "zh"
            else e["direction"],
        )
        episodes = ", ".join(
            f"#{ep['id']} {_pollutant(ep['pollutant'], lang) if ep['pollutant'] else ep['kind']}"
            f" ({ep['status']}, {_time(ep['first_start'])})"
            for ep in e["episodes"]
        )
        items.append(
            f'<li class="enterprise"><a href="{_e(e["page_url"])}?lang={lang}">'
            f'{_e(_name(e, lang))}</a> <span class="note">{_e(where)}</span>'
            f' <span class="badge" style="background:{colour}">{_e(zh if lang == "zh" else en)}'
            f'</span><br><span class="note">{_e(words["open_episodes"])}: '
            f"{_e(episodes or words['none'])}</span></li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _replies(replies: Sequence[Mapping[str, Any]], lang: str, words: Mapping[str, str]) -> str:
    if not replies:
        return f'<p class="note">{_e(words["no_replies"])}</p>'
    items = []
    for r in replies:
        marked = ""
        if r["status"]:
            label = STATUS_LABELS[Status(r["status"])][1 if lang == "zh" else 0]
            extra = f" ({words['episode']} #{r['episode_id']})" if r["episode_id"] else ""
            marked = (
                f'<p class="note">{_e(words["marked"])}: <strong>{_e(label)}</strong>'
                f"{_e(extra)}</p>"
            )
        items.append(
            f'<li class="reply"><p class="note">{_e(_time(r["created_at"]))} · '
            f"{_e(_name(r, lang, 'regulator_name'))}</p>"
            f'<p class="reply-body">{_e(r["body"])}</p>{marked}</li>'
        )
    return f"<ol>{''.join(items)}</ol>"


def build_report_page(doc: Mapping[str, Any], *, lang: str = "en", map_url: str = "/map") -> str:
    """The page for one report document (``api.routers.reports.report_document``)."""
    lang = "zh" if lang == "zh" else "en"
    words = LABELS[lang]
    status = str(doc["status"])
    status_label = STATUS_LABELS[Status(status)][1 if lang == "zh" else 0]
    category = doc["category_label_zh"] if lang == "zh" else doc["category_label"]
    if doc["first_reply_at"]:
        verdict = words["in_time"] if doc["answered_within_deadline"] else words["late"]
        timing = (
            f"{_e(words['first_reply'])}: {_e(_duration(doc['seconds_to_first_reply'], words))}"
            f" ({_e(verdict)})"
        )
    elif doc["overdue"]:
        timing = f'<span class="late">{_e(words["overdue"])}</span>'
    else:
        timing = _e(words["waiting"])
    office = _name(doc, lang, "regulator_name") or doc["regulator_id"]
    facts = [
        (words["received"], _time(doc["received_at"])),
        (words["observed"], _time(doc["observed_at"])) if doc.get("observed_at") else None,
        (words["office"], office),
        (words["escalated"], doc["escalated_to"]) if doc.get("escalated_to") else None,
        (
            words["due"],
            f"{_time(doc['due_at'])} ({words['deadline'].format(minutes=doc['deadline_minutes'])})",
        ),
        (words["location"], f"{doc['lat']:.3f}, {doc['lon']:.3f}"),
    ]
    fact_rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for item in facts if item for k, v in [item]
    )
    photo = (
        f'<h2>{_e(words["photo"])}</h2><img class="photo" src="{_e(doc["photo_url"])}" alt="">'
        if doc.get("photo_url")
        else ""
    )
    evidence = doc["evidence"]
    radius = round(evidence["radius_m"])
    window = f"{_time(evidence['window']['start'])} – {_time(evidence['window']['end'])}"
    colour = STATUS_COLOURS.get(status, "#4d4d4d")
    other = "en" if lang == "zh" else "zh"
    return f"""<!DOCTYPE html>
<html lang="{"zh-Hans" if lang == "zh" else "en"}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(words["title"])} · {_e(category)} — Sunlight</title>
<style>
body {{ font: 14px/1.45 system-ui, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif;
    margin: 1.5em auto; max-width: 760px; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.4em; margin-bottom: .2em; }} h2 {{ font-size: 1.1em; margin-top: 1.4em; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .15em .8em .15em 0; vertical-align: top; }}
.note {{ color: #666; font-size: 12px; margin: .1em 0; }}
.badge {{ color: #fff; border-radius: 3px; padding: .05em .45em; font-size: 12px;
    white-space: nowrap; }}
.late {{ color: #b2182b; font-weight: 600; }}
.description, .reply-body {{ white-space: pre-wrap; }}
.photo {{ max-width: 100%; border: 1px solid #ccc; }}
li {{ margin-bottom: .6em; }}
</style></head><body>
<p><a href="{_e(map_url)}">← {_e(words["back"])}</a> ·
<a href="?lang={other}" hreflang="{other}">{"English" if lang == "zh" else "中文"}</a></p>
<h1>{_e(words["title"])}: {_e(category)}</h1>
<p><span class="badge status" style="background:{colour}">{_e(status_label)}</span> {timing}</p>
<p class="note">{_e(words["tracking"])}</p>
<table class="facts">{fact_rows}</table>
<h2>{_e(words["description"])}</h2>
<p class="description">{_e(doc["description"])}</p>
{photo}
<h2>{_e(words["replies"])}</h2>
<section id="replies">{_replies(doc["replies"], lang, words)}</section>
<h2>{_e(words["evidence"])}</h2>
<h3>{_e(words["stations"])}</h3>
<p class="note">{_e(window)}</p>
{_stations(evidence["stations"], lang, words)}
<h3>{_e(words["enterprises"].format(radius=radius))}</h3>
{_enterprises(evidence["enterprises"], lang, words, radius)}
</body></html>
"""
