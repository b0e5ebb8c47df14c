"""The map page: offline assets only, escaped data, both languages, basemap choices."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import folium
import pytest

from maps.assets import static_dirs
from maps.builder import OSM_TILES, build_map

EVIL = '<script>alert("x")</script>'


def _fc(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def _point(lon: float, lat: float, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": props,
    }


def _reading(value: float, unit: str, flag: str = "N") -> dict[str, Any]:
    return {"value": value, "unit": unit, "flag": flag, "time": "2024-05-01T08:00:00Z"}


STATIONS = _fc(
    _point(
        116.40,
        39.90,
        id="st-1",
        name=f"Dongcheng {EVIL}",
        name_zh="东城站",
        district="d1",
        latest={"pm25": _reading(35.2, "ug/m3"), "so2": _reading(7, "ug/m3", "D")},
    ),
    _point(116.50, 39.95, id="st-2", name="Quiet station", latest={}),
)
ENTERPRISES = _fc(
    _point(
        116.30,
        39.80,
        id="e-1",
        name='Power "Plant" & <b>Co</b>',
        name_zh="华电<厂>",
        industry="thermal_power",
        district="d1",
        outlets=["o-1", 'o"2<'],
        latest={"o-1": {"so2": _reading(12.345, "mg/m3")}},
    )
)
DISTRICTS = _fc(
    {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[116.2, 39.7], [116.6, 39.7], [116.6, 40.0], [116.2, 40.0], [116.2, 39.7]]
            ],
        },
        "properties": {"id": "d1", "name": "District <One>", "name_zh": "一区", "regulator": "r1"},
    }
)


class _Links(HTMLParser):
    """Collects the URLs a browser would fetch while loading the page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def _fetched_urls(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.urls


def _json_values(page: str) -> list[Any]:
    """Every JSON literal the page's script passes to a call or assigns (data, popup words...),
    and every JSON text it parses (the sites: ``JSON.parse('…')``, backslashes doubled)."""
    decoder = json.JSONDecoder()
    values = []
    for match in re.finditer(r"[(=]\s*(?=[{\[\"])", page):
        try:
            value, _ = decoder.raw_decode(page, match.end())
        except json.JSONDecodeError:
            continue
        values.append(value)
    for match in re.finditer(r"JSON\.parse\('((?:[^'\\]|\\.)*)'\)", page):
        values.append(json.loads(match.group(1).replace("\\\\", "\\")))
    return values


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _page_strings(page: str) -> list[str]:
    return [s for v in _json_values(page) for s in _strings(v)]


def _resolve(url: str, prefix: str) -> Path:
    assert url.startswith(prefix + "/"), url
    sub_prefix, _, rest = url[len(prefix) + 1 :].partition("/")
    dirs = static_dirs()
    assert sub_prefix in dirs, url
    return dirs[sub_prefix] / rest


def test_local_page_fetches_nothing_from_another_host() -> None:
    """With tiles="local" no script, stylesheet or image URL (nor any other) names a host."""
    page = build_map(STATIONS, ENTERPRISES, DISTRICTS, tiles="local")

    urls = _fetched_urls(page)
    assert urls
    for url in urls:
        assert not url.startswith(("http://", "https://", "//")), url
    assert "https://" not in page
    assert "http://" not in page


@pytest.mark.parametrize("prefix", ["/static", "/maps/assets/"])
def test_every_asset_the_page_loads_is_in_static_dirs(prefix: str) -> None:
    """Leaflet and markercluster JS/CSS come from the installed xstatic directories."""
    page = build_map(STATIONS, ENTERPRISES, DISTRICTS, static_prefix=prefix)
    base = prefix.rstrip("/")

    urls = _fetched_urls(page)
    assert {u.rsplit("/", 1)[-1] for u in urls} == {
        "leaflet.js",
        "leaflet.css",
        "leaflet.markercluster.js",
        "MarkerCluster.css",
        "MarkerCluster.Default.css",
    }
    for url in urls:
        assert _resolve(url, base).is_file(), url
    # Leaflet has to load before the plugin that extends it.
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts == [
        f"{base}/leaflet/leaflet.js",
        f"{base}/leaflet-markercluster/leaflet.markercluster.js",
    ]


def test_images_leaflet_css_refers_to_are_installed() -> None:
    """The control images Leaflet's CSS points at resolve inside the served directory."""
    leaflet = static_dirs()["leaflet"]
    css = (leaflet / "leaflet.css").read_text(encoding="utf-8")

    images = re.findall(r"url\(\s*['\"]?(images/[^'\")]+)", css)
    assert images
    for image in images:
        assert (leaflet / image).is_file(), image


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_names_from_the_data_are_escaped(lang: str) -> None:
    """Names with markup or quotes reach the page only HTML-escaped, in tooltips and popups."""
    page = build_map(STATIONS, ENTERPRISES, DISTRICTS, lang=lang)

    assert "<script>alert" not in page
    assert "<b>Co" not in page
    strings = _page_strings(page)
    assert not any("<script>alert" in s or "<b>Co" in s or "<厂>" in s for s in strings)
    if lang == "en":
        assert "Dongcheng &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in strings
        assert "Power &quot;Plant&quot; &amp; &lt;b&gt;Co&lt;/b&gt;" in strings
        assert "District &lt;One&gt;" in strings
    else:
        assert "华电&lt;厂&gt;" in strings
    # An outlet id with markup is escaped as a label and percent-quoted in its link.
    assert "o&quot;2&lt;" in strings
    assert "/api/v1/sites/o%222%3C/readings?interval=hour" in strings


def test_popup_words_follow_the_language() -> None:
    """lang="zh" gives Chinese names, labels, pollutant and flag words; "en" gives English."""
    zh = build_map(STATIONS, ENTERPRISES, DISTRICTS, lang="zh")
    en = build_map(STATIONS, ENTERPRISES, DISTRICTS, lang="en")

    zh_strings, en_strings = _page_strings(zh), _page_strings(en)
    for word in ("最新数据", "东城站", "细颗粒物", "故障", "排放口", "详细数据", "图例"):
        assert any(word in s for s in zh_strings), word
    assert not any("Latest values" in s for s in zh_strings)
    for word in ("Latest values", "PM2.5", "Fault", "Outlet", "Readings", "Legend"):
        assert any(word in s for s in en_strings), word
    assert '<html lang="zh-Hans">' in zh
    assert '<html lang="en">' in en


def test_popup_data_carries_values_units_flags_and_links() -> None:
    """A station's popup data lists each pollutant's value, unit, flag and time, and its link."""
    page = build_map(STATIONS, ENTERPRISES, DISTRICTS, detail_url="/sites/{id}?x=1")

    collections = [v for v in _json_values(page) if isinstance(v, dict) and "features" in v]
    popups = [f["properties"]["p"] for c in collections for f in c["features"]]
    station = next(p for p in popups if p["h"].startswith("Dongcheng"))
    (section,) = station["g"]
    assert section["r"] == [
        ["pm25", "35.2", "ug/m3", "N", "2024-05-01T08:00:00Z"],
        ["so2", "7", "ug/m3", "D", "2024-05-01T08:00:00Z"],
    ]
    assert section["u"] == "/sites/st-1?x=1"


def test_osm_tiles_add_the_osm_template_and_attribution() -> None:
    """tiles="osm" adds the OpenStreetMap tile URL with its attribution; assets stay local."""
    page = build_map(STATIONS, ENTERPRISES, DISTRICTS, tiles="osm")

    assert OSM_TILES in _page_strings(page)
    assert "https://www.openstreetmap.org/copyright" in page
    assert not any(u.startswith(("http://", "https://")) for u in _fetched_urls(page))


def test_custom_tile_template_needs_an_attribution() -> None:
    """A {z} URL template is used as given, and refused without an attribution."""
    page = build_map(
        STATIONS, ENTERPRISES, DISTRICTS, tiles="/tiles/{z}/{x}/{y}.png", attribution="Our tiles"
    )
    assert "/tiles/{z}/{x}/{y}.png" in _page_strings(page)

    with pytest.raises(ValueError, match="attribution"):
        build_map(STATIONS, ENTERPRISES, DISTRICTS, tiles="/tiles/{z}/{x}/{y}.png")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"tiles": "satellite"}, "tiles"), ({"lang": "fr"}, "lang")],
)
def test_unknown_options_are_refused(kwargs: dict[str, str], message: str) -> None:
    """An unknown tiles choice or language is a ValueError, not a silently odd page."""
    with pytest.raises(ValueError, match=message):
        build_map(STATIONS, ENTERPRISES, DISTRICTS, **kwargs)


def test_map_fits_the_bounds_of_all_features() -> None:
    """The view is fitted to the south-west and north-east corners of every feature."""
    page = build_map(STATIONS, ENTERPRISES, DISTRICTS)

    assert [[39.7, 116.2], [40.0, 116.6]] in _json_values(page)
    assert ".fitBounds(" in page


def test_empty_input_renders_the_default_view() -> None:
    """With no features at all the page still renders, centred on the default view."""
    empty = _fc()
    page = build_map(empty, empty, empty)

    assert page.startswith("<!DOCTYPE html>")
    assert "[35.0, 105.0]" in page
    assert ".fitBounds(" not in page
    assert all(not u.startswith(("http://", "https://")) for u in _fetched_urls(page))


def test_features_without_usable_geometry_are_left_out() -> None:
    """A station with no geometry or out-of-range coordinates is skipped; the rest are drawn."""
    stations = _fc(
        {"type": "Feature", "geometry": None, "properties": {"id": "none", "name": "Nowhere"}},
        _point(200.0, 10.0, id="bad", name="Off the globe"),
        _point(116.4, 39.9, id="ok", name="Good"),
    )
    page = build_map(stations, _fc(), _fc())

    strings = _page_strings(page)
    assert "Good" in strings
    assert "Nowhere" not in strings
    assert "Off the globe" not in strings


def test_stock_folium_defaults_are_left_untouched() -> None:
    """Overrides are per instance: folium's class-level CDN lists are not modified."""
    before = (list(folium.Map.default_js), list(folium.plugins.MarkerCluster.default_js))
    build_map(STATIONS, ENTERPRISES, DISTRICTS)

    assert (list(folium.Map.default_js), list(folium.plugins.MarkerCluster.default_js)) == before


def test_legend_links_to_the_offices_record_in_the_maps_language() -> None:
    """The map leads to the accountability record, in the language it is shown in."""
    en = build_map(STATIONS, ENTERPRISES, DISTRICTS, lang="en")
    zh = build_map(STATIONS, ENTERPRISES, DISTRICTS, lang="zh")
    # The legend's HTML sits in a script as a JSON string.
    assert '\\u003ca href=\\"/regulators?lang=en\\"\\u003eHow the offices respond' in en
    link = '\\u003ca href=\\"/regulators?lang=zh\\"\\u003e'
    assert link + "各监管部门的回应记录".encode("unicode_escape").decode() in zh


def test_site_data_survives_quotes_backslashes_and_line_separators() -> None:
    """The sites' JSON text sits in a single-quoted string of the script: a name with quotes,
    backslashes, a line separator or a closing script tag comes back exactly (escaped once for
    HTML), and cannot end the string or the script."""
    name = 'O\'Brien \\ "works" \u2028 </script><script>alert(1)</script>'
    page = build_map(_fc(_point(116.4, 39.9, id="q'1", name=name)), _fc(), _fc())

    assert "</script><script>alert" not in page
    (feature,) = [
        f for v in _json_values(page) if isinstance(v, dict) for f in v.get("features", [])
    ]
    assert feature["properties"]["t"] == html.escape(name)
    assert feature["geometry"]["coordinates"] == [116.4, 39.9]
