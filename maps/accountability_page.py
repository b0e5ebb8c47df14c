"""The accountability pages: every regulator office side by side for a period (``/regulators``),
and one office over the standard periods (``/regulators/{id}``). Plain HTML and CSS, no script,
no external asset; en/zh. Data in, page out: the figures come from the API's documents."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

PERIOD_KEYS = ("7d", "30d", "90d", "365d")

LABELS: dict[str, dict[str, Any]] = {
    "en": {
        "title": "How regulators answer",
        "lede": "Every office's record: what it received, how fast it acknowledged and resolved "
        "it, and how often it answered within its deadline.",
        "periods": {"7d": "7 days", "30d": "30 days", "90d": "90 days", "365d": "365 days"},
        "custom": "Custom period",
        "scope_office": "Each office's own",
        "scope_subtree": "With offices below",
        "levels": {"province": "province", "city": "city", "district": "district"},
        "office": "Office",
        "level": "Level",
        "episodes": "Episodes",
        "reports": "Citizen reports",
        "received": "Received",
        "ack": "To acknowledge (median / p90)",
        "resolve": "To resolve (median / p90)",
        "reply": "To first reply (median / p90)",
        "close": "To close (median / p90)",
        "in_time": "Within deadline",
        "open_now": "Open now",
        "deadline": "Deadline to acknowledge",
        "parent": "Reports to",
        "below": "Offices below",
        "own": "Its own episodes and reports",
        "subtree": "With all offices below",
        "measure": "Measure",
        "data": "Data",
        "map": "Map",
        "all": "All offices",
        "none": "—",
        "units": ("min", "h", "d"),
        "definitions": "Items belong to the office in charge. Times run from an episode's "
        "opening or a report's receipt, over items received in the period and answered so far "
        "(median and 90th percentile). Within deadline: acknowledged within the office's "
        "deadline (episodes) or first replied to by the report's due time, out of the items "
        "answered or past their deadline; items still inside their deadline are left out.",
    },
    "zh": {
        "title": "监管部门履职记录",
        "lede": "各监管部门的记录：收到多少事件和举报、多快确认和办结、按时答复的比例。",
        "periods": {"7d": "近7天", "30d": "近30天", "90d": "近90天", "365d": "近365天"},
        "custom": "自定义时段",
        "scope_office": "仅本部门",
        "scope_subtree": "含下级部门",
        "levels": {"province": "省级", "city": "市级", "district": "区级"},
        "office": "部门",
        "level": "级别",
        "episodes": "超标与缺失事件",
        "reports": "公众举报",
        "received": "收到",
        "ack": "确认用时（中位数 / 90%分位）",
        "resolve": "办结用时（中位数 / 90%分位）",
        "reply": "首次答复用时（中位数 / 90%分位）",
        "close": "办结用时（中位数 / 90%分位）",
        "in_time": "按时答复比例",
        "open_now": "当前未结",
        "deadline": "确认时限",
        "parent": "上级部门",
        "below": "下级部门",
        "own": "本部门的事件与举报",
        "subtree": "含全部下级部门",
        "measure": "指标",
        "data": "数据",
        "map": "地图",
        "all": "全部部门",
        "none": "—",
        "units": ("分钟", "小时", "天"),
        "definitions": "事项归属于负责部门。用时自事件开启或举报收到起算，"
        "统计时段内收到且已答复的事项（中位数与90%分位数）。按时答复：事件在部门确认时限内确认，"
        "举报在答复期限前首次答复；分母为已答复或已超期的事项，尚在期限内未答复的不计入。",
    },
}

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
td, th { border-bottom: 1px solid #ddd; padding: .3em .4em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.n { text-align: right; white-space: nowrap; }
.note { color: #555; font-size: 12px; } nav a, nav strong { margin-right: .8em; }
.bar { display: inline-block; height: .7em; background: #1a9850; vertical-align: middle;
       margin-right: .3em; } .bar.low { background: #d7301f; } .bar.mid { background: #fdae61; }
.lvl-city td:first-child { padding-left: 1.2em; }
.lvl-district td:first-child { padding-left: 2.4em; }
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def words_for(lang: str) -> dict[str, Any]:
    return LABELS["zh" if lang == "zh" else "en"]


def duration(minutes: float | None, lang: str) -> str:
    """Minutes as a person reads them: minutes under two hours, hours under two days, days."""
    words = words_for(lang)
    if minutes is None:
        return str(words["none"])
    unit_min, unit_h, unit_d = words["units"]
    if minutes < 120:
        return f"{minutes:.0f} {unit_min}"
    if minutes < 2880:
        return f"{minutes / 60:.1f} {unit_h}"
    return f"{minutes / 1440:.1f} {unit_d}"


def _pair(stat: Mapping[str, float | None], lang: str) -> str:
    return f"{_e(duration(stat['median'], lang))} / {_e(duration(stat['p90'], lang))}"


def _share(within: Mapping[str, Any], lang: str) -> str:
    share = within["share"]
    if share is None:
        return _e(words_for(lang)["none"])
    tone = "low" if share < 0.5 else ("mid" if share < 0.8 else "")
    width = max(1, round(share * 60))
    return (
        f'<span class="bar {tone}" style="width:{width}px"></span>'
        f"{share * 100:.0f}% <span class=note>({within['in_time']}/{within['due']})</span>"
    )


def _name(office: Mapping[str, Any], lang: str) -> str:
    return str((office.get("name_zh") if lang == "zh" else None) or office["name"])


def _head(title: str, lang: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{"zh-Hans" if lang == "zh" else "en"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width, '
        f'initial-scale=1"><title>{_e(title)} — Sunlight</title><style>{_STYLE}</style>'
        "</head><body>"
    )


def _url(path: str, **params: str) -> str:
    return f"{path}?{urlencode(params)}"


def _a(url: str, text: str) -> str:
    return f'<a href="{_e(url)}">{_e(text)}</a>'


def _office_link(office: Mapping[str, Any], lang: str) -> str:
    return _a(_url(f"/regulators/{office['id']}", lang=lang), _name(office, lang))


def build_regulators_page(
    offices: Sequence[Mapping[str, Any]],
    period: Mapping[str, Any],
    *,
    lang: str = "en",
    map_url: str = "/map",
) -> str:
    """Every office in one table for one period (``period``: label, from, to, scope)."""
    words = words_for(lang)
    scope = period["scope"]
    nav = []
    for key in PERIOD_KEYS:
        label = words["periods"][key]
        if key == period["label"]:
            nav.append(f"<strong>{_e(label)}</strong>")
        else:
            nav.append(_a(_url("/regulators", period=key, scope=scope, lang=lang), label))
    if period["label"] == "custom":
        nav.append(f"<strong>{_e(words['custom'])}</strong>")
    scopes = []
    for key, label in (("office", words["scope_office"]), ("subtree", words["scope_subtree"])):
        if key == scope:
            scopes.append(f"<strong>{_e(label)}</strong>")
        else:
            target = period["label"] if period["label"] in PERIOD_KEYS else "30d"
            scopes.append(_a(_url("/regulators", period=target, scope=key, lang=lang), label))
    rows = []
    for o in offices:
        ep, rp = o["episodes"], o["reports"]
        rows.append(
            f'<tr class="lvl-{_e(o["level"])}" data-office="{_e(o["id"])}">'
            f"<td>{_office_link(o, lang)}</td>"
            f"<td>{_e(words['levels'].get(o['level'], o['level']))}</td>"
            f'<td class="n">{ep["received"]}</td>'
            f'<td class="n">{_pair(ep["minutes_to_acknowledge"], lang)}</td>'
            f'<td class="n">{_pair(ep["minutes_to_resolve"], lang)}</td>'
            f"<td>{_share(ep['within_deadline'], lang)}</td>"
            f'<td class="n">{rp["received"]}</td>'
            f'<td class="n">{_pair(rp["minutes_to_first_reply"], lang)}</td>'
            f'<td class="n">{_pair(rp["minutes_to_close"], lang)}</td>'
            f"<td>{_share(rp['within_deadline'], lang)}</td>"
            f'<td class="n">{ep["open_now"] + rp["open_now"]}</td></tr>'
        )
    window = (
        {"period": period["label"]}
        if period["label"] in PERIOD_KEYS
        else {"from": period["from"], "to": period["to"]}
    )
    api = _url("/api/v1/regulators", **window, scope=scope)
    csv_url = f"{api}&format=csv"
    return f"""{_head(words["title"], lang)}
<p><a href="{_e(map_url)}">← {_e(words["map"])}</a></p>
<h1>{_e(words["title"])}</h1>
<p>{_e(words["lede"])}</p>
<nav class="periods">{"".join(nav)}</nav>
<nav class="scopes">{"".join(scopes)}</nav>
<p class="note">{_e(period["from"])} – {_e(period["to"])}</p>
<table id="offices"><thead>
<tr><th rowspan="2">{_e(words["office"])}</th><th rowspan="2">{_e(words["level"])}</th>
<th colspan="4">{_e(words["episodes"])}</th><th colspan="4">{_e(words["reports"])}</th>
<th rowspan="2">{_e(words["open_now"])}</th></tr>
<tr><th>{_e(words["received"])}</th><th>{_e(words["ack"])}</th><th>{_e(words["resolve"])}</th>
<th>{_e(words["in_time"])}</th><th>{_e(words["received"])}</th><th>{_e(words["reply"])}</th>
<th>{_e(words["close"])}</th><th>{_e(words["in_time"])}</th></tr>
</thead><tbody>{"".join(rows)}</tbody></table>
<p class="note">{_e(words["definitions"])}</p>
<p class="note">{_e(words["data"])}: {_a(api, "JSON")} · {_a(csv_url, "CSV")}</p>
</body></html>
"""


def _measures(docs: Sequence[Mapping[str, Any]], lang: str) -> list[tuple[str, list[str]]]:
    """(label, one cell per document) for the detail page's rows."""
    words = words_for(lang)
    return [
        (
            f"{words['episodes']}: {words['received']}",
            [str(d["episodes"]["received"]) for d in docs],
        ),
        (
            f"{words['episodes']}: {words['ack']}",
            [_pair(d["episodes"]["minutes_to_acknowledge"], lang) for d in docs],
        ),
        (
            f"{words['episodes']}: {words['resolve']}",
            [_pair(d["episodes"]["minutes_to_resolve"], lang) for d in docs],
        ),
        (
            f"{words['episodes']}: {words['in_time']}",
            [_share(d["episodes"]["within_deadline"], lang) for d in docs],
        ),
        (f"{words['reports']}: {words['received']}", [str(d["reports"]["received"]) for d in docs]),
        (
            f"{words['reports']}: {words['reply']}",
            [_pair(d["reports"]["minutes_to_first_reply"], lang) for d in docs],
        ),
        (
            f"{words['reports']}: {words['close']}",
            [_pair(d["reports"]["minutes_to_close"], lang) for d in docs],
        ),
        (
            f"{words['reports']}: {words['in_time']}",
            [_share(d["reports"]["within_deadline"], lang) for d in docs],
        ),
    ]


def _period_table(table_id: str, by_period: Mapping[str, Mapping[str, Any]], lang: str) -> str:
    words = words_for(lang)
    keys = [k for k in PERIOD_KEYS if k in by_period]
    head = "".join(f"<th>{_e(words['periods'][k])}</th>" for k in keys)
    body = "".join(
        f"<tr><th>{_e(label)}</th>{''.join(f'<td class=n>{c}</td>' for c in cells)}</tr>"
        for label, cells in _measures([by_period[k] for k in keys], lang)
    )
    return (
        f'<table id="{_e(table_id)}"><thead><tr><th>{_e(words["measure"])}</th>{head}</tr>'
        f"</thead><tbody>{body}</tbody></table>"
    )


def build_office_page(
    office: Mapping[str, Any],
    own: Mapping[str, Mapping[str, Any]],
    subtree: Mapping[str, Mapping[str, Any]] | None,
    *,
    parent: Mapping[str, Any] | None,
    children: Sequence[Mapping[str, Any]],
    lang: str = "en",
) -> str:
    """One office over 7, 30, 90 and 365 days: its own items, and with the offices below."""
    words = words_for(lang)
    name = _name(office, lang)
    latest = own[PERIOD_KEYS[1]] if PERIOD_KEYS[1] in own else next(iter(own.values()))
    open_now = latest["episodes"]["open_now"] + latest["reports"]["open_now"]
    facts = [
        f"{_e(words['levels'].get(office['level'], office['level']))}",
        f"{_e(words['deadline'])}: {_e(duration(office['ack_deadline_minutes'], lang))}",
        f"{_e(words['open_now'])}: {open_now}",
    ]
    if parent is not None:
        facts.append(f"{_e(words['parent'])}: {_office_link(parent, lang)}")
    below = ""
    if children:
        links = " · ".join(_office_link(c, lang) for c in children)
        below = f"<p>{_e(words['below'])}: {links}</p>"
    tree = ""
    if subtree is not None:
        tree = f"<h2>{_e(words['subtree'])}</h2>{_period_table('subtree', subtree, lang)}"
    api = f"/api/v1/regulators/{office['id']}"
    return f"""{_head(name, lang)}
<p><a href="{_e(_url("/regulators", lang=lang))}">← {_e(words["all"])}</a></p>
<h1>{_e(name)}</h1>
<p class="note">{" · ".join(facts)}</p>
{below}
<h2>{_e(words["own"])}</h2>
{_period_table("own", own, lang)}
{tree}
<p class="note">{_e(words["definitions"])}</p>
<p class="note">{_e(words["data"])}: <a href="{_e(api)}">JSON</a> ·
<a href="{_e(_url("/api/v1/episodes", regulator=office["id"]))}">{_e(words["episodes"])}</a> ·
<a href="{_e(_url("/api/v1/reports", regulator=office["id"]))}">{_e(words["reports"])}</a></p>
</body></html>
"""
