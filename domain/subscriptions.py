"""Who hears about what: the scope of a citizen's subscription and whether an event falls in it.

Pure: values in, answers out. A subscription watches one enterprise, one district, or a circle
(centre and radius in metres) on the ground; an event (an episode at an outlet or station, a
reply to a citizen's report) has a place made of whatever it knows: enterprise, district, point.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from domain.errors import ValidationError
from domain.geo import distance_m

MIN_RADIUS_M = 100.0  # below this a circle says less than the position's own uncertainty
MAX_RADIUS_M = 50_000.0  # a city; beyond it, subscribe to districts instead
MAX_TARGET_LENGTH = 320  # RFC 3696's longest address; plenty for a URL too

# Deliberately plain: one @, no spaces, no list or header separators, a dotted domain. Anything
# cleverer is the mail server's business; the opt-in message proves the address works.
_EMAIL = re.compile(
    r"^[^@\s,;<>\"()\[\]\\\x00-\x1f\x7f]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


class _HasAddress(Protocol):
    public_base_url: str | None
    api_host: str
    api_port: int


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class ScopeKind(StrEnum):
    ENTERPRISE = "enterprise"
    DISTRICT = "district"
    RADIUS = "radius"


@dataclass(frozen=True, slots=True)
class Scope:
    """What one subscription watches; exactly the fields of its kind are set."""

    kind: ScopeKind
    enterprise_id: str | None = None
    district_id: str | None = None
    lon: float | None = None
    lat: float | None = None
    radius_m: float | None = None

    def __post_init__(self) -> None:
        if self.kind is ScopeKind.ENTERPRISE and not self.enterprise_id:
            raise ValidationError("an enterprise subscription needs enterprise_id")
        if self.kind is ScopeKind.DISTRICT and not self.district_id:
            raise ValidationError("a district subscription needs district_id")
        if self.kind is ScopeKind.RADIUS:
            if self.lon is None or self.lat is None or self.radius_m is None:
                raise ValidationError("a radius subscription needs lon, lat and radius_m")
            if not (math.isfinite(self.lon) and -180 <= self.lon <= 180):
                raise ValidationError("lon must be between -180 and 180")
            if not (math.isfinite(self.lat) and -90 <= self.lat <= 90):
                raise ValidationError("lat must be between -90 and 90")
            if not (math.isfinite(self.radius_m) and MIN_RADIUS_M <= self.radius_m <= MAX_RADIUS_M):
                raise ValidationError(
                    f"radius_m must be between {MIN_RADIUS_M:g} and {MAX_RADIUS_M:g} metres"
                )


@dataclass(frozen=True, slots=True)
class Place:
    """Where an event happened, as far as it is known."""

    enterprise_id: str | None = None
    district_id: str | None = None
    lon: float | None = None
    lat: float | None = None
    # A reply about a report merged into an episode is also about that episode's enterprise.
    also_enterprise_id: str | None = None


def matches(scope: Scope, place: Place) -> bool:
    """Whether an event at ``place`` concerns a subscriber watching ``scope``.

    Enterprise: the event is that enterprise's (directly or through an episode). District: the
    event lies in it. Radius: the event's point (an enterprise's location, a report's location)
    is within the circle, edge included."""
    if scope.kind is ScopeKind.ENTERPRISE:
        return scope.enterprise_id is not None and scope.enterprise_id in (
            place.enterprise_id,
            place.also_enterprise_id,
        )
    if scope.kind is ScopeKind.DISTRICT:
        return place.district_id is not None and place.district_id == scope.district_id
    if place.lon is None or place.lat is None:
        return False
    assert scope.lat is not None
    assert scope.lon is not None
    assert scope.radius_m is not None
    return distance_m(scope.lon, scope.lat, place.lon, place.lat) <= scope.radius_m


def check_email(address: str) -> str:
    """The address, trimmed and with its domain lower-cased; ``ValidationError`` if not plain."""
    value = address.strip()
    if len(value) > MAX_TARGET_LENGTH or not _EMAIL.match(value):
        raise ValidationError(f"not a plain e-mail address: {address!r}", reason="bad_email")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _private_host(host: str) -> bool:
    """Whether ``host`` names this machine or a private network: loopback, link-local, RFC 1918,
    unique-local, unspecified, or a name that only resolves locally. Names are not resolved here
    (no I/O in domain); the sender refuses private addresses again at delivery time."""
    name = host.strip("[]").lower().rstrip(".")
    if name in ("localhost",) or name.endswith((".localhost", ".local", ".internal", ".lan")):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return "." not in name  # a bare name resolves on the local network only
    return not ip.is_global


def is_private_address(ip: str) -> bool:
    """Whether a resolved address is not on the public Internet."""
    return not ipaddress.ip_address(ip).is_global


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL with a host, no credentials, no spaces; a host on this machine or a
    private network is refused unless ``allow_private`` (tests, local use)."""
    value = url.strip()
    if len(value) > MAX_TARGET_LENGTH or any(c.isspace() for c in value):
        raise ValidationError("webhook URL must be at most 320 characters, without spaces")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError("webhook URL must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("webhook URL must not carry a user name or password")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValidationError("webhook URL has a bad port") from None
    if not allow_private and _private_host(parts.hostname):
        raise ValidationError(
            "webhook URL points to this machine or a private network", reason="private_target"
        )
    return value


def public_base(settings: _HasAddress) -> str:
    """Where links in messages point: the public URL, else the API's own address."""
    base = settings.public_base_url or f"http://{settings.api_host}:{settings.api_port}"
    return base.rstrip("/")


def confirm_url(base: str, token: str) -> str:
    """The opt-in link of a subscription."""
    return f"{base}/api/v1/subscriptions/confirm?{urlencode({'token': token})}"


def unsubscribe_url(base: str, token: str) -> str:
    """The one-click unsubscribe link (and RFC 8058 ``List-Unsubscribe`` target)."""
    return f"{base}/api/v1/subscriptions/unsubscribe?{urlencode({'token': token})}"
