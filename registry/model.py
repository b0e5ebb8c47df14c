"""The registry file's schema: validated once, into frozen values, with cross-references checked.

The file is YAML (see ``examples/registry.yaml``); every error names the file, the entry and the
field, because the person fixing it is editing that file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from domain.errors import ValidationError
from domain.pollutants import Medium, get_pollutant
from domain.readings import Period
from domain.units import normalize_unit

Identifier = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Letters, digits, '_', '.', '-'; usable in MQTT topics and URLs.",
    ),
]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Latitude = Annotated[float, Field(ge=-90, le=90)]

_TZ_OFFSET = re.compile(r"^[+-](0\d|1[0-4]):[0-5]\d$")


class RegistryError(ValidationError):
    """A registry file that cannot be loaded; the message lists every problem found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}", reason="bad_registry")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Level(StrEnum):
    PROVINCE = "province"
    CITY = "city"
    DISTRICT = "district"


class Notify(_Entry):
    """Where an office is told of episodes: any of a signed webhook, e-mail, its MQTT topic."""

    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    webhook_secret: str | None = Field(
        default=None, min_length=16, description="HMAC-SHA256 key; keep this file private."
    )
    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(
        default_factory=list
    )
    mqtt: bool = Field(default=True, description="Publish to sunlight/v1/regulators/<id>/alerts.")

    @model_validator(mode="after")
    def _secret_with_url(self) -> Notify:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("webhook_url needs webhook_secret (the HMAC-SHA256 signing key)")
        return self


class Regulator(_Entry):
    id: Identifier
    name: str = Field(min_length=1)
    name_zh: str | None = None
    level: Level
    parent: Identifier | None = None
    ack_deadline_minutes: int = Field(default=120, gt=0, le=7 * 24 * 60)
    notify: Notify = Field(default_factory=Notify)


class District(_Entry):
    id: Identifier
    name: str = Field(min_length=1)
    name_zh: str | None = None
    regulator: Identifier
    boundary: list[tuple[Longitude, Latitude]] = Field(
        min_length=4, description="Closed ring of [lon, lat] points (WGS 84)."
    )

    @field_validator("boundary")
    @classmethod
    def _closed_valid_ring(cls, ring: list[tuple[float, float]]) -> list[tuple[float, float]]:
        from shapely.geometry import Polygon

        if ring[0] != ring[-1]:
            raise ValueError("boundary ring must be closed (first point == last point)")
        if not Polygon(ring).is_valid:
            raise ValueError("boundary ring is not a valid polygon (it crosses itself)")
        return ring


class Device(_Entry):
    id: Identifier
    mn: str | None = Field(
        default=None,
        min_length=1,
        max_length=24,
        pattern=r"^[A-Za-z0-9]+$",
        description="HJ 212 MN (unique monitoring-point code, up to 24 characters).",
    )
    hj212_password: str | None = Field(default=None, max_length=64)
    timezone: str | None = Field(
        default=None, description="Device clock offset such as +08:00; default from settings."
    )

    @field_validator("timezone")
    @classmethod
    def _offset(cls, value: str | None) -> str | None:
        if value is not None and not _TZ_OFFSET.match(value):
            raise ValueError("timezone must be a UTC offset such as +08:00")
        return value


class PermitLimit(_Entry):
    pollutant: str
    period: Literal[Period.HOUR, Period.DAY] = Period.HOUR
    value: float = Field(gt=0)
    unit: str
    standard: str = Field(min_length=1, description="Source standard, e.g. 'GB 13223-2011'.")
    o2_corrected: bool = Field(
        default=False, description="Judge the value converted to the outlet's reference O2."
    )

    @field_validator("pollutant")
    @classmethod
    def _known_pollutant(cls, value: str) -> str:
        return get_pollutant(value).code

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str) -> str:
        return normalize_unit(value)


class Outlet(_Entry):
    id: Identifier
    name: str = Field(min_length=1)
    name_zh: str | None = None
    kind: Literal["gas", "water"]
    reference_o2: float | None = Field(default=None, ge=0, lt=21, description="Reference O2, %.")
    limits: list[PermitLimit] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)

    @property
    def medium(self) -> Medium:
        return Medium.FLUE_GAS if self.kind == "gas" else Medium.WASTEWATER

    @model_validator(mode="after")
    def _limits_fit(self) -> Outlet:
        seen: set[tuple[str, str]] = set()
        for i, limit in enumerate(self.limits):
            where = f"limits[{i}]"
            expected = get_pollutant(limit.pollutant).unit_for(self.medium)
            if limit.unit != expected:
                raise ValueError(
                    f"{where}.unit: {limit.pollutant} at a {self.kind} outlet is in {expected}, "
                    f"not {limit.unit}"
                )
            if limit.o2_corrected and self.reference_o2 is None:
                raise ValueError(f"{where}.o2_corrected needs the outlet's reference_o2")
            key = (limit.pollutant, limit.period.value)
            if key in seen:
                raise ValueError(f"{where}: a second {limit.period.value} limit for {key[0]}")
            seen.add(key)
        return self


class Industry(StrEnum):
    THERMAL_POWER = "thermal_power"
    STEEL = "steel"
    CEMENT = "cement"
    CHEMICAL = "chemical"
    WASTEWATER_TREATMENT = "wastewater_treatment"
    OTHER = "other"


class Site(_Entry):
    """A located thing: where it is and, if the file says so, in which district."""

    id: Identifier
    name: str = Field(min_length=1)
    name_zh: str | None = None
    lon: Longitude
    lat: Latitude
    district: Identifier | None = Field(
        default=None, description="Omit to place the site by its point in the district polygons."
    )


class Enterprise(Site):
    industry: Industry
    outlets: list[Outlet] = Field(min_length=1)


class Station(Site):
    zone: Literal[1, 2] = Field(default=2, description="GB 3095-2012 zone class (grade I/II).")
    devices: list[Device] = Field(default_factory=list)


class Registry(_Entry):
    """The whole file. Cross-references are checked here; spatial placement in the loader."""

    regulators: list[Regulator] = Field(min_length=1)
    districts: list[District] = Field(default_factory=list)
    stations: list[Station] = Field(default_factory=list)
    enterprises: list[Enterprise] = Field(default_factory=list)

    def devices(self) -> Iterator[tuple[Device, str, Medium]]:
        """Every device with the id of the site it measures and that site's medium."""
        for station in self.stations:
            for device in station.devices:
                yield device, station.id, Medium.AMBIENT
        for enterprise in self.enterprises:
            for outlet in enterprise.outlets:
                for device in outlet.devices:
                    yield device, outlet.id, outlet.medium

    def located(self) -> Iterator[tuple[str, int, Site]]:
        """Stations and enterprises, with their list name and index for error messages."""
        for i, station in enumerate(self.stations):
            yield "stations", i, station
        for i, enterprise in enumerate(self.enterprises):
            yield "enterprises", i, enterprise

    def cross_reference_problems(self) -> list[str]:
        problems: list[str] = []
        regulators = {r.id: r for r in self.regulators}
        districts = {d.id for d in self.districts}

        def dupes(kind: str, ids: list[str]) -> None:
            seen: set[str] = set()
            for ident in ids:
                if ident in seen:
                    problems.append(f"{kind}: id {ident!r} is used more than once")
                seen.add(ident)

        dupes("regulators", [r.id for r in self.regulators])
        dupes("districts", [d.id for d in self.districts])
        dupes("enterprises", [e.id for e in self.enterprises])
        site_ids = [s.id for s in self.stations] + [
            o.id for e in self.enterprises for o in e.outlets
        ]
        dupes("sites (stations and outlets)", site_ids)
        dupes("devices", [d.id for d, _, _ in self.devices()])
        dupes("devices.mn", [d.mn for d, _, _ in self.devices() if d.mn])

        for i, reg in enumerate(self.regulators):
            if reg.parent is not None and reg.parent not in regulators:
                problems.append(
                    f"regulators[{i}] (id={reg.id}).parent: no regulator {reg.parent!r}"
                )
        for i, reg in enumerate(self.regulators):  # a parent chain must end
            seen = {reg.id}
            parent = reg.parent
            while parent is not None and parent in regulators:
                if parent in seen:
                    problems.append(f"regulators[{i}] (id={reg.id}).parent: cycle via {parent!r}")
                    break
                seen.add(parent)
                parent = regulators[parent].parent
        for i, dist in enumerate(self.districts):
            if dist.regulator not in regulators:
                problems.append(
                    f"districts[{i}] (id={dist.id}).regulator: no regulator {dist.regulator!r}"
                )
        for kind, i, site in self.located():
            if site.district is not None and site.district not in districts:
                problems.append(
                    f"{kind}[{i}] (id={site.id}).district: no district {site.district!r}"
                )
        return problems


def _describe_location(data: Any, loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into 'enterprises[3] (id=ent-04).outlets[0].unit'."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and "id" in node:
                out += f" (id={node['id']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def parse_registry(data: Any, path: str) -> Registry:
    """Validate already-parsed YAML; raise ``RegistryError`` naming every bad entry and field."""
    if not isinstance(data, dict):
        raise RegistryError(path, ["the file must be a mapping with 'regulators', 'districts', …"])
    try:
        registry = Registry.model_validate(data)
    except PydanticValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_describe_location(data, loc)}: {msg}")
        raise RegistryError(path, problems) from None
    problems = registry.cross_reference_problems()
    if problems:
        raise RegistryError(path, problems)
    return registry


def read_registry_file(path: Path) -> Registry:
    """Read and validate a registry YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse_registry(data, str(path))
