"""Registry validation: every error names the file, the entry and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.model import RegistryError, parse_registry, read_registry_file

BASE: dict[str, Any] = {
    "regulators": [
        {"id": "city", "name": "City EEB", "level": "city"},
        {"id": "north-office", "name": "North office", "level": "district", "parent": "city"},
    ],
    "districts": [
        {
            "id": "north",
            "name": "North",
            "regulator": "north-office",
            "boundary": [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]],
        }
    ],
    "stations": [
        {"id": "st-1", "name": "Park", "lon": 0.5, "lat": 0.5, "devices": [{"id": "aq-1"}]}
    ],
    "enterprises": [
        {
            "id": "plant",
            "name": "Power plant",
            "industry": "thermal_power",
            "lon": 0.2,
            "lat": 0.2,
            "outlets": [
                {
                    "id": "plant-stack",
                    "name": "Stack 1",
                    "kind": "gas",
                    "reference_o2": 6,
                    "limits": [
                        {
                            "pollutant": "so2",
                            "value": 35,
                            "unit": "mg/m3",
                            "standard": "GB 13223-2011",
                            "o2_corrected": True,
                        }
                    ],
                    "devices": [{"id": "cems-1", "mn": "ABC123"}],
                }
            ],
        }
    ],
}


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(RegistryError) as info:
        parse_registry(doc, "city.yaml")
    assert str(info.value).startswith("city.yaml:")
    return info.value.problems


def edit(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        node: Any = doc
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        node[int(last) if last.isdigit() else last] = value
    return doc


def test_base_is_valid() -> None:
    """The minimal registry used by these tests validates."""
    reg = parse_registry(BASE, "city.yaml")
    assert [d.id for d, _, _ in reg.devices()] == ["aq-1", "cems-1"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"enterprises__0__outlets__0__limits__0__unit": "ppm"},
            "enterprises[0] (id=plant).outlets[0] (id=plant-stack): limits[0].unit",
        ),
        (
            {"enterprises__0__outlets__0__limits__0__pollutant": "kryptonite"},
            "enterprises[0] (id=plant).outlets[0] (id=plant-stack).limits[0].pollutant: unknown pollutant 'kryptonite'",
        ),
        ({"enterprises__0__outlets__0__limits__0__value": -1}, "limits[0].value"),
        (
            {"enterprises__0__outlets__0__reference_o2": None},
            "o2_corrected needs the outlet's reference_o2",
        ),
        ({"enterprises__0__industry": "bakery"}, "enterprises[0] (id=plant).industry"),
        ({"enterprises__0__lat": 123}, "enterprises[0] (id=plant).lat"),
        ({"enterprises__0__outlets": []}, "enterprises[0] (id=plant).outlets"),
        ({"stations__0__id": "bad id/with slash"}, "stations[0] (id=bad id/with slash).id"),
        ({"stations__0__zone": 3}, "stations[0] (id=st-1).zone"),
        (
            {"stations__0__devices__0__timezone": "Asia/Shanghai"},
            "devices[0] (id=aq-1).timezone: timezone must be a UTC offset",
        ),
        (
            {"stations__0__colour": "red"},
            "stations[0] (id=st-1).colour: Extra inputs are not permitted",
        ),
        (
            {"stations__0__district": "nowhere"},
            "stations[0] (id=st-1).district: no district 'nowhere'",
        ),
        (
            {"districts__0__boundary": [[0, 0], [1, 0], [1, 1], [0, 1]]},
            "districts[0] (id=north).boundary: boundary ring must be closed",
        ),
        ({"districts__0__boundary": [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]}, "crosses itself"),
        (
            {"districts__0__regulator": "ghost"},
            "districts[0] (id=north).regulator: no regulator 'ghost'",
        ),
        (
            {"regulators__1__parent": "ghost"},
            "regulators[1] (id=north-office).parent: no regulator 'ghost'",
        ),
        ({"regulators__0__parent": "north-office"}, "cycle"),
        ({"stations__0__devices__0__id": "cems-1"}, "devices: id 'cems-1' is used more than once"),
        (
            {"stations__0__id": "plant-stack"},
            "sites (stations and outlets): id 'plant-stack' is used more than once",
        ),
        ({"regulators": []}, "regulators: List should have at least 1 item"),
    ],
)
def test_rejections_name_entry_and_field(changes: dict[str, Any], expected: str) -> None:
    """Each rule violation is reported with the entry's index, id and field."""
    problems = problems_of(edit(**changes))
    assert any(expected in p for p in problems), problems


def test_not_a_mapping() -> None:
    """A file that is not a mapping says so."""
    assert "mapping" in problems_of(["a", "b"])[0]


def test_file_errors(tmp_path: Path) -> None:
    """Unreadable files and bad YAML are reported with the path."""
    with pytest.raises(RegistryError, match="cannot read"):
        read_registry_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regulators: [unclosed")
    with pytest.raises(RegistryError, match=r"(?s)bad\.yaml.*not valid YAML"):
        read_registry_file(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    assert read_registry_file(good).stations[0].id == "st-1"
