"""The shipped example registry loads and has the city, sites and limits the demo relies on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from shapely.geometry import Point, Polygon
from shapely.ops import unary_union

from domain.readings import Period
from registry.model import (
    Enterprise,
    Industry,
    Level,
    Outlet,
    Registry,
    Station,
    read_registry_file,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "registry.yaml"


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The example registry, validated by the real loader."""
    return read_registry_file(EXAMPLE)


def _outlets(registry: Registry) -> list[tuple[Industry, Outlet]]:
    return [(e.industry, o) for e in registry.enterprises for o in e.outlets]


def test_regulators_form_city_with_district_branches(registry: Registry) -> None:
    """One city regulator and at least three district regulators whose parent is the city."""
    cities = [r for r in registry.regulators if r.level is Level.CITY]
    assert len(cities) == 1
    districts = [r for r in registry.regulators if r.level is Level.DISTRICT]
    assert len(districts) >= 3
    assert all(r.parent == cities[0].id for r in districts)


def test_districts_tile_the_city_without_overlap(registry: Registry) -> None:
    """At least three district polygons, pairwise disjoint, whose union is one gap-free shape."""
    polygons = [Polygon(d.boundary) for d in registry.districts]
    assert len(polygons) >= 3
    assert all(p.is_valid for p in polygons)
    for i, a in enumerate(polygons):
        for b in polygons[i + 1 :]:
            assert a.intersection(b).area == pytest.approx(0.0, abs=1e-12)
    union = unary_union(polygons)
    assert union.geom_type == "Polygon"
    assert len(union.interiors) == 0
    assert union.area == pytest.approx(sum(p.area for p in polygons))


def test_every_district_has_a_district_regulator(registry: Registry) -> None:
    """Each district is supervised by a district-level regulator."""
    levels = {r.id: r.level for r in registry.regulators}
    assert all(levels[d.regulator] is Level.DISTRICT for d in registry.districts)


def test_sites_lie_in_exactly_one_district(registry: Registry) -> None:
    """Every site is inside exactly one polygon, the named one when given; some rely on the join."""
    polygons = {d.id: Polygon(d.boundary) for d in registry.districts}
    sites: list[Station | Enterprise] = [*registry.stations, *registry.enterprises]
    for site in sites:
        containing = [d for d, p in polygons.items() if p.contains(Point(site.lon, site.lat))]
        assert len(containing) == 1, site.id
        if site.district is not None:
            assert containing == [site.district], site.id
    assert sum(1 for s in sites if s.district is None) >= 3


def test_eight_ambient_stations_with_one_device_each(registry: Registry) -> None:
    """Eight stations, mostly zone 2 with at least one zone 1, each with exactly one device."""
    assert len(registry.stations) == 8
    zones = Counter(s.zone for s in registry.stations)
    assert zones[1] >= 1
    assert zones[2] > zones[1]
    assert all(len(s.devices) == 1 for s in registry.stations)


def test_twelve_enterprises_cover_the_required_industries(registry: Registry) -> None:
    """Twelve enterprises across thermal power, steel, cement, chemical and wastewater treatment."""
    assert len(registry.enterprises) == 12
    industries = {e.industry for e in registry.enterprises}
    assert industries >= {
        Industry.THERMAL_POWER,
        Industry.STEEL,
        Industry.CEMENT,
        Industry.CHEMICAL,
        Industry.WASTEWATER_TREATMENT,
    }


def test_every_outlet_has_its_cems_device(registry: Registry) -> None:
    """Each outlet has a device cems-<outlet> with an HJ 212 MN of 14-24 characters and a PW."""
    for _, outlet in _outlets(registry):
        devices = {d.id: d for d in outlet.devices}
        device = devices[f"cems-{outlet.id}"]
        assert device.mn is not None
        assert 14 <= len(device.mn) <= 24
        assert device.mn.isalnum()
        assert device.hj212_password


@pytest.mark.parametrize(
    ("industry", "reference_o2"),
    [(Industry.CEMENT, 10.0), (Industry.WASTEWATER_TREATMENT, None)],
)
def test_reference_oxygen_by_industry(
    registry: Registry, industry: Industry, reference_o2: float | None
) -> None:
    """Cement kilns are judged at 10 % O2; wastewater outlets have no reference O2."""
    outlets = [o for ind, o in _outlets(registry) if ind is industry]
    assert outlets
    assert all(o.reference_o2 == reference_o2 for o in outlets)


def test_coal_units_have_ultra_low_limits_at_six_percent(registry: Registry) -> None:
    """Coal power units carry 10/35/50 mg/m3 hourly limits judged at 6 % O2."""
    units = [o for ind, o in _outlets(registry) if ind is Industry.THERMAL_POWER]
    coal = [o for o in units if o.reference_o2 == 6]
    assert len(coal) >= 2
    for outlet in coal:
        limits = {lim.pollutant: lim for lim in outlet.limits}
        assert {p: lim.value for p, lim in limits.items()} == {"pm": 10, "so2": 35, "nox": 50}
        assert all(lim.o2_corrected and lim.period is Period.HOUR for lim in limits.values())
        assert all(lim.unit == "mg/m3" for lim in limits.values())


def test_gas_outlets_limit_pm_so2_nox_hourly(registry: Registry) -> None:
    """Every gas outlet limits particulate, SO2 and NOx as hourly means in mg/m3."""
    gas = [o for _, o in _outlets(registry) if o.kind == "gas"]
    assert gas
    for outlet in gas:
        assert {lim.pollutant for lim in outlet.limits} == {"pm", "so2", "nox"}
        assert all(lim.period is Period.HOUR and lim.unit == "mg/m3" for lim in outlet.limits)


def test_wastewater_plants_have_class_1a_daily_limits(registry: Registry) -> None:
    """Municipal plants discharge under GB 18918-2002 class 1A daily limits."""
    plants = [o for ind, o in _outlets(registry) if ind is Industry.WASTEWATER_TREATMENT]
    assert len(plants) >= 3
    for outlet in plants:
        assert outlet.kind == "water"
        limits = {lim.pollutant: lim for lim in outlet.limits}
        assert {p: lim.value for p, lim in limits.items()} == {
            "cod": 50,
            "nh3n": 5,
            "tn": 15,
            "tp": 0.5,
        }
        assert all(lim.period is Period.DAY and lim.unit == "mg/L" for lim in limits.values())
