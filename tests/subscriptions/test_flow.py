"""Subscriptions end to end through real parts: the API, PostgreSQL, an SMTP server and a
webhook receiver on loopback, and the fan-out and sender the alerts leader runs."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.notifiers.webhook import IDEMPOTENCY_HEADER
from alerts.service import Engine
from alerts.subscriptions import Subscribers, fan_out
from api.app import create_app
from registry.loader import load_registry
from store import episodes
from sunlight.brokers import wait_until
from sunlight.settings import Settings
from tests.alerts.loopback import Inbox, smtp_server, webhook_receiver
from tests.conftest import EXAMPLE_REGISTRY

BASE = "http://testserver"
EMAIL = "resident.downwind@example.org"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(database_url: str, smtp: tuple[Inbox, int]) -> Settings:
    load_registry(database_url, EXAMPLE_REGISTRY)
    return Settings(
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp[1],
        smtp_sender="news@sunlight.example",
        public_base_url=BASE,
        subscriptions_allow_private_targets=True,
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def run(settings: Settings, subscribers: Subscribers | None = None) -> int:
    """One run of the leader's subscription job."""
    with psycopg.connect(settings.database_url) as conn:
        return (subscribers or Subscribers(settings)).run(conn, datetime.now(UTC))


def open_episode(database_url: str, outlet: str, regulator: str) -> int:
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        return episodes.open_episode(
            conn,
            {
                "kind": "exceedance",
                "site_id": outlet,
                "pollutant": "so2",
                "period": "hour",
                "regulator_id": regulator,
                "severity": "minor",
                "first_start": now,
                "last_end": now,
                "hours": 1,
                "max_mean": 120.0,
                "limit_value": 100.0,
            },
        )


def resolve(database_url: str, episode_id: int, regulator: str) -> None:
    with psycopg.connect(database_url) as conn:
        episodes.resolve(
            conn,
            episode_id,
            regulator_id=regulator,
            jurisdiction=[regulator],
            action="desulphuriser repaired",
            token_id=0,
        )


def reply_to_report(database_url: str, lon: float, lat: float, district: str | None) -> int:
    """A citizen's report at (lon, lat) and the office's reply to it; returns the reply id."""
    with psycopg.connect(database_url) as conn:
        report = conn.execute(
            "insert into citizen_reports (tracking_code, lon, lat, category, description,"
            " district_id, regulator_id, due_at) values (%s, %s, %s, 'smoke', 'black smoke',"
            " %s, 'lc-eeb-gangkou', now() + interval '2 hours') returning id",
            (secrets.token_hex(6), lon, lat, district),
        ).fetchone()
        assert report is not None
        reply = conn.execute(
            "insert into citizen_report_replies (report_id, regulator_id, body, status)"
            " values (%s, 'lc-eeb-gangkou', 'Inspector on site at 14:00.', 'confirmed')"
            " returning id",
            (report[0],),
        ).fetchone()
        assert reply is not None
        return int(reply[0])


def link(text: str, path: str) -> str:
    found = re.search(rf"{re.escape(BASE)}{re.escape(path)}\?token=[\w-]+", text)
    assert found, text
    return found.group(0)[len(BASE) :]


def subscribe(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/subscriptions", json=body)
    assert response.status_code == 202, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_email_double_opt_in_news_and_one_click_unsubscribe(
    api: TestClient, settings: Settings, smtp: tuple[Inbox, int]
) -> None:
    """Nothing but the opt-in message is sent before confirmation; after it, a new episode and
    its resolution arrive once each with RFC 8058 headers; one POST unsubscribes."""
    inbox, _ = smtp
    doc = subscribe(api, channel="email", target=EMAIL, scope="district", district="lc-gangkou")
    assert EMAIL not in json.dumps(doc)
    before = open_episode(settings.database_url, "lc-tpg-u1", "lc-eeb-gangkou")
    run(settings)
    (sender, rcpts, confirm_mail), *more = inbox.messages
    assert more == []  # the episode before confirmation is not news to this subscriber
    assert (sender, rcpts) == ("news@sunlight.example", [EMAIL])
    assert confirm_mail["Subject"] == "[Sunlight] Confirm your subscription"
    body = confirm_mail.get_content()
    leave = link(body, "/api/v1/subscriptions/unsubscribe")
    assert confirm_mail["List-Unsubscribe"] == f"<{BASE}{leave}>"
    assert confirm_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    confirmed = api.get(link(body, "/api/v1/subscriptions/confirm"))
    assert confirmed.json()["status"] == "confirmed"
    assert EMAIL not in confirmed.text
    assert api.get("/api/v1/subscriptions/confirm", params={"token": "x" * 32}).status_code == 404

    episode = open_episode(settings.database_url, "lc-st1-sinter1", "lc-eeb-gangkou")
    open_episode(settings.database_url, "lc-cm2-kiln1", "lc-eeb-nanhe")  # another district
    run(settings)
    run(settings)  # finds nothing more to send
    assert len(inbox.messages) == 2
    news = inbox.messages[1][2]
    assert news["Subject"].startswith(f"[Sunlight] New episode {episode}: ")
    assert news["List-Unsubscribe"] == f"<{BASE}{leave}>"
    assert news["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert leave in news.get_content()
    assert (
        news["Message-ID"]
        == f"<sunlight-subscription-{news['X-Sunlight-Delivery-Id']}@sunlight.example>"
    )

    resolve(settings.database_url, episode, "lc-eeb-gangkou")
    resolve(settings.database_url, before, "lc-eeb-gangkou")  # opened before: still news now
    run(settings)
    subjects = sorted(m[2]["Subject"] for m in inbox.messages[2:])
    assert len(subjects) == 2
    assert all(s.startswith("[Sunlight] Resolved episode") for s in subjects)
    assert "Action taken: desulphuriser repaired" in inbox.messages[2][2].get_content()

    # A GET of the link (a mail scanner) changes nothing; the one-click POST unsubscribes.
    page = api.get(leave)
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert EMAIL not in page.text
    gone = api.post(
        leave,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert gone.json()["status"] == "unsubscribed"
    open_episode(settings.database_url, "lc-ch1-heater1", "lc-eeb-gangkou")
    run(settings)
    assert len(inbox.messages) == 4


def test_webhook_challenge_signed_news_and_scope(api: TestClient, settings: Settings) -> None:
    """A webhook is confirmed by fetching the URL its signed challenge carries; then it gets
    signed news within its radius only, with the unsubscribe URL in every payload."""
    with webhook_receiver("unknown-yet") as hook:
        doc = subscribe(
            api,
            channel="webhook",
            target=hook.url,
            scope="radius",
            lon=116.47,
            lat=39.84,
            radius_m=2000,
        )
        hook.secret = doc["secret"]
        assert hook.url not in json.dumps(doc)
        run(settings)
        (challenge,) = hook.requests
        assert challenge.verified
        payload = challenge.json()
        assert payload["kind"] == "confirm"
        assert payload["stream"] == "subscriptions"
        assert "regulator" not in payload  # never mistaken for an office's alert
        assert payload["unsubscribe_url"] == doc["unsubscribe_url"]
        assert api.get(payload["confirm_url"]).status_code == 200

        inside = open_episode(settings.database_url, "lc-tpg-u1", "lc-eeb-gangkou")  # 0 m
        open_episode(settings.database_url, "lc-st1-sinter1", "lc-eeb-gangkou")  # ~4 km
        open_episode(settings.database_url, "lc-ww2-out1", "lc-eeb-gangkou")  # ~3.4 km
        run(settings)
        assert len(hook.requests) == 2
        news = hook.requests[1]
        assert news.verified
        event = news.json()
        assert (event["kind"], event["episode"]["id"]) == ("episode_opened", inside)
        assert event["episode"]["enterprise"] == "lc-ent-tp-gangkou"
        assert event["unsubscribe_url"] == doc["unsubscribe_url"]
        assert news.headers[IDEMPOTENCY_HEADER] == str(event["id"])

        # A reply to a report 500 m away reaches it; one 10 km away does not.
        reply = reply_to_report(settings.database_url, 116.47, 39.8445, "lc-gangkou")
        reply_to_report(settings.database_url, 116.47, 39.93, "lc-gangkou")
        run(settings)
        assert len(hook.requests) == 3
        answer = hook.requests[2].json()
        assert (answer["kind"], answer["reply"]["id"]) == ("report_reply", reply)
        assert answer["reply"]["body"] == "Inspector on site at 14:00."
        assert answer["reply"]["report"]["url"].startswith(f"{BASE}/reports/")

        assert api.post(doc["unsubscribe_url"]).json()["status"] == "unsubscribed"
        reply_to_report(settings.database_url, 116.47, 39.8445, "lc-gangkou")
        run(settings)
        assert len(hook.requests) == 3


def confirmed_subscription(api: TestClient, settings: Settings, hook_url: str, **scope: Any) -> int:
    """A webhook subscription confirmed directly by its token, as its receiver would."""
    subscribe(api, channel="webhook", target=hook_url, **scope)
    with psycopg.connect(settings.database_url) as conn:
        sub_id, token = conn.execute(
            "select id, confirm_token from subscriptions order by id desc limit 1"
        ).fetchone()  # type: ignore[misc]
    assert api.get("/api/v1/subscriptions/confirm", params={"token": token}).status_code == 200
    return int(sub_id)


def deliveries(database_url: str) -> dict[int, list[str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select subscription_id, event_key from subscriber_deliveries"
            " where kind <> 'confirm' order by id"
        ).fetchall()
    out: dict[int, list[str]] = {}
    for sub, key in rows:
        out.setdefault(sub, []).append(key)
    return out


def test_scopes_and_exactly_once_across_runs_and_a_restart(
    api: TestClient, settings: Settings
) -> None:
    """Enterprise, district and radius subscriptions each get exactly the events in their
    scope, once, however many runs and restarts of the job, and each is sent once."""
    with webhook_receiver("s") as hook:
        plant = confirmed_subscription(
            api, settings, hook.url, scope="enterprise", enterprise="lc-ent-tp-north"
        )
        nanhe = confirmed_subscription(
            api, settings, hook.url, scope="district", district="lc-nanhe"
        )
        circle = confirmed_subscription(
            api, settings, hook.url, scope="radius", lon=116.24, lat=39.82, radius_m=1000
        )
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("update subscriber_deliveries set status = 'cancelled'")  # challenges
        north = open_episode(settings.database_url, "lc-tpn-u2", "lc-eeb-dongshan")
        kiln = open_episode(settings.database_url, "lc-cm2-kiln1", "lc-eeb-nanhe")
        wwtp = open_episode(settings.database_url, "lc-ww1-out1", "lc-eeb-nanhe")
        open_episode(settings.database_url, "lc-tpgt-gt1", "lc-eeb-beiling")  # nobody's

        first = Subscribers(settings)
        run(settings, first)
        run(settings, first)
        Engine(settings).subscriptions()  # a restart: the job as the alerts leader runs it
        resolve(settings.database_url, kiln, "lc-eeb-nanhe")
        run(settings, Subscribers(settings))
        run(settings, first)

        def key(episode: int, kind: str) -> str:
            with psycopg.connect(settings.database_url) as conn:
                row = conn.execute(
                    "select id from episode_events where episode_id = %s and kind = %s",
                    (episode, kind),
                ).fetchone()
            assert row is not None
            return f"episode_event:{row[0]}"

        assert deliveries(settings.database_url) == {
            plant: [key(north, "opened")],
            nanhe: [key(kiln, "opened"), key(wwtp, "opened"), key(kiln, "resolved")],
            circle: [key(kiln, "opened"), key(kiln, "resolved")],  # wwtp is ~5 km away
        }
        wait_until(lambda: len(hook.requests) == 6, 5, "six deliveries")
        ids = [r.headers[IDEMPOTENCY_HEADER] for r in hook.requests]
        assert len(set(ids)) == 6


def test_bad_requests_are_problems(api: TestClient, database_url: str) -> None:
    """Bad input gets 4xx problem+json naming the problem; nothing is stored."""
    cases = [
        (
            {
                "channel": "email",
                "target": "not-an-address",
                "scope": "district",
                "district": "lc-nanhe",
            },
            "e-mail",
        ),
        (
            {"channel": "email", "target": EMAIL, "scope": "district", "district": "nowhere"},
            "no district",
        ),
        (
            {"channel": "email", "target": EMAIL, "scope": "enterprise", "enterprise": "nobody"},
            "no enterprise",
        ),
        (
            {
                "channel": "email",
                "target": EMAIL,
                "scope": "radius",
                "lon": 116.4,
                "lat": 39.9,
                "radius_m": 5,
            },
            "radius_m",
        ),
        ({"channel": "email", "target": EMAIL, "scope": "district"}, "district_id"),
        (
            {"channel": "sms", "target": EMAIL, "scope": "district", "district": "lc-nanhe"},
            "channel",
        ),
        (
            {
                "channel": "webhook",
                "target": "ftp://example.org/x",
                "scope": "district",
                "district": "lc-nanhe",
            },
            "http",
        ),
    ]
    for body, words in cases:
        response = api.post("/api/v1/subscriptions", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert words in response.json()["detail"]
    assert api.get("/api/v1/subscriptions/confirm").status_code == 422
    assert (
        api.post("/api/v1/subscriptions/unsubscribe", params={"token": "y" * 32}).status_code == 404
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from subscriptions").fetchone() == (0,)


def test_private_webhooks_refused_and_floods_limited(database_url: str) -> None:
    """Without the local-use flag a loopback webhook is refused; one address cannot be sent
    more than a few opt-in messages a day; one client cannot subscribe without limit."""
    load_registry(database_url, EXAMPLE_REGISTRY)
    settings = Settings(database_url=database_url, subscriptions_per_hour=7)
    with TestClient(create_app(settings)) as client:
        refused = client.post(
            "/api/v1/subscriptions",
            json={
                "channel": "webhook",
                "target": "http://127.0.0.1:9/x",
                "scope": "district",
                "district": "lc-nanhe",
            },
        )
        assert refused.status_code == 422
        assert "private network" in refused.json()["detail"]
        body = {"channel": "email", "target": EMAIL, "scope": "district", "district": "lc-nanhe"}
        statuses = [client.post("/api/v1/subscriptions", json=body).status_code for _ in range(6)]
        assert statuses == [202] * 5 + [429]
        other = {**body, "target": "someone.else@example.org"}
        assert client.post("/api/v1/subscriptions", json=other).status_code == 429  # 8th call
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from subscriber_deliveries").fetchone() == (5,)


def test_no_address_in_any_public_response(api: TestClient, settings: Settings) -> None:
    """After subscribing by e-mail and webhook, no public endpoint or page shows either
    target: lists, episodes, the map, the OpenAPI document."""
    with webhook_receiver("s") as hook:
        subscribe(api, channel="email", target=EMAIL, scope="district", district="lc-gangkou")
        subscribe(api, channel="webhook", target=hook.url, scope="district", district="lc-gangkou")
        open_episode(settings.database_url, "lc-tpg-u1", "lc-eeb-gangkou")
        run(settings)
        for path in [
            "/api/v1/episodes",
            "/api/v1/episodes/1",
            "/api/v1/enterprises",
            "/api/v1/districts",
            "/api/v1/regulators",
            "/regulators",
            "/map",
            "/openapi.json",
        ]:
            text = api.get(path).text
            assert EMAIL not in text, path
            assert hook.url not in text, path


def test_webhook_retried_with_backoff_under_one_key(api: TestClient, settings: Settings) -> None:
    """A receiver answering 503 gets the same delivery again once the backoff has passed,
    with the same Idempotency-Key and body; the attempts are logged."""
    with webhook_receiver("s") as hook:
        doc = subscribe(
            api, channel="webhook", target=hook.url, scope="district", district="lc-nanhe"
        )
        hook.secret = doc["secret"]
        hook.statuses.append(503)
        run(settings)
        assert len(hook.requests) == 1
        with psycopg.connect(settings.database_url) as conn:
            status, due, tried = conn.execute(
                "select d.status, d.next_attempt_at, a.at from subscriber_deliveries d"
                " join subscriber_delivery_attempts a on a.delivery_id = d.id"
            ).fetchone()  # type: ignore[misc]
        assert status == "pending"
        assert due > tried  # backed off
        with psycopg.connect(settings.database_url) as conn:
            Subscribers(settings).send_due(conn, datetime.now(UTC) + timedelta(minutes=5))
            attempts = conn.execute(
                "select ok, detail from subscriber_delivery_attempts order by id"
            ).fetchall()
            (status,) = conn.execute("select status from subscriber_deliveries").fetchone()  # type: ignore[misc]
        assert len(hook.requests) == 2
        first, second = hook.requests
        assert first.headers[IDEMPOTENCY_HEADER] == second.headers[IDEMPOTENCY_HEADER]
        assert first.body == second.body
        assert second.verified
        assert [ok for ok, _ in attempts] == [False, True]
        assert attempts[0][1].startswith("HTTP 503")
        assert status == "sent"


def test_two_fan_outs_at_once_queue_each_delivery_once(api: TestClient, settings: Settings) -> None:
    """Two processes fanning out the same event at the same moment (a leader and one that
    thinks it is): the second waits on the first's claim, then finds the event taken."""
    with webhook_receiver("s") as hook:
        confirmed_subscription(api, settings, hook.url, scope="district", district="lc-nanhe")
    open_episode(settings.database_url, "lc-cm2-kiln1", "lc-eeb-nanhe")
    now = datetime.now(UTC)
    lookback = timedelta(hours=1)
    results: list[int] = []
    with psycopg.connect(settings.database_url) as first:
        assert fan_out(first, now, lookback=lookback) == 1  # claimed, not yet committed

        def second() -> None:
            with psycopg.connect(settings.database_url, application_name="second") as conn:
                results.append(fan_out(conn, now, lookback=lookback))
                conn.commit()

        thread = threading.Thread(target=second)
        thread.start()

        def second_waits_on_the_claim() -> bool:
            with psycopg.connect(settings.database_url) as probe:
                row = probe.execute(
                    "select wait_event_type from pg_stat_activity where application_name = 'second'"
                ).fetchone()
            return row is not None and row[0] == "Lock"

        wait_until(second_waits_on_the_claim, 10, "the second fan-out to wait")
        first.commit()
        thread.join(10)
    assert results == [0]
    assert sum(len(keys) for keys in deliveries(settings.database_url).values()) == 1


def test_spent_addresses_are_forgotten(
    api: TestClient, settings: Settings, smtp: tuple[Inbox, int]
) -> None:
    """Once a subscription can no longer send (unsubscribed, or its opt-in link expired
    unconfirmed), its address is erased; its links still answer."""
    inbox, _ = smtp
    for who in ("gone", "never", "live"):
        subscribe(
            api,
            channel="email",
            target=f"{who}@example.org",
            scope="district",
            district="lc-nanhe",
            lang="zh" if who == "live" else "en",
        )
    run(settings)
    mails = {rcpts[0]: message.get_content() for _, rcpts, message in inbox.messages}
    assert "确认订阅请打开" in mails["live@example.org"]
    confirm = link(mails["live@example.org"], "/api/v1/subscriptions/confirm")
    assert "订阅已确认" in api.get(confirm, headers={"Accept": "text/html"}).text
    leave = link(mails["gone@example.org"], "/api/v1/subscriptions/unsubscribe")
    assert api.post(leave).is_success
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "update subscriptions set confirm_expires_at = now() - interval '1 minute'"
            " where target = 'never@example.org'"
        )
    run(settings)
    with psycopg.connect(settings.database_url) as conn:
        targets = sorted(r[0] for r in conn.execute("select target from subscriptions"))
    assert targets == ["", "", "live@example.org"]
    expired = api.get(link(mails["never@example.org"], "/api/v1/subscriptions/confirm"))
    assert expired.status_code == 410
    assert expired.headers["content-type"] == "application/problem+json"
    assert "expired" in expired.json()["detail"]
    page = api.get(leave, headers={"Accept": "text/html"})
    assert "You are unsubscribed" in page.text


def test_targets_that_are_gone_end_their_subscription(
    api: TestClient, settings: Settings, smtp: tuple[Inbox, int]
) -> None:
    """A webhook answering 410 Gone, or a mail server refusing the address for good (550),
    ends the subscription: nothing more is queued or sent to it."""
    inbox, _ = smtp
    with webhook_receiver("s") as hook:
        confirmed_subscription(api, settings, hook.url, scope="district", district="lc-nanhe")
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("update subscriber_deliveries set status = 'cancelled'")  # challenge
        inbox.refuse = "550 5.1.1 no such mailbox"
        subscribe(api, channel="email", target=EMAIL, scope="district", district="lc-nanhe")
        hook.statuses.append(410)
        open_episode(settings.database_url, "lc-cm2-kiln1", "lc-eeb-nanhe")
        run(settings)
        assert len(hook.requests) == 1
        with psycopg.connect(settings.database_url) as conn:
            ended = conn.execute(
                "select kind, unsubscribed_at is not null from subscriptions order by id"
            ).fetchall()
        assert ended == [("webhook", True), ("email", True)]
        open_episode(settings.database_url, "lc-ww1-out1", "lc-eeb-nanhe")
        run(settings)
        assert len(hook.requests) == 1
        assert inbox.messages == []
