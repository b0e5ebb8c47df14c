"""Access control on real parts: devices on the broker, the public API's read-only surface,
injection strings through every filter, regulator tokens (hashed, constant-time, bounded to a
jurisdiction)."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api.app import create_app
from registry.broker_auth import INGEST, SIMULATOR
from store import auth
from store.auth import create_token
from sunlight.brokers import wait_until
from sunlight.settings import Settings
from tests.reliability.api_server import filled_database
from tests.servers import PostgresCluster, SecuredBroker

# What discloses: none of it may change through the public API.
DISCLOSED = (
    "readings",
    "judgements",
    "episodes",
    "episode_events",
    "regulators",
    "sites",
    "devices",
    "dead_letters",
    "regulator_tokens",
)
INJECTIONS = (
    "'; drop table canary; --",
    "' or '1'='1",
    "x') or ('1'='1",
    "1; delete from readings",
    "1 or 1=1",
    "%",
    "_",
    "\\",
    "$$; drop table canary; $$",
    "'::text || (select string_agg(secret_sha256::text, ',') from regulator_tokens) || '",
    "\u0000",
    "二氧化硫'--",
)
BENIGN = "zzz-none"


@pytest.fixture(scope="module")
def filled(pg_cluster: PostgresCluster) -> Iterator[str]:
    with filled_database(pg_cluster) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table canary (x int)")
        yield url


@pytest.fixture(scope="module")
def client(filled: str) -> Iterator[TestClient]:
    settings = Settings(database_url=filled, api_rate_limit_per_minute=1_000_000)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def top_token(filled: str) -> str:
    with psycopg.connect(filled) as conn:
        _, token = create_token(conn, "aurora-deeb", "access-control tests")
    return token


def digest(url: str) -> str:
    """A fingerprint of every disclosed table's full contents."""
    h = hashlib.sha256()
    with psycopg.connect(url) as conn:
        for table in DISCLOSED:
            for row in conn.execute(f"select t::text from {table} t order by 1").fetchall():
                h.update(row[0].encode())
        assert conn.execute("select to_regclass('canary')").fetchone() == ("canary",)
    return h.hexdigest()


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    schema = client.get("/openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
    ]


def count(response: Any) -> int:
    """How many records a list response carries."""
    if response.headers.get("content-type", "").startswith("text/csv"):
        return max(0, len(response.text.strip().splitlines()) - 1)
    try:
        doc = response.json()
    except ValueError:
        return 0
    if isinstance(doc, list):
        return len(doc)
    for key in ("features", "results", "items", "data", "readings", "values", "series"):
        if isinstance(doc, dict) and isinstance(doc.get(key), list):
            return len(doc[key])
    return 1 if isinstance(doc, dict) and response.status_code == 200 else 0


def fill(path: str, op: dict[str, Any], name: str | None, value: str) -> tuple[str, dict[str, str]]:
    """The URL and query of ``op`` with parameter ``name`` set to ``value``; other required
    parameters get harmless valid values."""
    query: dict[str, str] = {}
    for p in op.get("parameters", ()):
        v = value if p["name"] == name else None
        if v is None and p.get("required"):
            v = {
                "pollutant": "so2",
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-02T00:00:00Z",
            }.get(p["name"], "1" if p["schema"].get("type") == "integer" else "lc-tpn-u1")
        if v is None:
            continue
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", quote(v, safe=""))
        elif p["in"] == "query":
            query[p["name"]] = v
    return path, query


def test_injection_through_every_filter(client: TestClient, filled: str, top_token: str) -> None:
    """Each injection string in each parameter of each GET operation (regulator ones with a
    token): never a 5xx, never more records than a value that matches nothing, and nothing in
    the database changes: parameters are bound, never spliced into SQL."""
    before = digest(filled)
    headers = {"Authorization": f"Bearer {top_token}"}
    tried = 0
    for method, path, op in operations(client):
        if method != "GET":
            continue
        for p in op.get("parameters", ()):
            url, query = fill(path, op, p["name"], BENIGN)
            baseline = client.get(url, params=query, headers=headers)
            for injection in INJECTIONS:
                url, query = fill(path, op, p["name"], injection)
                r = client.get(url, params=query, headers=headers)
                tried += 1
                where = f"{path} {p['name']}={injection!r}: {r.status_code} {r.text[:200]}"
                assert r.status_code < 500, where
                if r.status_code == 200 and baseline.status_code == 200:
                    assert count(r) <= count(baseline), where
                if r.status_code >= 400:
                    assert r.headers["content-type"].startswith("application/problem+json"), where
    assert digest(filled) == before
    print(f"injection: {tried} requests, no 5xx, no extra rows, database unchanged")


def test_public_api_cannot_write(client: TestClient, filled: str) -> None:
    """Every path, every write method: undocumented ones are 405, regulator actions without a
    valid token are 401, and after it all no disclosed table has changed."""
    before = digest(filled)
    documented = {(m, p) for m, p, _ in operations(client)}
    tried = 0
    for _, path, op in operations(client):
        url, _ = fill(path, op, None, "")
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for headers in ({}, {"Authorization": "Bearer slt_1_forged"}):
                r = client.request(method, url, headers=headers, content=b'{"status": "resolved"}')
                tried += 1
                where = f"{method} {url}: {r.status_code} {r.text[:200]}"
                assert r.status_code < 500, where
                if (method, path) not in documented:
                    assert r.status_code == 405, where
                elif path.startswith("/api/v1/regulator/"):
                    assert r.status_code == 401, where
    assert digest(filled) == before
    print(f"write methods: {tried} requests refused, disclosed data unchanged")


def test_regulator_token_bounded_to_its_jurisdiction(client: TestClient, filled: str) -> None:
    """A district office's token sees and acts on its own episodes only; another office's
    episode is refused and left as it was."""
    with psycopg.connect(filled) as conn:
        episodes = conn.execute("select id, regulator_id, status from episodes").fetchall()
        offices = [
            r[0] for r in conn.execute("select id from regulators where parent_id = 'lc-eeb'")
        ]
        tokens = {o: create_token(conn, o, "jurisdiction test")[1] for o in offices}
    assert episodes
    listed_total = 0
    for office, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"}
        listed = client.get("/api/v1/regulator/episodes", headers=headers)
        assert listed.status_code == 200
        with psycopg.connect(filled) as conn:
            mine = set(auth.jurisdiction(conn, office))
        seen = {e["regulator_id"] for e in _items(listed.json())}
        assert seen <= mine, (office, seen)
        listed_total += len(_items(listed.json()))
        for episode_id, owner, _status in episodes:
            if owner in mine:
                continue
            for action in ("acknowledge", "resolve", "notes"):
                r = client.post(
                    f"/api/v1/regulator/episodes/{episode_id}/{action}",
                    headers=headers,
                    json={"note": "not mine", "resolution": "not mine", "action": "x"},
                )
                assert r.status_code in (403, 404, 422), (office, action, r.text)
    assert listed_total > 0  # the offices in charge did see their episodes
    with psycopg.connect(filled) as conn:
        after = conn.execute("select id, regulator_id, status from episodes").fetchall()
        notes = conn.execute(
            "select count(*) from episode_events where kind in ('note', 'acknowledged', 'resolved')"
        ).fetchone()
    assert sorted(after) == sorted(episodes)
    assert notes == (0,)


def _items(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, list):
        return doc
    for key in ("features", "results", "items", "data"):
        if isinstance(doc.get(key), list):
            return [f.get("properties", f) for f in doc[key]]
    return []


def test_tokens_stored_hashed_and_compared_in_constant_time(database_url: str) -> None:
    """The database holds only SHA-256 digests of token secrets; authentication compares
    digests with hmac.compare_digest and nothing else; near-miss tokens are refused."""
    from registry.loader import load_registry
    from tests.conftest import EXAMPLE_REGISTRY

    load_registry(database_url, EXAMPLE_REGISTRY)
    with psycopg.connect(database_url) as conn:
        token_id, token = create_token(conn, "lc-eeb", "hash test")
        secret = token.split("_", 2)[2]
        row = conn.execute("select t::text, secret_sha256 from regulator_tokens t").fetchone()
        assert row is not None
        assert secret not in row[0] and secret.encode() not in bytes(row[1])
        assert bytes(row[1]) == hashlib.sha256(secret.encode()).digest()
        assert auth.authenticate(conn, token) is not None
        for forged in (
            token[:-1] + ("A" if token[-1] != "A" else "B"),
            f"slt_{token_id}_",
            f"slt_{token_id}_{hashlib.sha256(secret.encode()).hexdigest()}",
            f"slt_{token_id + 1}_{secret}",
            token.upper(),
            token + "x",
        ):
            assert auth.authenticate(conn, forged) is None, forged
    tree = ast.parse(inspect.getsource(auth.authenticate))
    calls = {
        f"{n.func.value.id}.{n.func.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
    }
    assert "hmac.compare_digest" in calls
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert not any(isinstance(op, ast.Eq | ast.NotEq) for c in compares for op in c.ops), (
        "secrets must not be compared with =="
    )


def _listen(
    broker: SecuredBroker, account: str, topics: list[str]
) -> tuple[mqtt.Client, list[str]]:
    got: list[str] = []
    subscribed: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listen-{account}")
    client.username_pw_set(*broker.login(account))
    client.on_message = lambda _c, _u, m: got.append(m.topic)
    client.on_subscribe = lambda *_a: subscribed.append(1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe([(t, 1) for t in topics])
    wait_until(lambda: bool(subscribed), 10, "SUBACK")
    return client, got


def test_device_cannot_subscribe_to_others_data(broker: SecuredBroker) -> None:
    """With the example registry's real accounts, a device subscribed to every topic receives
    no other device's readings and no regulator's alerts; the ingest account does."""
    device, other = "cems-lc-tpn-u1", "aqms-lc-forest-park"
    spy, spied = _listen(broker, device, ["#", "sunlight/v1/devices/+/readings", "$share/g/#"])
    ingest, ingested = _listen(broker, INGEST, ["sunlight/v1/devices/+/readings"])
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ac-sim")
    pub.username_pw_set(*broker.login(SIMULATOR))
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        for topic in (
            f"sunlight/v1/devices/{other}/readings",
            f"sunlight/v1/devices/{other}/hj212",
            "sunlight/v1/regulators/lc-eeb/alerts",
        ):
            pub.publish(topic, json.dumps({"x": 1}), qos=1).wait_for_publish(10)
        wait_until(lambda: len(ingested) >= 1, 10, "ingest to receive the reading")
        # The reading reached a permitted reader; the spy, subscribed before it, got nothing.
        pub.publish(f"sunlight/v1/devices/{device}/commands/ping", b"1", qos=1).wait_for_publish(10)
        wait_until(lambda: bool(spied), 10, "the device's own command")
        assert spied == [f"sunlight/v1/devices/{device}/commands/ping"]
    finally:
        for c in (spy, ingest, pub):
            c.disconnect()
            c.loop_stop()
