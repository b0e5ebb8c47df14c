"""The ingestor's view of the registry's devices, refreshed when an unknown one appears."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from domain.pollutants import Medium
from store.registry import list_devices


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    device_key: int
    site_key: int
    site_id: str
    medium: Medium


class DeviceDirectory:
    """Device id → keys; reloads at most every ``min_reload_s``, so unknown ids stay cheap."""

    def __init__(self, min_reload_s: float = 5.0) -> None:
        self._devices: dict[str, DeviceInfo] = {}
        self._loaded_at = float("-inf")
        self._min_reload_s = min_reload_s

    def load(self, conn: psycopg.Connection) -> None:
        self._devices = {
            row["id"]: DeviceInfo(
                row["id"], row["device_key"], row["site_key"], row["site_id"], Medium(row["medium"])
            )
            for row in list_devices(conn)
        }
        self._loaded_at = time.monotonic()

    def get(self, conn: psycopg.Connection, device_id: str) -> DeviceInfo | None:
        found = self._devices.get(device_id)
        if found is None and time.monotonic() - self._loaded_at >= self._min_reload_s:
            self.load(conn)
            found = self._devices.get(device_id)
        return found
