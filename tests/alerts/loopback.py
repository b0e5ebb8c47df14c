"""Real receivers on loopback for the notifier tests: a webhook endpoint, a mailbox, a reader of
regulator topics."""

from __future__ import annotations

import email
import email.policy
import json
import secrets
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from paho.mqtt.enums import CallbackAPIVersion

from alerts.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from registry.broker_auth import ALERTS, Account, BrokerAuth, Grant, acl_text, password_file_text
from sunlight.brokers import MosquittoServer, free_port, wait_until


@dataclass
class Request:
    """One POST as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """An HTTP endpoint that checks signatures and answers from a script of statuses."""

    secret: str
    statuses: deque[int] = field(default_factory=deque)  # answered in order, then 200
    requests: list[Request] = field(default_factory=list)
    hold: threading.Event | None = None  # when set up, answers wait until it is set
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sunlight"


@contextmanager
def webhook_receiver(secret: str) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            verified = verify_signature(
                receiver.secret,
                self.headers.get(TIMESTAMP_HEADER),
                body,
                self.headers.get(SIGNATURE_HEADER),
            )
            receiver.requests.append(Request(dict(self.headers.items()), body, verified))
            if receiver.hold is not None:
                receiver.hold.wait(10)
            status = receiver.statuses.popleft() if receiver.statuses else 200
            if not verified and status < 300:
                status = 401
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            if status == 429:
                self.send_header("Retry-After", "7")
            reply = json.dumps({"status": status}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    # A short poll interval only makes shutdown() at teardown quick.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


class Inbox:
    """An aiosmtpd handler keeping every accepted message; ``refuse`` answers RCPT instead."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.refuse: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse is not None:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


SMTP_USER, SMTP_PASSWORD = "sunlight", secrets.token_urlsafe(16)


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback offering AUTH (without TLS, since it is loopback)."""
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


READER = "test-regulator-reader"


@contextmanager
def regulator_broker(auth: BrokerAuth) -> Iterator[tuple[MosquittoServer, str]]:
    """Mosquitto enforcing the registry's real ``sunlight-alerts`` account and grant, plus a
    test-only account allowed to read regulator topics (no production account may)."""
    reader = Account(
        READER, secrets.token_urlsafe(16), "service", (Grant("read", "sunlight/v1/regulators/#"),)
    )
    accounts = [auth.account(ALERTS), reader]
    with (
        tempfile.TemporaryDirectory(prefix="sunlight-auth-") as auth_dir,
        tempfile.TemporaryDirectory(prefix="sunlight-mqtt-") as root,
    ):
        (Path(auth_dir) / "passwd").write_text(password_file_text(accounts))
        (Path(auth_dir) / "acl").write_text(acl_text(accounts))
        server = MosquittoServer(
            Path(root), free_port(), persistence=False, auth_dir=Path(auth_dir)
        )
        server.start()
        try:
            yield server, reader.password
        finally:
            server.stop()


@contextmanager
def subscribe(
    port: int, username: str, password: str, topic: str
) -> Iterator[list[tuple[str, bytes, int, bool]]]:
    """(topic, payload, qos, retain) of every message on ``topic``, subscribed on return."""
    received: list[tuple[str, bytes, int, bool]] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"reader-{secrets.token_hex(3)}")
    client.username_pw_set(username, password)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            c.subscribe(topic, qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, reasons: Any, _p: Any) -> None:
        if all(not r.is_failure for r in reasons):
            subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        received.append((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(subscribed.is_set, 10, f"subscription to {topic}")
        yield received
    finally:
        client.disconnect()
        client.loop_stop()
