"""The ingestor's view of the registry's devices, refreshed when an unknown one appears."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from domain.offsets import parse_utc_offset
from domain.pollutants import Medium
from store.registry import list_devices


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    device_key: int
    site_key: int
    site_id: str
    medium: Medium
    mn: str | None = None
    hj212_password: str | None = None
    tz_offset: timedelta = timedelta(hours=8)


class DeviceDirectory:
    """Device id → keys; reloads at most every ``min_reload_s``, so unknown ids stay cheap."""

    def __init__(self, min_reload_s: float = 5.0, default_timezone: str = "+08:00") -> None:
        self._default_offset = parse_utc_offset(default_timezone)
        self._devices: dict[str, DeviceInfo] = {}
        self._by_mn: dict[str, DeviceInfo] = {}
        self._loaded_at = float("-inf")
        self._min_reload_s = min_reload_s

    def load(self, conn: psycopg.Connection) -> None:
        self.install(
            DeviceInfo(
                id=row["id"],
                device_key=row["device_key"],
                site_key=row["site_key"],
                site_id=row["site_id"],
                medium=Medium(row["medium"]),
                mn=row["mn"],
                hj212_password=row["hj212_password"],
                tz_offset=parse_utc_offset(row["timezone"])
                if row["timezone"]
                else self._default_offset,
            )
            for row in list_devices(conn)
        )

    def install(self, devices: Iterable[DeviceInfo]) -> None:
        """Use ``devices`` as the directory, as if loaded from the registry (benchmarks)."""
        self._devices = {d.id: d for d in devices}
        self._by_mn = {d.mn: d for d in self._devices.values() if d.mn}
        self._loaded_at = time.monotonic()

    def peek_mn(self, mn: str) -> DeviceInfo | None:
        """The cached device with this MN, without touching the database."""
        return self._by_mn.get(mn)

    def by_mn(self, conn: psycopg.Connection, mn: str) -> DeviceInfo | None:
        """The device whose HJ 212 MN this is (data loggers identify themselves by MN)."""
        found = self._by_mn.get(mn)
        if found is None and time.monotonic() - self._loaded_at >= self._min_reload_s:
            self.load(conn)
            found = self._by_mn.get(mn)
        return found

    def get(self, conn: psycopg.Connection, device_id: str) -> DeviceInfo | None:
        found = self._devices.get(device_id)
        if found is None and time.monotonic() - self._loaded_at >= self._min_reload_s:
            self.load(conn)
            found = self._devices.get(device_id)
        return found
