"""Schemathesis against the OpenAPI schema of a running API on a filled database: generated
requests to every operation get no 5xx, and every response matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.api_server import api_process, filled_database
from tests.servers import PostgresCluster

EXAMPLES = 12  # per operation: a fixed budget, derandomized so every run sends the same requests


@pytest.fixture(scope="module")
def api_base(
    pg_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = Path(tmp_path_factory.mktemp("api")) / "api.log"
    with filled_database(pg_cluster) as url, api_process(url, log) as base:
        yield base


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.timeout(240)
def test_api_conforms_to_its_schema(api_base: str) -> None:
    """Every operation, with generated valid and invalid parameters: no server error; status
    code, content type and body as the schema documents them."""
    schema = schemathesis.openapi.from_url(f"{api_base}/openapi.json")
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        calls[label] = 0

        try:
            _exercise(operation.as_strategy(), api_base, calls, label)
        except (Exception, BaseExceptionGroup) as exc:  # failure groups carry every finding
            failures[label] = f"{type(exc).__name__}: {exc}"[:3000]
    print(f"schemathesis: {len(calls)} operations, {sum(calls.values())} requests")
    for label, failure in failures.items():
        print(f"--- {label}\n{failure}")
    assert not failures, sorted(failures)


def _exercise(strategy: Any, api_base: str, calls: dict[str, int], label: str) -> None:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        calls[label] += 1
        case.call_and_validate(base_url=api_base, checks=CHECKS, timeout=30)

    run()
