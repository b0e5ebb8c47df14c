"""Scope matching and target checks, as pure functions."""

from __future__ import annotations

import pytest

from domain.errors import ValidationError
from domain.geo import distance_m
from domain.subscriptions import (
    Place,
    Scope,
    ScopeKind,
    check_email,
    check_webhook_url,
    matches,
)

PLANT = Place(enterprise_id="lc-ent-tp-gangkou", district_id="lc-gangkou", lon=116.47, lat=39.84)


def test_haversine_one_degree_of_latitude() -> None:
    """One degree of latitude on the mean sphere is 111.195 km; a point is 0 m from itself."""
    assert distance_m(116.0, 39.0, 116.0, 40.0) == pytest.approx(111_195, abs=1)
    assert distance_m(116.47, 39.84, 116.47, 39.84) == 0.0


@pytest.mark.parametrize(
    ("scope", "place", "expected"),
    [
        (Scope(ScopeKind.ENTERPRISE, enterprise_id="lc-ent-tp-gangkou"), PLANT, True),
        (Scope(ScopeKind.ENTERPRISE, enterprise_id="lc-ent-tp-north"), PLANT, False),
        # A report merged into the plant's episode concerns the plant's subscribers.
        (
            Scope(ScopeKind.ENTERPRISE, enterprise_id="lc-ent-tp-gangkou"),
            Place(
                district_id="lc-gangkou",
                lon=116.5,
                lat=39.9,
                also_enterprise_id="lc-ent-tp-gangkou",
            ),
            True,
        ),
        (Scope(ScopeKind.DISTRICT, district_id="lc-gangkou"), PLANT, True),
        (Scope(ScopeKind.DISTRICT, district_id="lc-nanhe"), PLANT, False),
        (Scope(ScopeKind.DISTRICT, district_id="lc-nanhe"), Place(), False),
        # 0.01° of latitude is 1112 m: inside 1200 m, outside 1000 m.
        (Scope(ScopeKind.RADIUS, lon=116.47, lat=39.83, radius_m=1200), PLANT, True),
        (Scope(ScopeKind.RADIUS, lon=116.47, lat=39.83, radius_m=1000), PLANT, False),
        (
            Scope(ScopeKind.RADIUS, lon=116.47, lat=39.83, radius_m=1200),
            Place(district_id="x"),
            False,
        ),
    ],
)
def test_matches(scope: Scope, place: Place, expected: bool) -> None:
    """Enterprise, district and radius scopes, in and out."""
    assert matches(scope, place) is expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lon": 116.0, "lat": 39.0, "radius_m": 50.0}, "radius_m must be between"),
        ({"lon": 116.0, "lat": 39.0, "radius_m": 60_000.0}, "radius_m must be between"),
        ({"lon": 200.0, "lat": 39.0, "radius_m": 500.0}, "lon must be"),
        ({"lon": 116.0, "lat": float("nan"), "radius_m": 500.0}, "lat must be"),
        ({"lon": 116.0, "lat": 39.0}, "needs lon, lat and radius_m"),
    ],
)
def test_bad_radius_scopes(fields: dict[str, float], message: str) -> None:
    """A circle needs a real centre and a radius between 100 m and 50 km."""
    with pytest.raises(ValidationError, match=message):
        Scope(ScopeKind.RADIUS, **fields)  # type: ignore[arg-type]


def test_email_addresses() -> None:
    """Plain addresses pass (domain lower-cased); lists, headers and spaces do not."""
    assert check_email(" Resident@Example.ORG ") == "Resident@example.org"
    for bad in [
        "a@b",
        "a b@example.org",
        "a@example.org,b@example.org",
        "a@example.org\r\nBcc: x@y.z",
        "x",
    ]:
        with pytest.raises(ValidationError):
            check_email(bad)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://intranet/hook",
        "https://printer.local/hook",
    ],
)
def test_private_webhook_targets_refused(url: str) -> None:
    """Loopback, private, link-local and local-only names are refused unless allowed."""
    with pytest.raises(ValidationError, match="private network"):
        check_webhook_url(url, allow_private=False)
    assert check_webhook_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org/x", "https://user:pw@example.org/x", "https://exa mple.org", "example.org"],
)
def test_malformed_webhook_urls(url: str) -> None:
    """Only http(s) URLs with a host and no credentials."""
    with pytest.raises(ValidationError):
        check_webhook_url(url, allow_private=True)


def test_public_webhook_url_accepted() -> None:
    """A public https URL passes unchanged."""
    assert check_webhook_url("https://hooks.example.org/sunlight", allow_private=False)
