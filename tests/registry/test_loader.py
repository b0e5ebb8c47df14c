"""Loading registries into a real database: idempotent, updating in place, placed by district."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from registry.loader import load_registry
from registry.model import RegistryError
from tests.conftest import EXAMPLE_REGISTRY
from tests.registry.test_model import BASE


def write(tmp_path: Path, doc: dict[str, Any], name: str = "reg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def test_example_loads_twice_without_changes(database_url: str) -> None:
    """The shipped example loads; loading it again changes nothing."""
    first = load_registry(database_url, EXAMPLE_REGISTRY)
    assert first.inserted["enterprises"] == 12
    assert first.inserted["stations"] == 8
    second = load_registry(database_url, EXAMPLE_REGISTRY)
    assert not second.changed, (second.inserted, second.updated, second.deleted)


def test_changed_file_updates_in_place(database_url: str, tmp_path: Path) -> None:
    """A changed limit is updated, a removed limit deleted, and nothing else touched."""
    load_registry(database_url, write(tmp_path, BASE))
    doc = copy.deepcopy(BASE)
    outlet = doc["enterprises"][0]["outlets"][0]
    outlet["limits"] = [{**outlet["limits"][0], "value": 50}]
    outlet["limits"].append(
        {
            "pollutant": "nox",
            "value": 50,
            "unit": "mg/m3",
            "standard": "ultra-low",
            "o2_corrected": True,
        }
    )
    changes = load_registry(database_url, write(tmp_path, doc))
    assert dict(changes.updated) == {"permit_limits": 1}
    assert dict(changes.inserted) == {"permit_limits": 1}
    doc["enterprises"][0]["outlets"][0]["limits"] = doc["enterprises"][0]["outlets"][0]["limits"][
        :1
    ]
    changes = load_registry(database_url, write(tmp_path, doc))
    assert dict(changes.deleted) == {"permit_limits": 1}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select pollutant, value from permit_limits").fetchall()
    assert rows == [("so2", 50.0)]


def test_sites_without_district_are_placed_by_spatial_join(
    database_url: str, tmp_path: Path
) -> None:
    """A station and an enterprise with no district land in the polygon that contains them."""
    doc = copy.deepcopy(BASE)
    doc["regulators"].append(
        {"id": "south-office", "name": "South", "level": "district", "parent": "city"}
    )
    doc["districts"].append(
        {
            "id": "south",
            "name": "South",
            "regulator": "south-office",
            "boundary": [[0, -1], [1, -1], [1, 0], [0, 0], [0, -1]],
        }
    )
    doc["stations"][0]["lat"] = -0.5
    load_registry(database_url, write(tmp_path, doc))
    with psycopg.connect(database_url) as conn:
        station = conn.execute("select district_id from stations").fetchone()
        enterprise = conn.execute("select district_id from enterprises").fetchone()
    assert station == ("south",)
    assert enterprise == ("north",)


def test_site_outside_every_district_is_an_error(database_url: str, tmp_path: Path) -> None:
    """A site outside all polygons is rejected with its entry named, and nothing is written."""
    doc = copy.deepcopy(BASE)
    doc["stations"][0]["lon"] = 50.0
    with pytest.raises(
        RegistryError, match=r"stations\[0\] \(id=st-1\)\.district: .* inside no district"
    ):
        load_registry(database_url, write(tmp_path, doc))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from regulators").fetchone() == (0,)


def test_a_site_id_keeps_its_kind_across_loads(database_url: str, tmp_path: Path) -> None:
    """A station's id reused by an outlet in a later file is refused, and nothing is written."""
    load_registry(database_url, write(tmp_path, BASE))
    doc = copy.deepcopy(BASE)
    doc["stations"][0]["id"] = "st-2"
    doc["stations"][0]["devices"][0]["id"] = "aq-2"
    doc["enterprises"][0]["outlets"][0]["id"] = "st-1"
    doc["enterprises"][0]["outlets"][0]["devices"][0]["id"] = "cems-2"
    doc["enterprises"][0]["outlets"][0]["devices"][0]["mn"] = "ABC124"
    with pytest.raises(
        ValueError, match="'st-1' is already registered as a station, not an outlet"
    ):
        load_registry(database_url, write(tmp_path, doc))
    with psycopg.connect(database_url) as conn:
        sites = conn.execute("select id, kind from sites order by id").fetchall()
    assert sites == [("plant-stack", "outlet"), ("st-1", "station")]


def test_an_outlet_whose_limits_are_all_removed_has_none(database_url: str, tmp_path: Path) -> None:
    load_registry(database_url, write(tmp_path, BASE))
    doc = copy.deepcopy(BASE)
    doc["enterprises"][0]["outlets"][0]["limits"] = []
    changes = load_registry(database_url, write(tmp_path, doc))
    assert dict(changes.deleted) == {"permit_limits": 1}
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from permit_limits").fetchone() == (0,)
