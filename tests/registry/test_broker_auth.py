"""Broker accounts from the registry: the files written, and a real Mosquitto enforcing them."""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import os
import queue
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from registry.broker_auth import (
    ALERTS,
    GATEWAY,
    INGEST,
    MONITOR,
    SIMULATOR,
    BrokerAuth,
    BrokerAuthError,
    device_grants,
    generate_broker_auth,
    hash_password,
    load_credentials,
    mosquitto_auth_config,
    mqtt_url,
    verify_password,
)
from registry.model import Registry, parse_registry
from sunlight.brokers import MosquittoServer, free_port, mosquitto_binary, wait_until
from sunlight.settings import parse_mqtt_url
from tests.registry.test_model import BASE

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="needs mosquitto")

WAIT = 10.0  # seconds; every wait below is for a condition, bounded by this
NOT_AUTHORIZED = 135  # MQTT 5 reason code 0x87; paho reports a 3.1.1 CONNACK 5 as this too
_ids = itertools.count()

# Made by mosquitto_passwd 2.0.11: `mosquitto_passwd -c -b pwtest alice s3cret`.
MOSQUITTO_PASSWD_VECTOR = (
    "alice",
    "s3cret",
    "$7$101$/ZMEwUw57UzaWWDw$wa/MT3kDmePdWNuQPz490iJO4ZLh/8bZaumyNATp1xVgZuagcTZ5QmWfPme2wS2W"
    "xSuFLFGU7Ep5ENE0nal9JA==",
)


def make_registry(*, without: set[str] | None = None) -> Registry:
    """The test registry (devices aq-1 at a station, cems-1 at an outlet), minus ``without``."""
    doc = copy.deepcopy(BASE)
    for station in doc["stations"]:
        station["devices"] = [d for d in station["devices"] if d["id"] not in (without or set())]
    for enterprise in doc["enterprises"]:
        for outlet in enterprise["outlets"]:
            outlet["devices"] = [d for d in outlet["devices"] if d["id"] not in (without or set())]
    return parse_registry(doc, "test.yaml")


@dataclass
class Probe:
    """A paho client that records what the broker answered and what it delivered."""

    port: int
    username: str | None = None
    password: str | None = None
    v5: bool = False
    connack: queue.Queue[ReasonCode] = field(default_factory=queue.Queue)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    disconnected: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{next(_ids)}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack.put(reason)
        if reason.is_failure:
            self.client.disconnect()  # no reconnect loop against a refusing broker

    def _on_disconnect(self, *_: Any) -> None:
        self.disconnected.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.append((msg.topic, bytes(msg.payload)))
        self.messages.put((msg.topic, bytes(msg.payload)))

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self.pubacks[mid] = reason

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        self.subacks[mid] = reasons

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK's reason code."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self.connack.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self.pubacks, WAIT, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> list[ReasonCode]:
        _rc, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        wait_until(lambda: mid in self.subacks, WAIT, f"SUBACK for {topic}")
        return self.subacks[mid]

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=WAIT)


class AuthBroker:
    """A Mosquitto enforcing generated broker auth, and clients logged in to it."""

    def __init__(self, auth: BrokerAuth, server: MosquittoServer) -> None:
        self.auth = auth
        self.server = server
        self._probes: list[Probe] = []

    def probe(
        self, username: str | None, password: str | None = None, *, v5: bool = False
    ) -> Probe:
        """A client, not yet connected, closed at teardown."""
        if username is not None and password is None:
            password = self.auth.account(username).password
        probe = Probe(self.server.port, username, password, v5=v5)
        self._probes.append(probe)
        return probe

    def login(self, username: str, *, v5: bool = False) -> Probe:
        """A connected client of ``username``; fails the test if the broker refuses it."""
        probe = self.probe(username, v5=v5)
        reason = probe.connect()
        assert not reason.is_failure, f"{username} refused: {reason}"
        return probe

    def close(self) -> None:
        for probe in self._probes:
            probe.close()


@pytest.fixture
def auth_dir(tmp_path: Path) -> Path:
    return tmp_path / "broker-auth"


@contextlib.contextmanager
def start_broker(auth: BrokerAuth) -> Iterator[MosquittoServer]:
    # The broker's own directory comes from tempfile, as in conftest: Mosquitto started as root
    # runs as the mosquitto user, which cannot enter pytest's private tmp_path.
    with tempfile.TemporaryDirectory(prefix="sunlight-mqtt-auth-") as root:
        server = MosquittoServer(Path(root), free_port(), persistence=False, auth_dir=auth.out_dir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BrokerAuth, MosquittoServer]]:
    """One broker for the tests that change no account, enforcing the test registry's auth."""
    auth = generate_broker_auth(make_registry(), tmp_path_factory.mktemp("auth"))
    with start_broker(auth) as server:
        yield auth, server


@pytest.fixture
def broker(auth_server: tuple[BrokerAuth, MosquittoServer]) -> Iterator[AuthBroker]:
    """The shared broker, with this test's clients closed after it."""
    running = AuthBroker(*auth_server)
    try:
        yield running
    finally:
        running.close()


# --- the password-file hash -------------------------------------------------------------------


def test_hash_matches_mosquitto_passwd_vector() -> None:
    """A hash recomputed with mosquitto_passwd's salt and iterations is byte-identical to its."""
    _user, password, hashed = MOSQUITTO_PASSWD_VECTOR
    salt = base64.b64decode(hashed.split("$")[3])
    assert hash_password(password, salt=salt, iterations=101) == hashed
    assert verify_password(password, hashed)
    assert not verify_password("s3creT", hashed)


def test_hash_format() -> None:
    """The hash is $7$, the iteration count, a 12-byte salt and a 64-byte digest, padded base64."""
    hashed = hash_password("pw")
    match = re.fullmatch(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)", hashed)
    assert match
    assert int(match[1]) >= 101
    assert len(base64.b64decode(match[2], validate=True)) == 12
    assert len(base64.b64decode(match[3], validate=True)) == 64
    assert hashed != hash_password("pw"), "every hash gets a fresh salt"
    assert verify_password("pw", hashed)


@pytest.mark.parametrize(
    "hashed",
    ["", "$6$abc$def", "$7$0$AAAAAAAAAAAAAAAA$AAAA", "$7$x$AAAA$AAAA", "$7$101$AAAA$AAAA", "plain"],
)
def test_verify_rejects_malformed(hashed: str) -> None:
    """Malformed or foreign hashes verify as False rather than raising."""
    assert not verify_password("pw", hashed)


def test_hash_refuses_salt_mosquitto_would_drop() -> None:
    """Mosquitto 2.0 drops entries whose salt is not 12 bytes, so such a salt is refused here."""
    with pytest.raises(ValueError, match="12-byte"):
        hash_password("pw", salt=b"short")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_verifies_fresh_mosquitto_passwd_output(tmp_path: Path) -> None:
    """What this machine's mosquitto_passwd writes, verify_password accepts."""
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "bob", "p@ss:wörd"], check=True)
    user, hashed = path.read_text().strip().split(":", 1)
    assert user == "bob"
    assert verify_password("p@ss:wörd", hashed)


# --- the files ----------------------------------------------------------------------------------


def test_generate_writes_accounts_and_modes(auth_dir: Path) -> None:
    """Every service and device gets an account; only the credentials file is private (0600)."""
    auth = generate_broker_auth(make_registry(), auth_dir)
    names = [a.username for a in auth.accounts]
    assert names == [
        INGEST,
        GATEWAY,
        SIMULATOR,
        ALERTS,
        MONITOR,
        "aq-1",
        "cems-1",
        "office.city",
        "office.north-office",
    ]
    assert auth.added == tuple(names)
    assert stat.S_IMODE(auth.credentials_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth.password_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(auth.acl_file.stat().st_mode) == 0o644
    assert load_credentials(auth.credentials_file) == {
        a.username: a.password for a in auth.accounts
    }
    hashes = dict(line.split(":", 1) for line in auth.password_file.read_text().splitlines())
    assert all(verify_password(a.password, hashes[a.username]) for a in auth.accounts)
    assert not list(auth_dir.glob(".*")), "no temporary files left behind"


def test_acl_grants(auth_dir: Path) -> None:
    """The ACL has a block per account; a device writes only under its own prefix."""
    acl = generate_broker_auth(make_registry(), auth_dir).acl_file.read_text()
    assert "user aq-1\ntopic write sunlight/v1/devices/aq-1/#\n" in acl
    assert "topic read sunlight/v1/devices/aq-1/commands/#" in acl
    assert f"user {INGEST}\ntopic read sunlight/v1/devices/+/readings\n" in acl
    assert "pattern" not in acl
    first = next(line for line in acl.splitlines() if line and not line.startswith("#"))
    assert first.startswith("user "), "lines before the first user line would apply to anonymous"


def test_rerun_keeps_passwords_and_files(auth_dir: Path) -> None:
    """Generating again changes no password and no byte of any file."""
    first = generate_broker_auth(make_registry(), auth_dir)
    files = {p.name: p.read_bytes() for p in auth_dir.iterdir()}
    second = generate_broker_auth(make_registry(), auth_dir)
    assert second.accounts == first.accounts
    assert second.added == () and second.removed == ()
    assert {p.name: p.read_bytes() for p in auth_dir.iterdir()} == files


def test_rerun_adds_and_drops_devices(auth_dir: Path) -> None:
    """A device new to the registry gets an account; one gone from it loses its account."""
    first = generate_broker_auth(make_registry(without={"cems-1"}), auth_dir)
    second = generate_broker_auth(make_registry(without={"aq-1"}), auth_dir)
    assert second.added == ("cems-1",)
    assert second.removed == ("aq-1",)
    assert second.account(INGEST).password == first.account(INGEST).password
    assert "aq-1" not in load_credentials(second.credentials_file)
    assert "aq-1" not in second.password_file.read_text()
    assert "aq-1" not in second.acl_file.read_text()


def test_device_named_like_a_service_is_refused(auth_dir: Path) -> None:
    """A device id equal to a service account would share its login, so it is an error."""
    doc = copy.deepcopy(BASE)
    doc["stations"][0]["devices"] = [{"id": INGEST}]
    with pytest.raises(BrokerAuthError, match="reserved"):
        generate_broker_auth(parse_registry(doc, "test.yaml"), auth_dir)


@pytest.mark.parametrize("device_id", ["a/b", "#", "a+", "a\nuser x", "", "a b"])
def test_unsafe_device_ids_are_refused(device_id: str) -> None:
    """Ids that would widen a topic grant or forge ACL lines are refused even if unvalidated."""
    with pytest.raises(BrokerAuthError):
        device_grants(device_id)


def test_bad_credentials_file(tmp_path: Path) -> None:
    """A credentials file that is not a name → password mapping is an error naming the file."""
    path = tmp_path / "credentials.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(BrokerAuthError, match=r"credentials\.yaml"):
        load_credentials(path)


def test_mqtt_url_round_trips() -> None:
    """URLs percent-encode the user and password, and settings parse them back."""
    url = mqtt_url("dev.1", "p@ss:/wo%rd", "broker.example", 1883)
    endpoint = parse_mqtt_url(url)
    assert (endpoint.username, endpoint.password) == ("dev.1", "p@ss:/wo%rd")
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("broker.example", 1883, False)


def test_auth_config_lines() -> None:
    """The config lines turn anonymous off and name both files where the broker sees them."""
    assert mosquitto_auth_config(PurePosixPath("/mosquitto/config/auth")).splitlines() == [
        "allow_anonymous false",
        "password_file /mosquitto/config/auth/passwd",
        "acl_file /mosquitto/config/auth/acl",
    ]


# --- a real broker enforcing them ---------------------------------------------------------------


def test_anonymous_client_is_refused(broker: AuthBroker) -> None:
    """A client without a username gets CONNACK 'not authorised'."""
    reason = broker.probe(None).connect()
    assert reason.is_failure and reason.value == NOT_AUTHORIZED


@pytest.mark.parametrize("v5", [False, True])
@pytest.mark.parametrize(("username", "password"), [("aq-1", "wrong"), ("nobody", "x")])
def test_wrong_password_is_refused(
    broker: AuthBroker, username: str, password: str, v5: bool
) -> None:
    """A wrong password or an unknown account is refused."""
    reason = broker.probe(username, password, v5=v5).connect()
    assert reason.value == NOT_AUTHORIZED


def test_device_reading_reaches_ingest(broker: AuthBroker) -> None:
    """A device publishes under its own prefix and the ingest account receives it."""
    ingest = broker.login(INGEST)
    assert not ingest.subscribe("sunlight/v1/devices/+/readings")[0].is_failure
    device = broker.login("aq-1")
    device.publish("sunlight/v1/devices/aq-1/readings", b"own")
    assert ingest.next_message() == ("sunlight/v1/devices/aq-1/readings", b"own")


def test_device_cannot_publish_as_another(broker: AuthBroker) -> None:
    """A device's message on another device's topic is dropped: the allowed message it sent
    next, on the same connection, arrives alone."""
    ingest = broker.login(INGEST)
    ingest.subscribe("sunlight/v1/devices/+/readings")
    device = broker.login("aq-1")
    # MQTT 3.1.1 has no way to refuse a PUBLISH: the PUBACK looks like success.
    assert not device.publish("sunlight/v1/devices/cems-1/readings", b"forged").is_failure
    device.publish("sunlight/v1/devices/aq-1/readings", b"marker")
    assert ingest.next_message() == ("sunlight/v1/devices/aq-1/readings", b"marker")
    assert ingest.received == [("sunlight/v1/devices/aq-1/readings", b"marker")]


def test_mqtt5_puback_says_not_authorised(broker: AuthBroker) -> None:
    """Over MQTT 5 the broker tells the device why: PUBACK reason 'not authorised'."""
    device = broker.login("aq-1", v5=True)
    assert device.publish("sunlight/v1/devices/cems-1/readings", b"x").value == NOT_AUTHORIZED
    assert not device.publish("sunlight/v1/devices/aq-1/readings", b"x").is_failure


@pytest.mark.parametrize(
    ("username", "topic", "allowed"),
    [
        ("aq-1", "sunlight/v1/devices/aq-1/readings", True),
        ("aq-1", "sunlight/v1/devices/aq-1/hj212", True),
        ("aq-1", "sunlight/v1/devices/aq-1x/readings", False),
        ("aq-1", "sunlight/v1/devices/cems-1/hj212", False),
        ("aq-1", "sunlight/v1/regulators/city", False),
        (GATEWAY, "sunlight/v1/devices/cems-1/hj212", True),
        (GATEWAY, "sunlight/v1/devices/cems-1/readings", False),
        (SIMULATOR, "sunlight/v1/devices/cems-1/readings", True),
        (SIMULATOR, "sunlight/v1/regulators/city", False),
        (ALERTS, "sunlight/v1/regulators/city/exceedances", True),
        (ALERTS, "sunlight/v1/devices/aq-1/readings", False),
        (INGEST, "sunlight/v1/devices/aq-1/readings", False),
        (MONITOR, "sunlight/v1/devices/aq-1/readings", False),
    ],
)
def test_publish_grants(broker: AuthBroker, username: str, topic: str, allowed: bool) -> None:
    """Each account may publish exactly where its role needs (judged by MQTT 5 PUBACK codes)."""
    reason = broker.login(username, v5=True).publish(topic, b"x")
    assert reason.is_failure is not allowed, reason


def test_device_cannot_read_others(broker: AuthBroker) -> None:
    """A device subscribed to every device topic receives only its own commands."""
    device = broker.login("aq-1")
    device.subscribe("sunlight/v1/devices/#")  # Mosquitto 2.0 grants it, then filters delivery
    sim = broker.login(SIMULATOR)
    sim.publish("sunlight/v1/devices/cems-1/readings", b"other's data")
    sim.publish("sunlight/v1/devices/cems-1/commands/ping", b"other's command")
    sim.publish("sunlight/v1/devices/aq-1/commands/ping", b"mine")
    assert device.next_message() == ("sunlight/v1/devices/aq-1/commands/ping", b"mine")
    assert device.received == [("sunlight/v1/devices/aq-1/commands/ping", b"mine")]


def test_ingest_reads_through_shared_subscription(broker: AuthBroker) -> None:
    """The ingest account's read grant covers $share/<group>/… subscriptions."""
    ingest = broker.login(INGEST, v5=True)
    assert not ingest.subscribe("$share/ingest/sunlight/v1/devices/+/hj212")[0].is_failure
    broker.login(GATEWAY).publish("sunlight/v1/devices/cems-1/hj212", b"##frame")
    assert ingest.next_message() == ("sunlight/v1/devices/cems-1/hj212", b"##frame")


def test_monitor_reads_broker_status(broker: AuthBroker) -> None:
    """The monitor account can read $SYS, which a health check needs once anonymous is off."""
    monitor = broker.login(MONITOR)
    monitor.subscribe("$SYS/broker/version")
    topic, payload = monitor.next_message()
    assert topic == "$SYS/broker/version" and payload.startswith(b"mosquitto version")


def test_broker_copy_is_private_to_the_broker(broker: AuthBroker) -> None:
    """The broker reads its own 0600 copies, owned by the user it runs as."""
    for name in ("passwd", "acl"):
        info = (broker.server.root / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        if os.geteuid() == 0:
            import pwd

            assert info.st_uid == pwd.getpwnam("mosquitto").pw_uid


def test_removed_device_loses_access(auth_dir: Path) -> None:
    """After regenerating without a device and reloading, the broker refuses that device and
    disconnects its open session, while other accounts keep working."""
    auth = generate_broker_auth(make_registry(), auth_dir)
    with start_broker(auth) as server:
        running = AuthBroker(auth, server)
        try:
            cems = running.login("cems-1")
            generate_broker_auth(make_registry(without={"cems-1"}), auth_dir)
            server.reload_auth()

            def refused() -> bool:
                probe = running.probe("cems-1", auth.account("cems-1").password)
                return probe.connect().is_failure

            wait_until(refused, WAIT, "the broker to refuse the removed device")
            assert cems.disconnected.wait(WAIT), "the removed device's session stays open"
            running.login("aq-1").publish("sunlight/v1/devices/aq-1/readings", b"still here")
        finally:
            running.close()
