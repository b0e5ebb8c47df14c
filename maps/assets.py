"""The offline map assets: where the installed Leaflet packages keep their files, and their URLs.

Leaflet and Leaflet.markercluster come from the PyPI packages ``xstatic-leaflet`` and
``xstatic-leaflet-markercluster``; nothing third-party is copied into this repository. The API
mounts each directory of :func:`static_dirs` under a prefix (``/static`` by default), so the map
page can be served and viewed without reaching any other host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import xstatic.pkg.leaflet as _leaflet
import xstatic.pkg.leaflet_markercluster as _markercluster

__all__ = [
    "DEFAULT_PREFIX",
    "LEAFLET",
    "MARKERCLUSTER",
    "Asset",
    "css_urls",
    "js_urls",
    "static_dirs",
]

DEFAULT_PREFIX: Final = "/static"

# URL sub-prefixes under the static prefix, one per installed package.
LEAFLET: Final = "leaflet"
MARKERCLUSTER: Final = "leaflet-markercluster"


@dataclass(frozen=True, slots=True)
class Asset:
    """One file a map page loads: ``name`` is folium's key for it, so ours replace its CDN links."""

    name: str
    directory: str
    filename: str
    kind: Literal["js", "css"]

    def url(self, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{prefix.rstrip('/')}/{self.directory}/{self.filename}"


# The names are the ones folium uses for its default CDN links ("leaflet", "markerclusterjs", ...),
# so a header entry set by one of our per-instance overrides can never sit beside a CDN copy.
# Order matters: markercluster extends L, so Leaflet comes first. Leaflet's CSS finds its control
# images through relative URLs (images/layers.png), which resolve inside the same mounted directory.
ASSETS: Final[tuple[Asset, ...]] = (
    Asset("leaflet", LEAFLET, "leaflet.js", "js"),
    Asset("leaflet_css", LEAFLET, "leaflet.css", "css"),
    Asset("markerclusterjs", MARKERCLUSTER, "leaflet.markercluster.js", "js"),
    Asset("markerclustercss", MARKERCLUSTER, "MarkerCluster.css", "css"),
    Asset("markerclusterdefaultcss", MARKERCLUSTER, "MarkerCluster.Default.css", "css"),
)


def static_dirs() -> dict[str, Path]:
    """Map each URL sub-prefix to the installed package directory to serve under it.

    Mount each as ``StaticFiles(directory=path)`` at ``f"{prefix}/{sub_prefix}"``.
    """
    return {
        LEAFLET: Path(_leaflet.BASE_DIR),
        MARKERCLUSTER: Path(_markercluster.BASE_DIR),
    }


def js_urls(
    prefix: str = DEFAULT_PREFIX, *, directories: tuple[str, ...] = (LEAFLET, MARKERCLUSTER)
) -> list[tuple[str, str]]:
    """(name, URL) pairs of the scripts under ``prefix``, in load order, as folium's default_js."""
    return [
        (a.name, a.url(prefix)) for a in ASSETS if a.kind == "js" and a.directory in directories
    ]


def css_urls(
    prefix: str = DEFAULT_PREFIX, *, directories: tuple[str, ...] = (LEAFLET, MARKERCLUSTER)
) -> list[tuple[str, str]]:
    """(name, URL) pairs of the stylesheets under ``prefix``, as folium's default_css."""
    return [
        (a.name, a.url(prefix)) for a in ASSETS if a.kind == "css" and a.directory in directories
    ]
