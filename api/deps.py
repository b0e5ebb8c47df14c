"""Request dependencies: the settings and a pooled database connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request

from sunlight.settings import Settings


def get_conn(request: Request) -> Iterator[psycopg.Connection[Any]]:
    with request.app.state.pool.connection() as conn:
        yield conn


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ConnDep = Annotated[psycopg.Connection[Any], Depends(get_conn)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
