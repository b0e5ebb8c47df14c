"""List filters (bbox, point + radius, district), pagination and CSV downloads."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from domain.geo import distance_m
from registry.model import read_registry_file
from tests.conftest import EXAMPLE_REGISTRY


def ids(doc: dict[str, object]) -> list[str]:
    return [f["id"] for f in doc["features"]]  # type: ignore[attr-defined,index]


def test_distance() -> None:
    """One degree of latitude is about 111.2 km."""
    assert distance_m(0.0, 0.0, 0.0, 1.0) == pytest.approx(111_195, rel=1e-3)


def test_filters_and_paging(api: TestClient) -> None:
    """bbox, point+radius and district narrow the lists; pages carry the total found."""
    everything = api.get("/api/v1/stations").json()
    assert everything["meta"]["found"] == 8
    one = everything["features"][0]
    lon, lat = one["geometry"]["coordinates"]
    box = api.get(
        "/api/v1/stations",
        params={"bbox": f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"},
    ).json()
    assert ids(box) == [one["id"]]
    near = api.get("/api/v1/stations", params={"coordinates": f"{lat},{lon}", "radius": 50}).json()
    assert ids(near) == [one["id"]]
    district = one["properties"]["district"]
    in_district = api.get("/api/v1/enterprises", params={"district": district}).json()
    assert all(f["properties"]["district"] == district for f in in_district["features"])
    registry = read_registry_file(EXAMPLE_REGISTRY)
    with_cod = sorted(
        e.id
        for e in registry.enterprises
        if any(lim.pollutant == "cod" for o in e.outlets for lim in o.limits)
    )
    water = api.get("/api/v1/enterprises", params={"pollutant": "cod", "limit": 100}).json()
    assert sorted(ids(water)) == with_cod
    assert len(with_cod) >= 3  # the wastewater treatment plants at least
    assert api.get("/api/v1/enterprises", params={"pollutant": "kryptonite"}).status_code == 422
    page2 = api.get("/api/v1/enterprises", params={"limit": 5, "page": 2}).json()
    assert page2["meta"]["found"] == 12
    assert len(page2["features"]) == 5
    assert ids(page2) == ids(api.get("/api/v1/enterprises").json())[5:10]


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "1,2,3"},
        {"bbox": "a,b,c,d"},
        {"bbox": "10,10,0,0"},
        {"bbox": "nan,0,1,1"},
        {"coordinates": "39.9,116.4"},
        {"radius": "100"},
        {"coordinates": "95,0", "radius": "10"},
        {"coordinates": "39.9,116.4", "radius": "1000000"},
        {"bbox": "0,0,1,1", "coordinates": "0.5,0.5", "radius": "10"},
        {"limit": "0"},
        {"format": "xml"},
    ],
)
def test_bad_filters_are_4xx(api: TestClient, params: dict[str, str]) -> None:
    """Malformed filters get 422 problem+json naming the parameter."""
    r = api.get("/api/v1/stations", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_csv_downloads(api: TestClient) -> None:
    """Every list downloads as CSV with the licence notice and one row per site."""
    r = api.get("/api/v1/enterprises", params={"format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    lines = r.text.splitlines()
    assert lines[0].startswith("# ") and "Licence" in lines[0]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[1:]))))
    assert len(rows) == 12
    assert {row["status"] for row in rows} == {"no_data"}
    stations = api.get("/api/v1/stations", params={"format": "csv"}).text.splitlines()
    assert stations[1].startswith("id,name,name_zh,district,lon,lat,zone,aqi,aqi_category")
    assert len(stations) == 2 + 8


def test_a_body_that_is_not_json_is_named_as_the_body(api: TestClient) -> None:
    """A truncated JSON body gets 422 saying the body is not valid JSON, and where: not a
    'parameter' named after the character position pydantic reports."""
    r = api.post(
        "/api/v1/subscriptions",
        content=b'{"channel":',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["errors"] == [
        {
            "parameter": None,
            "in": "body",
            "message": "not valid JSON at character 11: Expecting value",
        }
    ]
    assert problem["detail"] == "body: not valid JSON at character 11: Expecting value"
