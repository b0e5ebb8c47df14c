"""The public map page: stations, enterprises and districts (GeoJSON in) as one offline HTML page.

The page is made with folium but loads only the Leaflet and markercluster files that
:mod:`maps.assets` serves locally; stock folium pulls jQuery, Bootstrap and more from CDNs, so
features needing them (``folium.Popup``, ``folium.Marker`` icons, ``keep_in_front``) are not used.
Every text taken from the data is HTML-escaped here, once, before it reaches the page.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeGuard
from urllib.parse import quote

import folium
import folium.plugins
import jinja2
from branca.element import Element, Figure, MacroElement
from folium.map import Layer
from folium.template import Template
from folium.utilities import JsCode
from jinja2.utils import htmlsafe_json_dumps

from domain.errors import ValidationError
from domain.pollutants import get_pollutant
from domain.readings import Flag
from maps.assets import DEFAULT_PREFIX, LEAFLET, MARKERCLUSTER, css_urls, js_urls
from maps.report_form import add_report_control

__all__ = ["OSM_ATTRIBUTION", "OSM_TILES", "build_map", "popup_data"]

logger = logging.getLogger(__name__)

OSM_TILES: Final = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION: Final = (
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
)

# With no features to fit, show mainland China: the registry's sites are reported under
# Chinese standards (HJ 212, GB 3095), so that is where an empty deployment will grow.
DEFAULT_CENTER: Final = (35.0, 105.0)
DEFAULT_ZOOM: Final = 4
# A map without a tile layer has no maximum zoom, and fitting a single point would then zoom
# without end; these caps keep one-site maps at street scale.
MAX_ZOOM: Final = 18
FIT_MAX_ZOOM: Final = 14

STATION_STYLE: Final = {
    "radius": 7,
    "color": "#ffffff",
    "weight": 1.5,
    "fillColor": "#1f78b4",
    "fillOpacity": 0.9,
}
ENTERPRISE_STYLE: Final = {
    "radius": 6,
    "color": "#7f2704",
    "weight": 2.5,
    "fillColor": "#fd8d3c",
    "fillOpacity": 0.9,
}
NO_DATA_FILL: Final = "#9e9e9e"
DISTRICT_STYLE_LOCAL: Final = {
    "color": "#6b7b8c",
    "weight": 1.2,
    "fillColor": "#e8ecef",
    "fillOpacity": 0.8,
}
# Over real tiles the districts are only outlines, so the basemap stays readable.
DISTRICT_STYLE_TILES: Final = {
    "color": "#4a5a6a",
    "weight": 1.5,
    "dashArray": "4 3",
    "fillColor": "#4a5a6a",
    "fillOpacity": 0.04,
}

LABELS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "html_lang": "en",
        "colon": ": ",
        "title": "Sunlight — pollution monitoring map",
        "stations": "Air-quality stations",
        "enterprises": "Enterprises (emission outlets)",
        "districts": "Districts",
        "basemap": "Basemap",
        "legend": "Legend",
        "offices": "How the offices respond",
        "no_data": "No data yet",
        "cluster": "Several enterprises (zoom in)",
        "latest": "Latest values",
        "pollutant": "Pollutant",
        "value": "Value",
        "flag": "Flag",
        "time": "Time",
        "details": "Readings",
        "outlet": "Outlet",
        "industry": "Industry",
        "district": "District",
        "regulator": "Regulator",
        "aqi": "AQI (HJ 633, hourly)",
        "status": "Compliance",
    },
    "zh": {
        "html_lang": "zh-Hans",
        "colon": "：",
        "title": "阳光 — 污染监测地图",
        "stations": "空气质量监测站",
        "enterprises": "重点排污企业（排放口）",
        "districts": "行政区",
        "basemap": "底图",
        "legend": "图例",
        "offices": "各监管部门的回应记录",
        "no_data": "暂无数据",
        "cluster": "多家企业（放大查看）",
        "latest": "最新数据",
        "pollutant": "污染物",
        "value": "数值",
        "flag": "标记",
        "time": "时间",
        "details": "详细数据",
        "outlet": "排放口",
        "industry": "行业",
        "district": "区县",
        "regulator": "监管部门",
        "aqi": "空气质量指数（小时）",
        "status": "达标情况",
    },
}

# Enterprise markers are coloured by compliance: red when exceeding now (issue: the point of
# the map is to show who is polluting).
COMPLIANCE: Final[dict[str, tuple[str, str, str]]] = {
    "exceeding": ("#d7301f", "Exceeding a limit now", "正在超标"),
    "monitoring_gap": ("#6a3d9a", "Monitoring gap", "监测数据缺失"),
    "compliant": ("#1a9850", "Compliant", "达标"),
    "no_data": (NO_DATA_FILL, "No judgement yet", "暂无评价"),
}
# HJ 633-2012 categories, for the legend (station colours come with each station's AQI).
AQI_LEGEND: Final = (
    ("#00E400", "0–50 Excellent", "0–50 优"),
    ("#FFFF00", "51–100 Good", "51–100 良"),
    ("#FF7E00", "101–150 Lightly polluted", "101–150 轻度污染"),
    ("#FF0000", "151–200 Moderately polluted", "151–200 中度污染"),
    ("#99004C", "201–300 Heavily polluted", "201–300 重度污染"),
    ("#7E0023", ">300 Severely polluted", ">300 严重污染"),
)
_HEX_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")

INDUSTRIES: Final[dict[str, tuple[str, str]]] = {
    "thermal_power": ("Thermal power", "火电"),
    "steel": ("Steel", "钢铁"),
    "cement": ("Cement", "水泥"),
    "chemical": ("Chemical", "化工"),
    "wastewater_treatment": ("Wastewater treatment", "污水处理"),
    "other": ("Other", "其他"),
}

# HJ 212-2017 data flags; a reader of the public map needs the words, not the letter.
FLAGS: Final[dict[Flag, tuple[str, str]]] = {
    Flag.NORMAL: ("Normal", "正常"),
    Flag.STOPPED: ("Stopped", "停运"),
    Flag.MAINTENANCE: ("Maintenance", "维护"),
    Flag.MANUAL: ("Manual input", "手工输入"),
    Flag.FAULT: ("Fault", "故障"),
    Flag.CALIBRATION: ("Calibration", "校准"),
    Flag.OVER_RANGE: ("Over range", "超测上限"),
    Flag.COMMS: ("Communication fault", "通讯异常"),
}

PAGE_CSS: Final = """<style>
.leaflet-container { background: #f4f6f8; font-family: system-ui, -apple-system, "Segoe UI",
    "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; }
.sl-popup h4 { margin: 0 0 .2em; font-size: 1.05em; }
.sl-popup h5 { margin: .6em 0 .2em; font-size: .95em; }
.sl-popup .sl-meta { margin: 0 0 .4em; color: #555; }
.sl-popup table { border-collapse: collapse; margin: .2em 0; }
.sl-popup th, .sl-popup td { padding: .1em .5em .1em 0; text-align: left; vertical-align: top; }
.sl-popup td.sl-num { text-align: right; font-variant-numeric: tabular-nums; }
.sl-popup .sl-bad { color: #b2182b; font-weight: 600; }
.sl-popup .sl-none { color: #777; font-style: italic; margin: .2em 0; }
.sl-district-label { background: transparent; border: 0; box-shadow: none; color: #46525e;
    font-weight: 600; text-shadow: 0 0 3px #fff, 0 0 3px #fff; }
.sl-district-label::before { display: none; }
.sl-legend { background: rgba(255, 255, 255, .92); padding: .5em .7em; border-radius: 4px;
    box-shadow: 0 1px 4px rgba(0, 0, 0, .3); line-height: 1.6;
    max-width: 250px; max-height: 60vh; overflow-y: auto; font-size: 12px; }
.sl-legend strong { display: block; margin-bottom: .2em; }
.sl-sym { display: inline-block; width: 12px; height: 12px; border-radius: 50%;
    vertical-align: middle; margin-right: .4em; box-sizing: border-box; }
.sl-area { display: inline-block; width: 14px; height: 10px; vertical-align: middle;
    margin-right: .4em; }
.sl-cluster { display: inline-block; min-width: 18px; height: 18px; border-radius: 9px;
    background: rgba(110, 204, 57, .8); font-size: 11px; line-height: 18px; text-align: center;
    vertical-align: middle; margin-right: .4em; }
</style>"""

# Replaces branca's Figure template for one page only: the same document plus a lang attribute
# (browsers choose CJK glyph shapes from it), and the title after the charset meta in the header.
# LANG is replaced by a LABELS entry, never by caller input.
_PAGE_TEMPLATE: Final = (
    "<!DOCTYPE html>\n"
    '<html lang="LANG">\n'
    "<head>\n"
    "    {{ this.header.render(**kwargs) }}\n"
    "{% if this.title %}<title>{{ this.title }}</title>{% endif %}\n"
    "</head>\n"
    "<body>\n"
    "    {{ this.html.render(**kwargs) }}\n"
    "</body>\n"
    "<script>\n"
    "    {{ this.script.render(**kwargs) }}\n"
    "</script>\n"
    "</html>\n"
)

_LEGEND_TEMPLATE: Final = Template(
    """
    {% macro script(this, kwargs) %}
    (function () {
        var legend = L.control({position: "bottomright"});
        legend.onAdd = function () {
            var div = L.DomUtil.create("div", "sl-legend");
            div.innerHTML = {{ this.data|tojson }};
            L.DomEvent.disableClickPropagation(div);
            return div;
        };
        legend.addTo({{ this._parent.get_name() }});
    })();
    {% endmacro %}
    """
)

# Popups are assembled in the browser, on opening, from strings already escaped in Python: the
# table markup then appears once per page instead of once per site, which keeps a page with
# thousands of sites several times smaller. Lookups use hasOwnProperty so that a pollutant
# code such as "constructor" cannot reach Object.prototype.
_POPUP_TEMPLATE: Final = Template(
    """
    {% macro script(this, kwargs) %}
    var sunlight_popup = (function (t) {
        function own(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
        function table(rows) {
            if (!rows.length) { return '<p class="sl-none">' + t.no_data + '</p>'; }
            var out = '<table><tr><th>' + t.pollutant + '</th><th>' + t.value + '</th><th>'
                + t.flag + '</th><th>' + t.time + '</th></tr>';
            rows.forEach(function (r) {
                var flag = r[3];
                if (own(t.flags, r[3])) {
                    var f = t.flags[r[3]];
                    flag = '<span' + (f[1] ? ' class="sl-bad"' : '') + ' title="' + f[0] + '">'
                        + r[3] + ' ' + f[0] + '</span>';
                }
                out += '<tr><td title="' + r[0] + '">' + (own(t.names, r[0]) ? t.names[r[0]] : r[0])
                    + '</td><td class="sl-num">' + r[1] + ' ' + r[2] + '</td><td>' + flag
                    + '</td><td>' + r[4] + '</td></tr>';
            });
            return out + '</table>';
        }
        return function (p) {
            var out = '<div class="sl-popup"><h4>' + p.h + '</h4>' + (p.m || '');
            (p.g || []).forEach(function (s) {
                out += '<h5>' + (s.o ? t.outlet + ' ' + s.o + ' · ' : '') + t.latest + '</h5>'
                    + table(s.r);
                if (s.u) {
                    out += '<p><a href="' + s.u + '" target="_blank" rel="noopener">'
                        + t.details + ' &rarr;</a></p>';
                }
            });
            return out + '</div>';
        };
    })({{ this.data|tojson }});
    {% endmacro %}
    """
)


class _Script(MacroElement):
    """A fixed script template fed with JSON data (folium's Popup would need jQuery)."""

    def __init__(self, template: Template, data: object) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "Sunlight"
        self._template = template
        self.data = data


def _point_to_layer(style: Mapping[str, object], no_data_style: Mapping[str, object]) -> JsCode:
    # 'c' is a fill colour the server checked to be #RRGGBB (AQI category, compliance status).
    return JsCode(
        "function (feature, latlng) {\n"
        f"    var s = Object.assign({{}}, feature.properties.nd ? {json.dumps(no_data_style)}"
        f" : {json.dumps(style)});\n"
        "    if (feature.properties.c) { s.fillColor = feature.properties.c; }\n"
        "    return L.circleMarker(latlng, s);\n"
        "}"
    )


def _on_each_feature(tooltip_options: Mapping[str, object]) -> JsCode:
    # The districts' layer: a few dozen features, each with its own popup and tooltip.
    return JsCode(
        "function (feature, layer) {\n"
        "    var p = feature.properties;\n"
        "    if (p.p) { layer.bindPopup(function () { return sunlight_popup(p.p); },"
        " {maxWidth: 420}); }\n"
        f"    if (p.t) {{ layer.bindTooltip(p.t, {json.dumps(tooltip_options)}); }}\n"
        "}"
    )


# The thousands of stations and enterprises get one popup and one tooltip per layer group,
# not one of each per marker: a Popup and a Tooltip object and their event handlers for each of
# 12,000 markers were most of the page's start-up time. Leaflet hands the content functions the
# marker that was clicked or hovered; markercluster passes its markers' events on as they are
# (a cluster's become "clusterclick" and so on). A large map carries only a URL per site
# (``popup_url``): the popup is fetched once, when first opened, and shown in place of the
# placeholder while it is still open on that marker.
_GROUP_POPUPS_TEMPLATE: Final = Template(
    """
    {% macro script(this, kwargs) %}
    (function (groups, tooltip) {
        groups.forEach(function (group) {
            var fetched = {};
            group.bindTooltip(function (layer) { return layer.feature.properties.t || ""; },
                              tooltip);
            group.bindPopup(function (layer) {
                var p = layer.feature.properties;
                if (p.p) { return sunlight_popup(p.p); }
                if (!p.q) { return ""; }
                if (Object.prototype.hasOwnProperty.call(fetched, p.q)) {
                    return sunlight_popup(fetched[p.q]);
                }
                fetch(p.q).then(function (r) { return r.json(); }).then(function (d) {
                    fetched[p.q] = d;
                    var popup = group.getPopup();
                    if (popup.isOpen() && popup._source === layer) { popup.update(); }
                });
                return '<div class="sl-popup">…</div>';
            }, {maxWidth: 420});
        });
    })([{{ this.groups|join(", ") }}], {{ this.data|tojson }});
    {% endmacro %}
    """
)


class _Points(Layer):
    """A GeoJSON layer of point sites drawn as circle markers, and nothing per feature besides:
    folium's GeoJson adds an event call and a style reset for every feature (a redraw request
    each, on the stations' canvas). With ``into`` (a layer group's name) its markers go into
    that group instead of onto the map.

    The features reach the page as a JSON text given to ``JSON.parse``: V8 parses megabytes of
    JSON faster than the same data as a JavaScript literal, which must be compiled first. The
    text is HTML-safe JSON (``<``, ``>``, ``&`` and ``'`` as ``\\u`` escapes), so inside single
    quotes only its backslashes need doubling, and it can neither end the string nor the script.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.geoJson(JSON.parse({{ this.data_js }}),
            {pointToLayer: {{ this.point_to_layer }}});
        {%- if this.into %}
        {{ this.into }}.addLayer({{ this.get_name() }});
        {%- endif %}
        {% endmacro %}
        """
    )

    def __init__(
        self,
        data: Mapping[str, Any],
        point_to_layer: JsCode,
        *,
        name: str | None = None,
        into: str = "",
    ) -> None:
        super().__init__(name=name, control=not into, show=not into)
        self._name = "Points"
        text = str(htmlsafe_json_dumps(data, sort_keys=True))
        self.data_js = "'" + text.replace("\\", "\\\\") + "'"
        self.point_to_layer = point_to_layer.js_code
        self.into = into


class _GroupPopups(MacroElement):
    """Binds the popups and tooltips of every marker of the named layer groups at once."""

    def __init__(self, groups: Sequence[str], tooltip_options: Mapping[str, object]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "SunlightGroupPopups"
        self._template = _GROUP_POPUPS_TEMPLATE
        self.groups = list(groups)
        self.data = dict(tooltip_options)


@dataclass(frozen=True, slots=True)
class _Latest:
    """One pollutant's latest value at a site, as the popup shows it."""

    pollutant: str
    value: float | None
    unit: str
    flag: str
    time: str


@dataclass(frozen=True, slots=True)
class _Point:
    """A site's position and its raw properties, once the geometry has been checked."""

    lon: float
    lat: float
    props: Mapping[str, Any]


def build_map(
    stations: Mapping[str, Any],
    enterprises: Mapping[str, Any],
    districts: Mapping[str, Any],
    *,
    static_prefix: str = DEFAULT_PREFIX,
    tiles: str = "local",
    attribution: str = "",
    lang: str = "en",
    detail_url: str = "/api/v1/sites/{id}/readings?interval=hour",
    measure_label: str | None = None,
    measure_links: Sequence[tuple[str, str, bool]] = (),
    enterprise_url: str = "",
    report_api: str | None = None,
    popup_url: str | None = None,
) -> str:
    """Render the map page as a complete HTML document.

    ``stations``, ``enterprises`` and ``districts`` are GeoJSON FeatureCollections ([lon, lat]).
    ``tiles`` is ``"local"`` (no tile layer: the districts are the basemap), ``"osm"``, or a tile
    URL template containing ``{z}`` (then ``attribution``, trusted HTML, is required).
    ``detail_url`` has ``{id}`` replaced by the URL-quoted station or outlet id.
    ``report_api``, when given, adds the "Report pollution" control posting there.
    ``popup_url``, when given, has ``{kind}`` (``station`` or ``enterprise``) and ``{id}``
    replaced per site; the page then carries only each site's position, colour and name, and
    fetches its popup (JSON, as :func:`popup_data` makes it) when first opened: with thousands
    of sites, inline popups make the page megabytes to download, parse and build.
    Raises ``ValueError`` for an unknown ``lang`` or ``tiles``, or input that is not a
    FeatureCollection; features without a usable geometry are left out and logged.
    """
    if lang not in LABELS:
        raise ValueError(f"lang must be one of {sorted(LABELS)}, not {lang!r}")
    labels = LABELS[lang]
    local = tiles == "local"
    tile_layer = _tile_layer(tiles, attribution, labels)

    station_points = list(_points(stations, "stations"))
    enterprise_points = list(_points(enterprises, "enterprises"))
    district_features = list(_polygons(districts))
    popups = _Popups(lang, labels, detail_url, district_features)
    popups.enterprise_url = enterprise_url
    popups.popup_url = popup_url or ""
    # Choropleth: districts whose properties carry a numeric 'measure' are shaded by class.
    breaks = _breaks([f["properties"].get("measure") for f in district_features])
    popups.measure = (measure_label, breaks) if measure_label and breaks else None

    fmap = folium.Map(
        location=DEFAULT_CENTER,
        zoom_start=DEFAULT_ZOOM,
        tiles=None,
        prefer_canvas=True,  # one canvas draws thousands of circles far faster than SVG nodes
        control_scale=True,
    )
    fmap.options["max_zoom"] = MAX_ZOOM
    # Per instance, not on the class: folium's lists are module-level and shared by every map.
    fmap.default_js = js_urls(static_prefix, directories=(LEAFLET,))
    fmap.default_css = css_urls(static_prefix, directories=(LEAFLET,))

    page = Figure(title=html.escape(labels["title"]))
    page._template = jinja2.Template(_PAGE_TEMPLATE.replace("LANG", labels["html_lang"]))
    fmap.add_to(page)
    page.header.add_child(Element(PAGE_CSS), name="sunlight_css")

    # The view is set before any layer is added: the stations' canvas and the enterprise
    # clusters are then drawn once, at the zoom the reader sees, not first for the whole country.
    bounds = _bounds(
        [(p.lon, p.lat) for p in (*station_points, *enterprise_points)]
        + [pos for f in district_features for pos in _positions(f["geometry"]["coordinates"])]
    )
    if bounds is not None:
        fmap.fit_bounds(bounds, max_zoom=FIT_MAX_ZOOM, padding=(20, 20))

    if tile_layer is not None:
        tile_layer.add_to(fmap)

    district_style = DISTRICT_STYLE_LOCAL if local else DISTRICT_STYLE_TILES
    folium.GeoJson(
        _collection(popups.district(f) for f in district_features),
        name=html.escape(labels["districts"]),
        style=JsCode(
            "function (feature) {\n"
            f"    var s = Object.assign({{}}, {json.dumps(district_style)});\n"
            "    if (feature.properties.c) { s.fillColor = feature.properties.c;"
            " s.fillOpacity = 0.6; }\n"
            "    return s;\n"
            "}"
        ),
        on_each_feature=_on_each_feature(
            {"permanent": True, "direction": "center", "className": "sl-district-label"}
            if local
            else {"sticky": True}
        ),
    ).add_to(fmap)

    point_tooltip = {"direction": "top", "offset": [0, -6]}
    station_layer = _Points(
        _collection(popups.station(p) for p in station_points),
        _point_to_layer(STATION_STYLE, {**STATION_STYLE, "fillColor": NO_DATA_FILL}),
        name=html.escape(labels["stations"]),
    ).add_to(fmap)

    cluster = folium.plugins.MarkerCluster(  # type: ignore[no-untyped-call]
        name=html.escape(labels["enterprises"]),
        show_coverage_on_hover=False,
        # Markers are added in slices so thousands cannot freeze a slow device for long; a slice
        # of a second lets a desktop cluster 10,000 in one go (the default 200 ms slices add a
        # pause and a redraw between each two: all clusters drawn after 1.87 s instead of 1.61 s,
        # medians of 8 loads of the same page on a loaded 2-core machine).
        chunked_loading=True,
        chunk_interval=1000,
    )
    cluster.default_js = js_urls(static_prefix, directories=(MARKERCLUSTER,))
    cluster.default_css = css_urls(static_prefix, directories=(MARKERCLUSTER,))
    cluster.add_to(fmap)
    # One GeoJSON layer put into the cluster once the cluster is on the map (markercluster
    # flattens a LayerGroup into its markers): before that, it checks each marker against every
    # one already waiting, 50 million comparisons for 10,000 enterprises.
    _Points(
        _collection(popups.enterprise(p) for p in enterprise_points),
        _point_to_layer(ENTERPRISE_STYLE, {**ENTERPRISE_STYLE, "fillColor": NO_DATA_FILL}),
        into=cluster.get_name(),
    ).add_to(fmap)

    # After the features: only now are all the pollutant codes the popups mention known.
    fmap.add_child(_Script(_POPUP_TEMPLATE, popups.texts()), name="sunlight_popup")
    fmap.add_child(
        _GroupPopups([station_layer.get_name(), cluster.get_name()], point_tooltip),
        name="sunlight_group_popups",
    )
    fmap.add_child(
        _Script(
            _LEGEND_TEMPLATE,
            _legend_html(labels, local=local, measure=popups.measure, links=measure_links),
        ),
        name="sunlight_legend",
    )
    folium.LayerControl(collapsed=False).add_to(fmap)
    if report_api:
        add_report_control(fmap, lang=lang, api_url=report_api)

    rendered: str = page.render()
    return rendered


def popup_data(
    kind: str,
    site: Mapping[str, Any],
    districts: Mapping[str, Any],
    *,
    lang: str = "en",
    detail_url: str = "/api/v1/sites/{id}/readings?interval=hour",
    enterprise_url: str = "",
) -> dict[str, Any]:
    """One site's popup, for a page built with ``popup_url``: the same escaped data an inline
    popup carries. ``site`` is a GeoJSON Point feature as :func:`build_map` takes them; ``kind``
    is ``station`` or ``enterprise``. Raises ``ValueError`` for anything else."""
    if lang not in LABELS:
        raise ValueError(f"lang must be one of {sorted(LABELS)}, not {lang!r}")
    if kind not in ("station", "enterprise"):
        raise ValueError(f"kind must be station or enterprise, not {kind!r}")
    popups = _Popups(lang, LABELS[lang], detail_url, list(_polygons(districts)))
    popups.enterprise_url = enterprise_url
    points = list(_points(_collection([dict(site)]), f"{kind}s"))
    if not points:
        raise ValueError("the site has no usable point geometry")
    feature = popups.station(points[0]) if kind == "station" else popups.enterprise(points[0])
    popup: dict[str, Any] = feature["properties"]["p"]
    return popup


def _collection(features: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def _tile_layer(tiles: str, attribution: str, labels: Mapping[str, str]) -> folium.TileLayer | None:
    if tiles == "local":
        return None
    if tiles == "osm":
        # OSM's tile policy requires its attribution; a caller's credit is added, not substituted.
        attr = f"{OSM_ATTRIBUTION} | {attribution}" if attribution else OSM_ATTRIBUTION
        return folium.TileLayer(tiles=OSM_TILES, attr=attr, name="OpenStreetMap", max_zoom=19)
    if "{z}" in tiles:
        if not attribution:
            raise ValueError("a custom tile URL needs an attribution for its map data")
        return folium.TileLayer(tiles=tiles, attr=attribution, name=labels["basemap"])
    raise ValueError(f"tiles must be 'local', 'osm' or a URL template with {{z}}, not {tiles!r}")


def _features(collection: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    if not isinstance(collection, Mapping) or collection.get("type") != "FeatureCollection":
        raise ValueError(f"{kind} must be a GeoJSON FeatureCollection")
    features = collection.get("features") or []
    if not isinstance(features, list):
        raise ValueError(f"{kind}.features must be a list")
    return [f for f in features if isinstance(f, Mapping)]


def _points(collection: Mapping[str, Any], kind: str) -> Iterator[_Point]:
    skipped = 0
    for feature in _features(collection, kind):
        geometry = feature.get("geometry") or {}
        coords = geometry.get("coordinates") if isinstance(geometry, Mapping) else None
        props = feature.get("properties")
        if (
            isinstance(geometry, Mapping)
            and geometry.get("type") == "Point"
            and isinstance(coords, Sequence)
            and len(coords) >= 2
            and _finite(coords[0])
            and _finite(coords[1])
            and -180 <= coords[0] <= 180
            and -90 <= coords[1] <= 90
        ):
            yield _Point(
                float(coords[0]), float(coords[1]), props if isinstance(props, Mapping) else {}
            )
        else:
            skipped += 1
    if skipped:
        # A site without a usable position is left off the map rather than failing the page.
        logger.warning("map: skipped %s %s without a valid Point geometry", skipped, kind)


def _polygons(collection: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    skipped = 0
    for feature in _features(collection, "districts"):
        geometry = feature.get("geometry")
        if (
            isinstance(geometry, Mapping)
            and geometry.get("type") in ("Polygon", "MultiPolygon")
            and isinstance(geometry.get("coordinates"), list)
        ):
            props = feature.get("properties")
            yield {"geometry": geometry, "properties": props if isinstance(props, Mapping) else {}}
        else:
            skipped += 1
    if skipped:
        logger.warning("map: skipped %s districts without a Polygon geometry", skipped)


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positions(coords: object) -> Iterator[tuple[float, float]]:
    """Every [lon, lat] position in a (Multi)Polygon's nested coordinate arrays."""
    if isinstance(coords, Sequence) and not isinstance(coords, str):
        lon, lat = (coords[0], coords[1]) if len(coords) >= 2 else (None, None)
        if _finite(lon) and _finite(lat):
            yield float(lon), float(lat)
        else:
            for item in coords:
                yield from _positions(item)


def _bounds(positions: list[tuple[float, float]]) -> list[list[float]] | None:
    if not positions:
        return None
    lons = [p[0] for p in positions]
    lats = [p[1] for p in positions]
    return [[min(lats), min(lons)], [max(lats), max(lons)]]


def _text(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _name(props: Mapping[str, Any], lang: str) -> str:
    """The name in the chosen language, falling back to the other one, then to the id."""
    order = ("name_zh", "name") if lang == "zh" else ("name", "name_zh")
    for key in order:
        value = props.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return str(props.get("id") or "")


def _latest(values: object) -> list[_Latest]:
    if not isinstance(values, Mapping):
        return []
    out = []
    for pollutant, reading in values.items():
        if not isinstance(reading, Mapping):
            continue
        value = reading.get("value")
        out.append(
            _Latest(
                pollutant=str(pollutant),
                value=float(value) if _finite(value) else None,
                unit=str(reading.get("unit") or ""),
                flag=str(reading.get("flag") or ""),
                time=str(reading.get("time") or ""),
            )
        )
    return sorted(out, key=lambda r: r.pollutant)


def _pollutant_name(code: str, lang: str) -> str:
    try:
        pollutant = get_pollutant(code)
    except ValidationError:
        return code
    return pollutant.name_zh if lang == "zh" else pollutant.name_en


def _format_value(value: float | None) -> str:
    if value is None:
        return "—"
    # Four significant digits match instrument resolution; large flows keep their integer part.
    return f"{value:.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


class _Popups:
    """Turns features into the compact, escaped properties the page's popup script reads.

    Properties: ``t`` tooltip, ``nd`` no data yet, ``p`` popup = {``h`` title, ``m`` meta line,
    ``g`` sections of {``o`` outlet, ``r`` rows [code, value, unit, flag, time], ``u`` link}}.
    Every string in them is HTML-escaped here.
    """

    def __init__(
        self,
        lang: str,
        labels: Mapping[str, str],
        detail_url: str,
        districts: Iterable[Mapping[str, Any]],
    ) -> None:
        self.lang = lang
        self.labels = labels
        self.detail_url = detail_url
        self.district_names = {
            str(f["properties"]["id"]): _name(f["properties"], lang)
            for f in districts
            if f["properties"].get("id") is not None
        }
        self.pollutant_names: dict[str, str] = {}
        self.measure: tuple[str, list[float]] | None = None
        self.enterprise_url = ""  # '{id}' → the enterprise's page, linked from its name
        self.popup_url = ""  # '{kind}', '{id}' → the site's popup, fetched when opened

    def texts(self) -> dict[str, Any]:
        """The page-wide words the popup script needs, escaped."""
        words = {
            key: html.escape(self.labels[key])
            for key in ("no_data", "pollutant", "value", "flag", "time", "latest", "outlet")
        }
        index = 1 if self.lang == "zh" else 0
        flags = {
            html.escape(flag.value): [html.escape(names[index]), flag is not Flag.NORMAL]
            for flag, names in FLAGS.items()
        }
        return {
            **words,
            "details": html.escape(self.labels["details"]),
            "flags": flags,
            "names": self.pollutant_names,
        }

    def station(self, point: _Point) -> dict[str, Any]:
        props = point.props
        name = _name(props, self.lang)
        aqi = props.get("aqi") if isinstance(props.get("aqi"), Mapping) else None
        if self.popup_url:
            feature = self._lazy("station", point, name, [props.get("latest")])
            colour = (
                aqi.get("colour") if aqi is not None and isinstance(aqi.get("aqi"), int) else None
            )
            if isinstance(colour, str) and _HEX_COLOUR.match(colour):
                feature["properties"]["c"] = colour
            return feature
        section = self._section(props.get("latest"), props.get("id"), outlet=None)
        pairs = [(self.labels["district"], self._district(props.get("district")))]
        colour = None
        if aqi is not None and isinstance(aqi.get("aqi"), int):
            category = aqi.get("category_zh" if self.lang == "zh" else "category") or ""
            pairs.insert(0, (self.labels["aqi"], f"{aqi['aqi']} {category}"))
            colour = aqi.get("colour")
        popup = {"h": _text(name), "m": self._meta(pairs), "g": [section]}
        feature = _point_feature(point, popup, _text(name), no_data=not section["r"])
        if isinstance(colour, str) and _HEX_COLOUR.match(colour):
            feature["properties"]["c"] = colour
        return feature

    def enterprise(self, point: _Point) -> dict[str, Any]:
        props = point.props
        name = _name(props, self.lang)
        if self.popup_url:
            raw = props.get("latest")
            feature = self._lazy(
                "enterprise", point, name, list(raw.values()) if isinstance(raw, Mapping) else []
            )
            compliance = props.get("compliance")
            status = compliance.get("status") if isinstance(compliance, Mapping) else None
            if status in COMPLIANCE and status != "no_data":
                feature["properties"]["c"] = COMPLIANCE[str(status)][0]
            return feature
        industry = str(props.get("industry") or "")
        raw_latest = props.get("latest")
        latest = (
            {str(k): v for k, v in raw_latest.items()} if isinstance(raw_latest, Mapping) else {}
        )
        raw_outlets = props.get("outlets")
        listed = [str(o) for o in raw_outlets] if isinstance(raw_outlets, list) else []
        # Outlets named in the list come first, in its order; any others with data follow.
        sections = [
            self._section(latest.get(outlet_id), outlet_id, outlet=outlet_id)
            for outlet_id in dict.fromkeys([*listed, *latest])
        ]
        industry_words = INDUSTRIES.get(industry, (industry, industry))[
            1 if self.lang == "zh" else 0
        ]
        compliance = props.get("compliance")
        status = compliance.get("status") if isinstance(compliance, Mapping) else None
        status_words = (
            COMPLIANCE[status][2 if self.lang == "zh" else 1] if status in COMPLIANCE else ""
        )
        meta = self._meta(
            [
                (self.labels["status"], status_words),
                (self.labels["industry"], industry_words),
                (self.labels["district"], self._district(props.get("district"))),
            ]
        )
        title = _text(name)
        if self.enterprise_url and props.get("id"):
            page = self.enterprise_url.replace("{id}", quote(str(props["id"]), safe=""))
            title = f'<a href="{html.escape(page, quote=True)}">{title}</a>'
        popup = {
            "h": title,
            "m": meta,
            # An enterprise without outlets still says so under "Latest values".
            "g": sections or [{"r": []}],
        }
        no_data = not any(s["r"] for s in sections)
        feature = _point_feature(point, popup, _text(name), no_data=no_data)
        if status in COMPLIANCE and status != "no_data":
            feature["properties"]["c"] = COMPLIANCE[str(status)][0]
        return feature

    def district(self, feature: Mapping[str, Any]) -> dict[str, Any]:
        props = feature["properties"]
        name = _name(props, self.lang)
        pairs = [(self.labels["regulator"], str(props.get("regulator") or ""))]
        value = props.get("measure")
        colour = None
        if self.measure is not None and _finite(value):
            label, breaks = self.measure
            pairs.insert(0, (label, f"{value:g}"))
            colour = _class_colour(value, breaks)
        popup = {"h": _text(name), "m": self._meta(pairs)}
        out: dict[str, Any] = {"p": popup, "t": _text(name)}
        if colour:
            out["c"] = colour
        return {"type": "Feature", "geometry": feature["geometry"], "properties": out}

    def _lazy(self, kind: str, point: _Point, name: str, latest: list[object]) -> dict[str, Any]:
        """A marker without its popup: name, no-data mark and the URL its popup comes from.
        The pollutant names its popup may show still go to the page-wide words."""
        codes = {
            str(code)
            for values in latest
            if isinstance(values, Mapping)
            for code, reading in values.items()
            if isinstance(reading, Mapping)
        }
        for code in codes:
            if _text(code) not in self.pollutant_names:
                self.pollutant_names[_text(code)] = _text(_pollutant_name(code, self.lang))
        feature = _point_feature(point, None, _text(name), no_data=not codes)
        site_id = quote(str(point.props.get("id") or ""), safe="")
        feature["properties"]["q"] = self.popup_url.replace("{kind}", kind).replace("{id}", site_id)
        return feature

    def _section(self, values: object, site_id: object, *, outlet: str | None) -> dict[str, Any]:
        rows = []
        for v in _latest(values):
            code = _text(v.pollutant)
            if code not in self.pollutant_names:
                self.pollutant_names[code] = _text(_pollutant_name(v.pollutant, self.lang))
            rows.append([code, _format_value(v.value), _text(v.unit), _text(v.flag), _text(v.time)])
        section: dict[str, Any] = {"r": rows}
        if outlet is not None:
            section["o"] = _text(outlet)
        url = self._url(site_id)
        if url:
            section["u"] = url
        return section

    def _url(self, site_id: object) -> str:
        if not self.detail_url or site_id is None or site_id == "":
            return ""
        # The id is quoted into the path so it can neither leave it nor change the scheme.
        url = self.detail_url.replace("{id}", quote(str(site_id), safe=""))
        return html.escape(url, quote=True)

    def _district(self, district: object) -> str:
        """The district's display name; its id when the districts layer does not know it."""
        if district is None or district == "":
            return ""
        return self.district_names.get(str(district), str(district))

    def _meta(self, pairs: list[tuple[str, str]]) -> str:
        colon = self.labels["colon"]
        shown = [f"{html.escape(label)}{colon}{_text(value)}" for label, value in pairs if value]
        return f'<p class="sl-meta">{" · ".join(shown)}</p>' if shown else ""


def _point_feature(
    point: _Point, popup: dict[str, Any] | None, tooltip: str, *, no_data: bool
) -> dict[str, Any]:
    # Only pre-escaped strings and numbers go to the page: raw properties stay on the server.
    props: dict[str, Any] = {"p": popup, "t": tooltip} if popup is not None else {"t": tooltip}
    if no_data:
        props["nd"] = 1
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [point.lon, point.lat]},
        "properties": props,
    }


# A sequential scale for the district choropleth (ColorBrewer YlOrRd, 5 classes).
CHOROPLETH: Final = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")


def _breaks(values: Sequence[object]) -> list[float]:
    """Upper bounds of up to five equal-width classes over the finite values."""
    finite = [float(v) for v in values if _finite(v)]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    if high == low:
        return [high]
    step = (high - low) / len(CHOROPLETH)
    return [low + step * (i + 1) for i in range(len(CHOROPLETH))]


def _class_colour(value: float, breaks: Sequence[float]) -> str:
    for i, upper in enumerate(breaks):
        if value <= upper + 1e-9:
            return CHOROPLETH[min(i, len(CHOROPLETH) - 1)] if len(breaks) > 1 else CHOROPLETH[0]
    return CHOROPLETH[-1]


def _legend_html(
    labels: Mapping[str, str],
    *,
    local: bool,
    measure: tuple[str, list[float]] | None = None,
    links: Sequence[tuple[str, str, bool]] = (),
) -> str:
    area = DISTRICT_STYLE_LOCAL if local else DISTRICT_STYLE_TILES
    zh_lang = labels["html_lang"].startswith("zh")
    rows = [
        (
            f'<span class="sl-sym" style="background:{STATION_STYLE["fillColor"]};'
            f'border:1.5px solid #555"></span>',
            labels["stations"],
        ),
        (
            f'<span class="sl-sym" style="background:{ENTERPRISE_STYLE["fillColor"]};'
            f'border:2.5px solid {ENTERPRISE_STYLE["color"]}"></span>',
            labels["enterprises"],
        ),
        ('<span class="sl-cluster">5</span>', labels["cluster"]),
        (f'<span class="sl-sym" style="background:{NO_DATA_FILL}"></span>', labels["no_data"]),
        *(
            (f'<span class="sl-sym" style="background:{colour}"></span>', zh if zh_lang else en)
            for colour, en, zh in AQI_LEGEND
        ),
        *(
            (
                f'<span class="sl-sym" style="background:{colour};'
                f'border:2.5px solid {ENTERPRISE_STYLE["color"]}"></span>',
                zh if zh_lang else en,
            )
            for colour, en, zh in COMPLIANCE.values()
            if colour != NO_DATA_FILL
        ),
        (
            f'<span class="sl-area" style="background:{area["fillColor"]};'
            f'border:1.5px solid {area["color"]}"></span>',
            labels["districts"],
        ),
    ]
    body = "".join(f"<div>{symbol}{html.escape(text)}</div>" for symbol, text in rows)
    if measure is not None:
        label, breaks = measure
        lower = 0.0
        body += f"<strong>{html.escape(label)}</strong>"
        for i, upper in enumerate(breaks):
            colour = CHOROPLETH[i] if len(breaks) > 1 else CHOROPLETH[0]
            body += (
                f'<div><span class="sl-area" style="background:{colour}"></span>'
                f"{lower:g}–{upper:.3g}</div>"
            )
            lower = upper
    if links:
        body += (
            "<div>"
            + "<br>".join(
                f"<b>{html.escape(text)}</b>"
                if active
                else f'<a href="{html.escape(url, quote=True)}">{html.escape(text)}</a>'
                for text, url, active in links
            )
            + "</div>"
        )
    # The accountability record: relative to the site serving the map, in the map's language.
    offices = f"/regulators?lang={'zh' if zh_lang else 'en'}"
    body += f'<div><a href="{offices}">{html.escape(labels["offices"])}</a></div>'
    return f"<strong>{html.escape(labels['legend'])}</strong>{body}"
