"""The map's "Report pollution" control: pick the place (click the map or use the browser's
location), say what and optionally add a photo and a contact, then the page solves the
proof-of-work challenge and posts the report; the answer is the tracking link.

Plain inline script, no library beyond Leaflet: SHA-256 comes from WebCrypto, or from the small
implementation below where WebCrypto is missing (pages served over plain HTTP to another host
are not a secure context, and browsers withhold ``crypto.subtle`` there).
"""

from __future__ import annotations

import html
import math
from typing import Any, Final

import folium
from branca.element import MacroElement
from folium.template import Template

from domain.reports import CATEGORY_LABELS, STATUS_LABELS
from maps.report_page import STATUS_COLOURS

LABELS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "open": "Report pollution",
        "title": "Report pollution",
        "where": "Click the map where it is, or",
        "locate": "use my location",
        "chosen": "Place chosen: {lat}, {lon}",
        "what": "What do you notice?",
        "describe": "Describe it (public)",
        "placeholder": "e.g. dark smoke from the tall chimney since 7 am",
        "photo": "Photo (optional; camera and GPS data are removed)",
        "when": "When did you notice it? (optional; default: now)",
        "contact": "Your e-mail or phone (optional; only the office sees it, never published)",
        "send": "Send report",
        "close": "Close",
        "need_point": "First choose the place: click the map or use your location.",
        "working": "Sending… (the browser solves a small puzzle that keeps spam out)",
        "done": "Report received. The office's reply will appear on your tracking page:",
        "link": "Your tracking link",
        "no_location": "Your browser did not give a location: ",
        "failed": "Sending failed: ",
        "recent": "Citizen report",
        "details": "Report, replies and evidence",
    },
    "zh": {
        "open": "举报污染",
        "title": "举报污染",
        "where": "在地图上点击发生地点，或",
        "locate": "使用我的位置",
        "chosen": "已选地点：{lat}，{lon}",
        "what": "您发现了什么？",
        "describe": "情况描述（公开）",
        "placeholder": "例如：早上7点起高烟囱冒黑烟",
        "photo": "照片（可选；相机和GPS信息会被删除）",
        "when": "发现时间（可选；默认为现在）",
        "contact": "您的邮箱或电话（可选；仅负责部门可见，绝不公开）",
        "send": "提交举报",
        "close": "关闭",
        "need_point": "请先选择地点：点击地图或使用您的位置。",
        "working": "正在提交…（浏览器正在完成一道防垃圾信息的小计算）",
        "done": "举报已收到。负责部门的答复将显示在您的跟踪页面：",
        "link": "您的跟踪链接",
        "no_location": "浏览器未能提供位置：",
        "failed": "提交失败：",
        "recent": "市民举报",
        "details": "举报、答复与证据",
    },
}

RECENT_DAYS: Final = 30  # reports shown on the map

CSS: Final = """<style>
.sl-report { background: #fff; padding: 0; max-width: 320px; font-size: 13px; }
.sl-report [hidden] { display: none !important; }
.sl-report-open { display: block; border: 0; background: #b2182b; color: #fff; font-weight: 600;
    padding: .45em .8em; cursor: pointer; font-size: 13px; border-radius: 4px; }
.sl-report-form { padding: .6em .8em; max-height: 70vh; overflow-y: auto; }
.sl-report-form h4 { margin: 0 0 .4em; font-size: 1.05em; }
.sl-report-form label { display: block; margin: .5em 0 .15em; font-weight: 600; }
.sl-report-form select, .sl-report-form textarea, .sl-report-form input[type=text],
.sl-report-form input[type=file], .sl-report-form input[type=datetime-local] { width: 100%;
    box-sizing: border-box; font: inherit; }
.sl-report-form textarea { min-height: 4.5em; }
.sl-report-form .sl-report-locate { border: 0; background: none; color: #0b57d0; padding: 0;
    text-decoration: underline; cursor: pointer; font: inherit; }
.sl-report-form .sl-report-point { color: #1a7f37; margin: .2em 0; }
.sl-report-form button[type=submit] { margin-top: .7em; padding: .35em .9em; font-weight: 600; }
.sl-report-msg { margin: .5em 0 0; }
.sl-report-msg.sl-error { color: #b2182b; }
</style>"""

# SHA-256 round constants: the first 32 bits of the fractional parts of the cube roots of the
# first 64 primes (FIPS 180-4 §4.2.2), computed here rather than typed in.


def _icbrt(n: int) -> int:
    x = round(math.cbrt(n))
    while x * x * x > n:
        x -= 1
    while (x + 1) * (x + 1) * (x + 1) <= n:
        x += 1
    return x


_PRIMES = [p for p in range(2, 312) if all(p % q for q in range(2, int(p**0.5) + 1))][:64]
SHA256_K: Final = [_icbrt(p << 96) & 0xFFFFFFFF for p in _PRIMES]

_SCRIPT: Final = Template(
    """
    {% macro script(this, kwargs) %}
    (function (map, cfg) {
        var t = cfg.t;
        var K = cfg.k;
        function sha256(msg) {
            var H = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c,
                     0x1f83d9ab, 0x5be0cd19];
            var l = msg.length, n = ((l + 9 + 63) >> 6) << 6, bytes = new Uint8Array(n);
            bytes.set(msg);
            bytes[l] = 0x80;
            var bits = l * 8;
            bytes[n - 5] = Math.floor(bits / 4294967296) & 255;
            bytes[n - 4] = (bits >>> 24) & 255; bytes[n - 3] = (bits >>> 16) & 255;
            bytes[n - 2] = (bits >>> 8) & 255; bytes[n - 1] = bits & 255;
            var W = new Int32Array(64);
            for (var off = 0; off < n; off += 64) {
                var i;
                for (i = 0; i < 16; i++) {
                    W[i] = (bytes[off + 4 * i] << 24) | (bytes[off + 4 * i + 1] << 16)
                        | (bytes[off + 4 * i + 2] << 8) | bytes[off + 4 * i + 3];
                }
                for (i = 16; i < 64; i++) {
                    var x = W[i - 15], y = W[i - 2];
                    var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
                    var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
                    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
                }
                var a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6],
                    h = H[7];
                for (i = 0; i < 64; i++) {
                    var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21))
                        ^ ((e >>> 25) | (e << 7));
                    var t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
                    var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19))
                        ^ ((a >>> 22) | (a << 10));
                    var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
                    h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
                }
                H[0] = (H[0] + a) | 0; H[1] = (H[1] + b) | 0; H[2] = (H[2] + c) | 0;
                H[3] = (H[3] + d) | 0; H[4] = (H[4] + e) | 0; H[5] = (H[5] + f) | 0;
                H[6] = (H[6] + g) | 0; H[7] = (H[7] + h) | 0;
            }
            var out = new Uint8Array(32);
            for (var j = 0; j < 8; j++) {
                out[4 * j] = (H[j] >>> 24) & 255; out[4 * j + 1] = (H[j] >>> 16) & 255;
                out[4 * j + 2] = (H[j] >>> 8) & 255; out[4 * j + 3] = H[j] & 255;
            }
            return out;
        }
        function zeroBits(d) {
            var n = 0;
            for (var i = 0; i < d.length; i++) {
                if (d[i] === 0) { n += 8; continue; }
                return n + Math.clz32(d[i]) - 24;
            }
            return n;
        }
        var subtle = window.isSecureContext && window.crypto && window.crypto.subtle;
        var encoder = new TextEncoder();
        // Hashcash: the first counter whose SHA-256("<nonce>:<counter>") starts with enough
        // zero bits; digests are asked for in batches so WebCrypto's promises overlap.
        async function solve(nonce, difficulty, useSubtle) {
            for (var base = 0; base < 1e9; base += 512) {
                var batch = [];
                for (var i = 0; i < 512; i++) { batch.push(String(base + i)); }
                var inputs = batch.map(function (s) { return encoder.encode(nonce + ":" + s); });
                var digests = useSubtle
                    ? await Promise.all(inputs.map(function (m) {
                        return subtle.digest("SHA-256", m); }))
                    : inputs.map(sha256);
                for (var k = 0; k < batch.length; k++) {
                    if (zeroBits(new Uint8Array(digests[k])) >= difficulty) { return batch[k]; }
                }
            }
            throw new Error("no solution");
        }
        window.sunlight_report = {sha256: sha256, solve: solve, subtle: !!subtle};

        var Control = L.Control.extend({
            options: {position: "topleft"},
            onAdd: function () {
                var div = L.DomUtil.create("div", "sl-report leaflet-bar");
                div.innerHTML = cfg.html;
                L.DomEvent.disableClickPropagation(div);
                L.DomEvent.disableScrollPropagation(div);
                return div;
            }
        });
        // Reports of the last 30 days, coloured by status: a resident sees whether others
        // noticed the same, an inspector sees where they cluster. Text goes in as text nodes.
        var since = new Date(Date.now() - cfg.days * 864e5).toISOString();
        fetch(cfg.api + "?limit=1000&start=" + encodeURIComponent(since))
            .then(function (r) { return r.ok ? r.json() : null; })
            .then(function (fc) {
                if (!fc) { return; }
                var layer = L.layerGroup();
                fc.features.forEach(function (f) {
                    var p = f.properties, c = f.geometry.coordinates;
                    var own = Object.prototype.hasOwnProperty;
                    var status = own.call(cfg.statuses, p.status)
                        ? cfg.statuses[p.status] : p.status;
                    var what = own.call(cfg.categories, p.category)
                        ? cfg.categories[p.category] : p.category;
                    var marker = L.circleMarker([c[1], c[0]], {radius: 6, color: "#fff",
                        weight: 2, dashArray: "2 2", fillOpacity: 0.9,
                        fillColor: own.call(cfg.colours, p.status)
                            ? cfg.colours[p.status] : "#777"});
                    marker.bindTooltip(t.recent + ": " + what + " · " + status,
                                       {direction: "top", offset: [0, -6]});
                    marker.bindPopup(function () {
                        var div = document.createElement("div");
                        div.className = "sl-popup sl-report-popup";
                        var h = document.createElement("h4");
                        h.textContent = t.recent + ": " + what;
                        var meta = document.createElement("p");
                        meta.className = "sl-meta";
                        meta.textContent = status + " · "
                            + p.received_at.slice(0, 16).replace("T", " ") + " UTC";
                        var text = document.createElement("p");
                        text.textContent = p.description;
                        var a = document.createElement("a");
                        a.href = p.page_url + "?lang=" + cfg.lang;
                        a.textContent = t.details + " →";
                        [h, meta, text, a].forEach(function (e) { div.appendChild(e); });
                        return div;
                    }, {maxWidth: 320});
                    layer.addLayer(marker);
                });
                layer.addTo(map);
            })
            .catch(function () { /* the map is useful without the reports layer */ });

        var control = new Control();
        control.addTo(map);
        var root = control.getContainer();
        function $(sel) { return root.querySelector(sel); }
        var form = $(".sl-report-form"), opener = $(".sl-report-open"), msg = $(".sl-report-msg");
        var point = null, marker = null;
        function say(text, isError, linkHref) {
            msg.textContent = text;
            msg.className = "sl-report-msg" + (isError ? " sl-error" : "");
            if (linkHref) {
                var a = document.createElement("a");
                a.href = linkHref;
                a.className = "sl-report-link";
                a.textContent = t.link;
                msg.appendChild(document.createElement("br"));
                msg.appendChild(a);
            }
            if (msg.scrollIntoView) { msg.scrollIntoView({block: "nearest"}); }
        }
        function setPoint(lat, lon) {
            point = {lat: lat, lon: lon};
            if (marker) { marker.setLatLng([lat, lon]); }
            else {
                marker = L.circleMarker([lat, lon], {radius: 9, color: "#b2182b", weight: 3,
                    fillColor: "#fff", fillOpacity: 0.6}).addTo(map);
            }
            $(".sl-report-point").textContent = t.chosen
                .replace("{lat}", lat.toFixed(5)).replace("{lon}", lon.toFixed(5));
        }
        opener.addEventListener("click", function () {
            form.hidden = !form.hidden;
            opener.hidden = !form.hidden;
        });
        $(".sl-report-close").addEventListener("click", function () {
            form.hidden = true;
            opener.hidden = false;
        });
        // 'preclick' reaches the map even where a district or site would open its popup
        // (Leaflet stops the click itself there); while the form is open a click picks the
        // place, so that popup is closed again.
        map.on("preclick", function (e) {
            if (form.hidden || !e.latlng) { return; }
            setPoint(e.latlng.lat, e.latlng.lng);
            setTimeout(function () { map.closePopup(); }, 0);
        });
        $(".sl-report-locate").addEventListener("click", function () {
            if (!navigator.geolocation) { say(t.no_location + "-", true); return; }
            navigator.geolocation.getCurrentPosition(function (pos) {
                setPoint(pos.coords.latitude, pos.coords.longitude);
                map.setView([pos.coords.latitude, pos.coords.longitude],
                            Math.max(map.getZoom(), 14));
            }, function (err) { say(t.no_location + err.message, true); },
            {enableHighAccuracy: true, timeout: 15000});
        });
        form.addEventListener("submit", async function (ev) {
            ev.preventDefault();
            if (!point) { say(t.need_point, true); return; }
            var button = form.querySelector("button[type=submit]");
            button.disabled = true;
            say(t.working, false);
            try {
                var answer = await fetch(cfg.api + "/challenge", {method: "POST"});
                var challenge = await answer.json();
                if (!answer.ok) { throw new Error(challenge.detail || answer.status); }
                var solution = await solve(challenge.nonce, challenge.difficulty, !!subtle);
                var data = new FormData(form);
                data.set("lon", point.lon);
                data.set("lat", point.lat);
                data.set("challenge", challenge.nonce);
                data.set("solution", solution);
                var when = form.querySelector("#sl-report-when").value;
                if (when) { data.set("observed_at", new Date(when).toISOString()); }
                var file = form.querySelector("input[type=file]");
                if (!file.files.length) { data.delete("photo"); }
                if (!String(data.get("contact") || "").trim()) { data.delete("contact"); }
                var sent = await fetch(cfg.api, {method: "POST", body: data});
                var body = await sent.json();
                if (!sent.ok) { throw new Error(body.detail || body.title || sent.status); }
                say(t.done, false, body.page_url + "?lang=" + cfg.lang);
                form.querySelector("textarea").value = "";
                form.querySelector("#sl-report-when").value = "";
                file.value = "";
            } catch (err) {
                say(t.failed + (err && err.message ? err.message : err), true);
            } finally {
                button.disabled = false;
            }
        });
    })({{ this._parent.get_name() }}, {{ this.data|tojson }});
    {% endmacro %}
    """
)


class _ReportScript(MacroElement):
    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "SunlightReport"
        self._template = _SCRIPT
        self.data = data


def _form_html(lang: str) -> str:
    w = {k: html.escape(v, quote=True) for k, v in LABELS[lang].items()}
    options = "".join(
        f'<option value="{c.value}">{html.escape(names[1 if lang == "zh" else 0])}</option>'
        for c, names in CATEGORY_LABELS.items()
    )
    return (
        f'<button type="button" class="sl-report-open">{w["open"]}</button>'
        '<form class="sl-report-form" hidden>'
        f"<h4>{w['title']}</h4>"
        f'<p>{w["where"]} <button type="button" class="sl-report-locate">{w["locate"]}</button>'
        '</p><p class="sl-report-point" aria-live="polite"></p>'
        f'<label for="sl-report-category">{w["what"]}</label>'
        f'<select id="sl-report-category" name="category">{options}</select>'
        f'<label for="sl-report-description">{w["describe"]}</label>'
        '<textarea id="sl-report-description" name="description" required minlength="3"'
        f' maxlength="4000" placeholder="{w["placeholder"]}"></textarea>'
        f'<label for="sl-report-when">{w["when"]}</label>'
        # No name: the page turns the local time into UTC ISO 8601 before sending.
        '<input id="sl-report-when" type="datetime-local">'
        f'<label for="sl-report-photo">{w["photo"]}</label>'
        '<input id="sl-report-photo" type="file" name="photo" accept="image/*">'
        f'<label for="sl-report-contact">{w["contact"]}</label>'
        '<input id="sl-report-contact" type="text" name="contact" maxlength="200"'
        ' autocomplete="email">'
        f'<button type="submit">{w["send"]}</button> '
        f'<button type="button" class="sl-report-close">{w["close"]}</button>'
        '<p class="sl-report-msg" role="status" aria-live="polite"></p>'
        "</form>"
    )


def add_report_control(fmap: folium.Map, *, lang: str, api_url: str = "/api/v1/reports") -> None:
    """Add the control to ``fmap``: ``api_url`` is where reports are posted (its
    ``/challenge`` gives the proof-of-work challenge)."""
    if lang not in LABELS:
        raise ValueError(f"lang must be one of {sorted(LABELS)}, not {lang!r}")
    root = fmap.get_root()
    root.header.add_child(folium.Element(CSS), name="sunlight_report_css")  # type: ignore[attr-defined]
    fmap.add_child(
        _ReportScript(
            {
                "t": LABELS[lang],
                "k": SHA256_K,
                "html": _form_html(lang),
                "api": api_url.rstrip("/"),
                "lang": lang,
                "days": RECENT_DAYS,
                "statuses": {
                    k.value: v[1 if lang == "zh" else 0] for k, v in STATUS_LABELS.items()
                },
                "categories": {
                    k.value: v[1 if lang == "zh" else 0] for k, v in CATEGORY_LABELS.items()
                },
                "colours": STATUS_COLOURS,
            }
        ),
        name="sunlight_report",
    )
