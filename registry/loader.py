"""Loading a registry file into the database, placing sites in districts by spatial join."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely.geometry import Point, Polygon

from registry.model import Registry, RegistryError, read_registry_file
from store.db import transaction
from store.registry import RegistryChanges, write_registry

logger = logging.getLogger(__name__)


def place_in_districts(registry: Registry, path: str) -> dict[tuple[str, str], str]:
    """District id for every station and enterprise, given or found by point-in-polygon.

    Returns {(kind, site id): district id}; a site outside every district, or on the edge of
    two, is an error naming the entry, because a wrong district means a wrong regulator.
    """
    placed: dict[tuple[str, str], str] = {}
    missing: list[tuple[str, int, str, float, float]] = []
    for kind, i, site in registry.located():
        if site.district is not None:
            placed[(kind, site.id)] = site.district
        else:
            missing.append((kind, i, site.id, site.lon, site.lat))
    if not missing:
        return placed
    if not registry.districts:
        raise RegistryError(
            path,
            [
                f"{k}[{i}] (id={sid}).district: not given and the file has no districts"
                for k, i, sid, _, _ in missing
            ],
        )
    districts = gpd.GeoDataFrame(
        {"district": [d.id for d in registry.districts]},
        geometry=[Polygon(d.boundary) for d in registry.districts],
        crs="EPSG:4326",
    )
    points = gpd.GeoDataFrame(
        {"key": list(range(len(missing)))},
        geometry=[Point(lon, lat) for _, _, _, lon, lat in missing],
        crs="EPSG:4326",
    )
    joined = gpd.sjoin(points, districts, how="left", predicate="within")
    problems: list[str] = []
    for key, group in joined.groupby("key"):
        kind, i, sid, lon, lat = missing[int(key)]
        found = [d for d in group["district"].tolist() if isinstance(d, str)]
        if len(found) == 1:
            placed[(kind, sid)] = found[0]
        elif not found:
            problems.append(
                f"{kind}[{i}] (id={sid}).district: ({lon}, {lat}) is inside no district; give it"
            )
        else:
            problems.append(f"{kind}[{i}] (id={sid}).district: inside {', '.join(found)}; give it")
    if problems:
        raise RegistryError(path, problems)
    return placed


def registry_rows(
    registry: Registry, placed: dict[tuple[str, str], str]
) -> dict[str, list[dict[str, Any]]]:
    """Flatten the registry into table rows for ``store.registry.write_registry``."""
    rows: dict[str, list[dict[str, Any]]] = {
        "regulators": [],
        "districts": [],
        "stations": [],
        "enterprises": [],
        "outlets": [],
        "permit_limits": [],
        "devices": [],
    }
    for reg in registry.regulators:
        rows["regulators"].append(
            {
                "id": reg.id,
                "name": reg.name,
                "name_zh": reg.name_zh,
                "level": reg.level.value,
                "parent_id": reg.parent,
                "ack_deadline_minutes": reg.ack_deadline_minutes,
                "notify": reg.notify.model_dump(exclude_defaults=False),
            }
        )
    for dist in registry.districts:
        rows["districts"].append(
            {
                "id": dist.id,
                "name": dist.name,
                "name_zh": dist.name_zh,
                "regulator_id": dist.regulator,
                "boundary": {"type": "Polygon", "coordinates": [[list(p) for p in dist.boundary]]},
            }
        )
    for st in registry.stations:
        rows["stations"].append(
            {
                "id": st.id,
                "name": st.name,
                "name_zh": st.name_zh,
                "district_id": placed[("stations", st.id)],
                "lon": st.lon,
                "lat": st.lat,
                "zone": st.zone,
            }
        )
    for ent in registry.enterprises:
        rows["enterprises"].append(
            {
                "id": ent.id,
                "name": ent.name,
                "name_zh": ent.name_zh,
                "industry": ent.industry.value,
                "district_id": placed[("enterprises", ent.id)],
                "lon": ent.lon,
                "lat": ent.lat,
            }
        )
        for out in ent.outlets:
            rows["outlets"].append(
                {
                    "id": out.id,
                    "enterprise_id": ent.id,
                    "name": out.name,
                    "name_zh": out.name_zh,
                    "kind": out.kind,
                    "reference_o2": out.reference_o2,
                }
            )
            for lim in out.limits:
                rows["permit_limits"].append(
                    {
                        "outlet_id": out.id,
                        "pollutant": lim.pollutant,
                        "period": lim.period.value,
                        "value": lim.value,
                        "unit": lim.unit,
                        "standard": lim.standard,
                        "o2_corrected": lim.o2_corrected,
                    }
                )
    for device, site_id, _ in registry.devices():
        rows["devices"].append(
            {
                "id": device.id,
                "site_id": site_id,
                "mn": device.mn,
                "hj212_password": device.hj212_password,
                "timezone": device.timezone,
            }
        )
    return rows


def load_registry(database_url: str, path: Path) -> RegistryChanges:
    """Validate ``path`` and write it in one transaction: all of it or none of it."""
    registry = read_registry_file(path)
    placed = place_in_districts(registry, str(path))
    rows = registry_rows(registry, placed)
    with transaction(database_url) as conn:
        return write_registry(conn, rows)
