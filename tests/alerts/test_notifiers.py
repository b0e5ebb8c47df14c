"""Notification channels and their dispatch against real loopback servers: an HTTP receiver,
an SMTP server (aiosmtpd) and Mosquitto enforcing the registry's broker accounts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from alerts.notifiers import (
    NOTIFIERS,
    Attempt,
    DeliveryError,
    EmailTarget,
    MqttTarget,
    Notification,
    Notifier,
    WebhookTarget,
    attempt_once,
    backoff,
    deliver,
    notifier_class,
    targets_for,
)
from alerts.notifiers.email import EmailNotifier, SmtpConfig
from alerts.notifiers.mqtt import MqttNotifier
from alerts.notifiers.webhook import WebhookNotifier, sign, verify_signature
from registry.broker_auth import ALERTS, BrokerAuth
from sunlight.brokers import MosquittoServer, free_port, wait_until
from sunlight.settings import Settings
from tests.alerts.loopback import (
    READER,
    SMTP_PASSWORD,
    SMTP_USER,
    Inbox,
    WebhookReceiver,
    regulator_broker,
    smtp_server,
    subscribe,
    webhook_receiver,
)
from tests.servers import SecuredBroker

SECRET = "s3cret-for-tests-only-0123456789"
NOTE = Notification(
    id=4711,
    regulator_id="pudong-eeb",
    kind="opened",
    subject="超标 SO2: Gaoqiao power plant outlet 1",
    body_text="SO2 hourly mean 152 mg/m3 exceeds the 100 mg/m3 limit.\nPlease acknowledge.",
    payload={"episode": 17, "pollutant": "SO2", "max_mean": 152.0, "limit": 100.0},
)


def no_sleep(_seconds: float) -> None:
    """Backoff made instant; the delays are checked through ``Attempt`` and ``backoff``."""


def must_not_sleep(seconds: float) -> None:
    pytest.fail(f"unexpected backoff of {seconds}s: the failure should have been final")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver(SECRET) as r:
        yield r


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def reg_broker(broker_auth: BrokerAuth) -> Iterator[tuple[MosquittoServer, str]]:
    with regulator_broker(broker_auth) as server:
        yield server


def alerts_settings(url: str, auth: BrokerAuth) -> Settings:
    """Settings as the alerts service runs with them: its own account from credentials.yaml."""
    return Settings(mqtt_url=url, mqtt_credentials_file=auth.credentials_file, mqtt_account=ALERTS)


def unused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hook"


# --- signatures ---------------------------------------------------------------------------

NOW = 1_750_000_000
BODY = b'{"id":1,"kind":"opened"}'


def test_signature_round_trip() -> None:
    """A signature made by ``sign`` verifies with the same secret, body and timestamp."""
    assert verify_signature(SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY), now=NOW + 10)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header", "why"),
    [
        ("another-secret-entirely", str(NOW), BODY, sign(SECRET, NOW, BODY), "wrong secret"),
        (SECRET, str(NOW), BODY + b" ", sign(SECRET, NOW, BODY), "body changed"),
        (SECRET, str(NOW + 1), BODY, sign(SECRET, NOW, BODY), "timestamp changed"),
        (SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY)[:-1] + "0", "signature tampered"),
        (SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY).removeprefix("sha256="), "no prefix"),
        (SECRET, str(NOW - 301), BODY, sign(SECRET, NOW - 301, BODY), "older than 300 s"),
        (SECRET, str(NOW + 301), BODY, sign(SECRET, NOW + 301, BODY), "from the future"),
        (SECRET, "17e8", BODY, sign(SECRET, "17e8", BODY), "not unix seconds"),
        (SECRET, None, BODY, sign(SECRET, NOW, BODY), "no timestamp header"),
        (SECRET, str(NOW), BODY, None, "no signature header"),
        (SECRET, str(NOW), BODY, "sha256=é", "non-ASCII header"),
    ],
)
def test_signature_rejections(
    secret: str, timestamp: str | None, body: bytes, header: str | None, why: str
) -> None:
    """``verify_signature`` refuses tampered, stale, future and malformed signatures."""
    assert not verify_signature(secret, timestamp, body, header, now=NOW), why


# --- webhook ------------------------------------------------------------------------------


def test_signed_webhook_delivered(receiver: WebhookReceiver) -> None:
    """One POST of the envelope, signed, with the idempotency key and JSON content type."""
    WebhookNotifier().send(NOTE, WebhookTarget(receiver.url, SECRET))
    [request] = receiver.requests
    assert request.verified
    assert request.headers["Idempotency-Key"] == "4711"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        **NOTE.payload,
        "id": 4711,
        "kind": "opened",
        "regulator": "pudong-eeb",
    }


def test_webhook_500_twice_then_delivered(receiver: WebhookReceiver) -> None:
    """Two 500s are retried with growing backoff; the third attempt delivers; all are logged."""
    receiver.statuses.extend([500, 500])
    attempts: list[Attempt] = []
    sleeps: list[float] = []
    outcomes = deliver(
        NOTE,
        {"webhook": WebhookTarget(receiver.url, SECRET)},
        notifiers={"webhook": WebhookNotifier()},
        attempt_log=attempts.append,
        sleep=sleeps.append,
    )
    assert outcomes["webhook"].ok and outcomes["webhook"].attempts == 3
    assert [(a.attempt, a.ok) for a in attempts] == [(1, False), (2, False), (3, True)]
    assert all(a.channel == "webhook" and a.notification_id == 4711 for a in attempts)
    assert attempts[0].detail.startswith("HTTP 500") and attempts[0].retryable
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert all(r.verified for r in receiver.requests)
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {"4711"}


def test_webhook_400_not_retried(receiver: WebhookReceiver) -> None:
    """A 400 is final: one attempt, no backoff, a non-retryable outcome."""
    receiver.statuses.append(400)
    attempts: list[Attempt] = []
    outcome = deliver(
        NOTE,
        {"webhook": WebhookTarget(receiver.url, SECRET)},
        notifiers={"webhook": WebhookNotifier()},
        attempt_log=attempts.append,
        sleep=must_not_sleep,
    )["webhook"]
    assert not outcome.ok and not outcome.retryable and outcome.attempts == 1
    assert len(attempts) == 1 and len(receiver.requests) == 1


def test_webhook_redirect_not_followed(receiver: WebhookReceiver) -> None:
    """A redirect is a final failure, never a re-sent (or downgraded) request elsewhere."""
    receiver.statuses.append(302)
    with pytest.raises(DeliveryError) as failure:
        WebhookNotifier().send(NOTE, WebhookTarget(receiver.url, SECRET))
    assert not failure.value.retryable and failure.value.detail.startswith("HTTP 302")


def test_webhook_receiver_down_retried_to_the_limit() -> None:
    """Connection refused is retryable; delivery gives up after ``max_attempts``."""
    attempts: list[Attempt] = []
    outcome = deliver(
        NOTE,
        {"webhook": WebhookTarget(unused_url(), SECRET)},
        notifiers={"webhook": WebhookNotifier()},
        attempt_log=attempts.append,
        max_attempts=4,
        sleep=no_sleep,
    )["webhook"]
    assert not outcome.ok and outcome.retryable and outcome.attempts == 4
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert all(not a.ok and a.retryable and "connection failed" in a.detail for a in attempts)


def test_webhook_timeout_is_retryable(receiver: WebhookReceiver) -> None:
    """A receiver that does not answer within the timeout is a retryable failure."""
    receiver.hold = threading.Event()
    with pytest.raises(DeliveryError) as failure:
        WebhookNotifier(timeout_s=0.3).send(NOTE, WebhookTarget(receiver.url, SECRET))
    assert failure.value.retryable
    receiver.hold.set()


def test_webhook_secret_not_in_repr_or_details() -> None:
    """The signing secret shows neither in a target's repr nor in a failure's detail."""
    target = WebhookTarget(unused_url(), SECRET)
    assert SECRET not in repr(target)
    with pytest.raises(DeliveryError) as failure:
        WebhookNotifier().send(NOTE, target)
    assert SECRET not in failure.value.detail


# --- attempt_once and backoff ---------------------------------------------------------------

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "fraction", "expected"),
    [
        (1, 0.0, 0.5),
        (1, 1.0, 1.0),
        (2, 0.0, 1.0),
        (3, 1.0, 4.0),
        (7, 1.0, 60.0),  # 64 s capped at 60
        (7, 0.0, 30.0),
        (200, 0.5, 45.0),  # no overflow far past the cap
    ],
)
def test_backoff(attempt: int, fraction: float, expected: float) -> None:
    """Exponential steps from 1 s, capped at 60 s, with the upper half jittered."""
    assert backoff(attempt, random_fraction=lambda: fraction) == pytest.approx(expected)


def test_attempt_once_schedules_the_next_attempt(receiver: WebhookReceiver) -> None:
    """A retryable failure gets a next attempt time after backoff; the last attempt gets none."""
    receiver.statuses.extend([503, 503])
    target, notifier = WebhookTarget(receiver.url, SECRET), WebhookNotifier()
    first = attempt_once(NOTE, "webhook", target, notifier, attempt=1, now=lambda: T0)
    assert not first.ok and first.retryable and first.next_attempt_at is not None
    assert T0 + timedelta(seconds=0.5) <= first.next_attempt_at <= T0 + timedelta(seconds=1)
    last = attempt_once(NOTE, "webhook", target, notifier, attempt=5, now=lambda: T0)
    assert not last.ok and last.retryable and last.next_attempt_at is None
    done = attempt_once(NOTE, "webhook", target, notifier, attempt=3, now=lambda: T0)
    assert done.ok and done.next_attempt_at is None and done.attempts == 3


def test_attempt_once_honours_retry_after(receiver: WebhookReceiver) -> None:
    """A 429's ``Retry-After`` pushes the next attempt out beyond the plain backoff."""
    receiver.statuses.append(429)
    attempts: list[Attempt] = []
    outcome = attempt_once(
        NOTE,
        "webhook",
        WebhookTarget(receiver.url, SECRET),
        WebhookNotifier(),
        attempt=1,
        attempt_log=attempts.append,
        now=lambda: T0,
    )
    assert outcome.retryable and outcome.next_attempt_at == T0 + timedelta(seconds=7)
    assert [a.at for a in attempts] == [T0]


def test_attempt_once_final_failure_has_no_next_attempt(receiver: WebhookReceiver) -> None:
    """A 403 stops at once, whatever attempts remain."""
    receiver.statuses.append(403)
    outcome = attempt_once(
        NOTE, "webhook", WebhookTarget(receiver.url, SECRET), WebhookNotifier(), attempt=1
    )
    assert not outcome.ok and not outcome.retryable and outcome.next_attempt_at is None


# --- e-mail -------------------------------------------------------------------------------


def test_email_delivered_with_headers(smtp: tuple[Inbox, int]) -> None:
    """One plain-text message to all addresses, with Subject, From, To, Date and a Message-ID
    fixed by the notification id."""
    inbox, port = smtp
    config = SmtpConfig("127.0.0.1", port, sender="alerts@sunlight.example")
    target = EmailTarget(("duty@pudong.example", "chief@pudong.example"))
    EmailNotifier(config).send(NOTE, target)
    EmailNotifier(config).send(NOTE, target)
    wait_until(lambda: len(inbox.messages) == 2, 10, "two messages")
    (sender, rcpts, first), (_, _, second) = inbox.messages
    assert sender == "alerts@sunlight.example"
    assert rcpts == ["duty@pudong.example", "chief@pudong.example"]
    assert first["Subject"] == NOTE.subject
    assert first["From"] == "alerts@sunlight.example"
    assert first["To"] == "duty@pudong.example, chief@pudong.example"
    assert abs(parsedate_to_datetime(first["Date"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert first["Message-ID"] == "<sunlight-notification-4711@sunlight.example>"
    assert second["Message-ID"] == first["Message-ID"]  # a duplicate is recognisable
    assert first["X-Sunlight-Kind"] == "opened"
    assert first.get_content_type() == "text/plain"
    assert first.get_content().replace("\r\n", "\n").strip() == NOTE.body_text


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 mailbox unavailable", False), ("451 4.3.0 try again later", True)],
)
def test_email_refusal(smtp: tuple[Inbox, int], reply: str, retryable: bool) -> None:
    """A 5xx refusal is final, a 4xx one is retried."""
    inbox, port = smtp
    inbox.refuse = reply
    with pytest.raises(DeliveryError) as failure:
        EmailNotifier(SmtpConfig("127.0.0.1", port)).send(NOTE, EmailTarget(("a@b.example",)))
    assert failure.value.retryable is retryable
    assert reply.split(maxsplit=1)[0] in failure.value.detail


def test_smtp_down_is_retryable() -> None:
    """No SMTP server listening is a retryable failure."""
    with pytest.raises(DeliveryError) as failure:
        EmailNotifier(SmtpConfig("127.0.0.1", free_port())).send(NOTE, EmailTarget(("a@b.x",)))
    assert failure.value.retryable


def test_smtp_login(smtp: tuple[Inbox, int]) -> None:
    """Login with the configured account delivers; a wrong password (535) is final."""
    inbox, port = smtp
    good = SmtpConfig("127.0.0.1", port, username=SMTP_USER, password=SMTP_PASSWORD)
    EmailNotifier(good).send(NOTE, EmailTarget(("a@b.example",)))
    assert len(inbox.messages) == 1
    bad = SmtpConfig("127.0.0.1", port, username=SMTP_USER, password="wrong")
    with pytest.raises(DeliveryError) as failure:
        EmailNotifier(bad).send(NOTE, EmailTarget(("a@b.example",)))
    assert not failure.value.retryable and "535" in failure.value.detail
    assert SMTP_PASSWORD not in repr(good)


def test_smtp_login_needs_starttls_off_loopback() -> None:
    """A password would cross the network in clear without STARTTLS: refused at configuration."""
    with pytest.raises(ValueError, match="STARTTLS"):
        SmtpConfig("smtp.example.org", 587, username="u", password="p")


# --- MQTT ---------------------------------------------------------------------------------


def test_mqtt_arrives_on_regulator_topic(
    reg_broker: tuple[MosquittoServer, str], broker_auth: BrokerAuth
) -> None:
    """The envelope arrives, QoS 1 and not retained, on the office's topic, published with the
    registry's own sunlight-alerts account and grant."""
    server, reader_password = reg_broker
    target = MqttTarget.for_regulator(NOTE.regulator_id)
    assert target.topic == "sunlight/v1/regulators/pudong-eeb/alerts"
    notifier = MqttNotifier(alerts_settings(server.url, broker_auth))
    try:
        with subscribe(server.port, READER, reader_password, "sunlight/v1/regulators/#") as got:
            notifier.send(NOTE, target)
            wait_until(lambda: len(got) == 1, 10, "the alert on the regulator topic")
    finally:
        notifier.close()
    topic, payload, qos, retain = got[0]
    assert (topic, qos, retain) == (target.topic, 1, False)
    assert json.loads(payload) == NOTE.envelope()


def test_mqtt_on_session_broker_reuses_connection(broker: SecuredBroker) -> None:
    """On the shared test broker the sunlight-alerts account connects once, lazily, and gets a
    PUBACK for each notification over the same connection."""
    notifier = MqttNotifier(alerts_settings(broker.url, broker.auth))
    try:
        assert notifier._client is None
        notifier.send(NOTE, MqttTarget.for_regulator("pudong-eeb"))
        client = notifier._client
        notifier.send(NOTE, MqttTarget.for_regulator("shanghai-eeb"))
        assert client is not None and notifier._client is client and client.is_connected()
    finally:
        notifier.close()


def test_mqtt_wrong_password_is_final(broker: SecuredBroker) -> None:
    """A broker refusing the account's password is a final failure, not a retry loop."""
    settings = Settings(mqtt_url=f"mqtt://{ALERTS}:wrong@127.0.0.1:{broker.port}")
    with pytest.raises(DeliveryError) as failure:
        MqttNotifier(settings, timeout_s=5).send(NOTE, MqttTarget.for_regulator("pudong-eeb"))
    assert not failure.value.retryable and "wrong" not in failure.value.detail


def test_mqtt_broker_down_is_retryable() -> None:
    """No broker listening is a retryable failure."""
    notifier = MqttNotifier(Settings(mqtt_url=f"mqtt://127.0.0.1:{free_port()}"), timeout_s=2)
    with pytest.raises(DeliveryError) as failure:
        notifier.send(NOTE, MqttTarget.for_regulator("pudong-eeb"))
    assert failure.value.retryable
    notifier.close()


# --- all channels together --------------------------------------------------------------------


def test_failing_webhook_does_not_block_email_and_mqtt(
    smtp: tuple[Inbox, int], reg_broker: tuple[MosquittoServer, str], broker_auth: BrokerAuth
) -> None:
    """With the webhook down, e-mail and MQTT still deliver, and while the webhook backs off:
    its backoff waits for the other two channels, which only works if they run alongside."""
    inbox, smtp_port = smtp
    server, reader_password = reg_broker
    mqtt_notifier = MqttNotifier(alerts_settings(server.url, broker_auth))
    notifiers: dict[str, Notifier] = {
        "webhook": WebhookNotifier(),
        "email": EmailNotifier(SmtpConfig("127.0.0.1", smtp_port)),
        "mqtt": mqtt_notifier,
    }
    targets = targets_for(
        NOTE.regulator_id,
        {
            "webhook": {"url": unused_url(), "secret": SECRET},
            "email": ["duty@pudong.example"],
            "mqtt": True,
        },
    )
    attempts: list[Attempt] = []
    try:
        with subscribe(server.port, READER, reader_password, "sunlight/v1/regulators/#") as got:

            def backoff_until_others_delivered(_seconds: float) -> None:
                wait_until(lambda: len(inbox.messages) == 1 and len(got) == 1, 10, "e-mail, MQTT")

            outcomes = deliver(
                NOTE,
                targets,
                notifiers=notifiers,
                attempt_log=attempts.append,
                max_attempts=2,
                sleep=backoff_until_others_delivered,
            )
    finally:
        mqtt_notifier.close()
    assert outcomes["email"].ok and outcomes["mqtt"].ok
    assert not outcomes["webhook"].ok and outcomes["webhook"].attempts == 2
    assert sorted((a.channel, a.attempt, a.ok) for a in attempts) == [
        ("email", 1, True),
        ("mqtt", 1, True),
        ("webhook", 1, False),
        ("webhook", 2, False),
    ]


def test_channel_without_notifier_fails_alone(receiver: WebhookReceiver) -> None:
    """A target whose channel has no notifier fails for good; the webhook still delivers."""
    attempts: list[Attempt] = []
    outcomes = deliver(
        NOTE,
        {"webhook": WebhookTarget(receiver.url, SECRET), "email": EmailTarget(("a@b.example",))},
        notifiers={"webhook": WebhookNotifier()},
        attempt_log=attempts.append,
        sleep=must_not_sleep,
    )
    assert outcomes["webhook"].ok
    assert not outcomes["email"].ok and not outcomes["email"].retryable
    assert len(attempts) == 2


def test_attempt_log_failure_does_not_fail_delivery(receiver: WebhookReceiver) -> None:
    """An attempt log that raises is itself logged; the delivery still counts."""

    def broken_log(_attempt: Attempt) -> None:
        raise RuntimeError("log store down")

    outcomes = deliver(
        NOTE,
        {"webhook": WebhookTarget(receiver.url, SECRET)},
        notifiers={"webhook": WebhookNotifier()},
        attempt_log=broken_log,
    )
    assert outcomes["webhook"].ok and len(receiver.requests) == 1


# --- values and registry ----------------------------------------------------------------------


def test_registry_names_every_channel() -> None:
    """Each registered channel loads its notifier class, which declares that channel."""
    for channel in NOTIFIERS:
        assert notifier_class(channel).channel == channel
    assert notifier_class("email") is EmailNotifier


def test_targets_for_skips_unusable_channels(caplog: pytest.LogCaptureFixture) -> None:
    """A bad or unknown channel entry is logged and left out; the others stay."""
    targets = targets_for(
        "pudong-eeb",
        {"webhook": {"url": "ftp://x", "secret": SECRET}, "email": ["a@b.example"], "fax": 1},
    )
    assert targets == {"email": EmailTarget(("a@b.example",))}
    assert "webhook" in caplog.text and "fax" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"regulator_id": "a/b"}, "would add a topic level"),
        ({"regulator_id": "#"}, "wildcard"),
        ({"subject": "x\r\nBcc: evil@example.org"}, "header injection"),
        ({"payload": {"at": datetime.now(UTC)}}, "not JSON"),
        ({"payload": {"x": float("nan")}}, "NaN is not JSON"),
        ({"kind": ""}, "no kind"),
    ],
)
def test_notification_validated(changes: dict[str, Any], why: str) -> None:
    """A notification that could not travel safely on every channel is refused on creation."""
    fields: dict[str, Any] = {
        "id": 1,
        "regulator_id": "r",
        "kind": "opened",
        "subject": "s",
        "body_text": "b",
        "payload": {},
    }
    with pytest.raises(ValueError):  # noqa: PT011 - the messages vary by field
        Notification(**{**fields, **changes})


def test_notification_payload_is_a_frozen_copy() -> None:
    """The payload is copied on creation and read-only, and the value stays hashable."""
    source = {"episode": 1}
    note = Notification(1, "r", "opened", "s", "b", source)
    source["episode"] = 2
    assert note.payload["episode"] == 1
    with pytest.raises(TypeError):
        note.payload["episode"] = 3  # type: ignore[index]
    assert hash(note) == hash(Notification(1, "r", "opened", "s", "b", {"other": 1}))


def test_unique_client_ids() -> None:
    """Two notifiers never share a client id, which would make the broker drop one of them."""
    settings = Settings()
    assert MqttNotifier(settings).client_id != MqttNotifier(settings).client_id
