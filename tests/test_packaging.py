"""The distribution ships every package of the tree (an installed wheel is what users run)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("sunlight", "domain", "store", "registry", "ingest", "api", "alerts", "maps", "sensors_sim")


def test_every_package_is_listed() -> None:
    """Each directory with an __init__.py under the top-level packages is in pyproject's list."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set()
    assert "sunlight.examples" in listed
