from __future__ import annotations

import psycopg
import pytest

from registry.loader import load_registry
from store.registry import list_devices
from tests.conftest import EXAMPLE_REGISTRY


@pytest.fixture
def device(database_url: str) -> dict[str, object]:
    """A flue-gas device of the example registry, loaded into the test's database."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    with psycopg.connect(database_url) as conn:
        return next(d for d in list_devices(conn) if d["medium"] == "flue_gas")
