"""The public API over the example registry, in process (FastAPI's TestClient)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.loader import load_registry
from sunlight.settings import Settings
from tests.conftest import EXAMPLE_REGISTRY


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    load_registry(database_url, EXAMPLE_REGISTRY)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client
