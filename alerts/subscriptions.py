"""Telling citizens: public events fanned out to matching subscriptions, then sent from the
subscribers' own outbox by e-mail or signed webhook, with retries and backoff.

Exactly once per subscription and event: an event is claimed once (``subscription_fanout``) in
the transaction that queues its deliveries, and a delivery is unique per subscription and event
key, so two runs, a restart, or a second leader queue nothing twice. Sending is at least once,
like the offices' outbox: a crash between sending and committing resends with the same
idempotency key (``Idempotency-Key`` = delivery id, the same ``Message-ID``).

Subscribers' messages never share anything with the offices' notifications but the channel
code: their own table, ids, ``Message-ID`` domain part and webhook envelope (``"stream":
"subscriptions"``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg

from alerts.notifiers.base import (
    DeliveryError,
    EmailTarget,
    Notification,
    Notifier,
    Target,
    WebhookTarget,
)
from alerts.notifiers.dispatch import attempt_once
from alerts.notifiers.email import SmtpConfig, send_email
from alerts.notifiers.webhook import WebhookNotifier
from domain.subscriptions import (
    Place,
    Scope,
    ScopeKind,
    confirm_url,
    is_private_address,
    matches,
    public_base,
    unsubscribe_url,
)
from store import subscriptions as store
from sunlight.settings import Settings

logger = logging.getLogger(__name__)

STREAM = "subscriptions"


def scope_of(row: Mapping[str, Any]) -> Scope:
    return Scope(
        ScopeKind(row["scope"]),
        enterprise_id=row["enterprise_id"],
        district_id=row["district_id"],
        lon=row["lon"],
        lat=row["lat"],
        radius_m=row["radius_m"],
    )


# ---- fan-out ------------------------------------------------------------------------------


def fan_out(conn: psycopg.Connection, now: datetime, *, lookback: timedelta) -> int:
    """Queue a delivery for every new public event and every confirmed subscription it
    concerns; returns how many were queued. Run inside one transaction."""
    since = now - lookback
    events = store.claim_episode_events(conn, since)
    replies = store.claim_report_replies(conn, since)
    store.prune_fanout(conn, since - lookback)
    if not events and not replies:
        return 0  # the usual case, every few seconds: no need to read the subscriptions
    subscriptions = [(row, scope_of(row)) for row in store.active(conn)]
    queued = 0
    for event in events:
        place = Place(
            enterprise_id=event["enterprise_id"],
            district_id=event["district_id"],
            lon=event["lon"],
            lat=event["lat"],
        )
        for sub, scope in subscriptions:
            # Only news from after the subscriber said yes.
            if sub["confirmed_at"] <= event["at"] and matches(scope, place):
                queued += store.queue(
                    conn,
                    sub["id"],
                    f"episode_event:{event['event_id']}",
                    store.EPISODE_EVENT_KINDS[event["kind"]],
                    episode_id=event["episode_id"],
                    due_at=now,
                )
    for reply in replies:
        place = Place(
            district_id=reply["district_id"],
            lon=reply["lon"],
            lat=reply["lat"],
            also_enterprise_id=reply["also_enterprise_id"],
        )
        for sub, scope in subscriptions:
            if sub["confirmed_at"] <= reply["at"] and matches(scope, place):
                queued += store.queue(
                    conn,
                    sub["id"],
                    f"report_reply:{reply['reply_id']}",
                    "report_reply",
                    reply_id=reply["reply_id"],
                    due_at=now,
                )
    return queued


# ---- composing ----------------------------------------------------------------------------

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "confirm_subject": "[Sunlight] Confirm your subscription",
        "confirm_body": "Someone (hopefully you) asked Sunlight to send news about {scope} to "
        "this address.\nTo start, confirm: {url}\nIf it was not you, ignore this message: "
        "nothing more will be sent.",
        "episode_opened": "New episode",
        "episode_reopened": "Recurring episode",
        "episode_resolved": "Resolved episode",
        "over": "{pollutant} {period}ly mean over its limit",
        "gap": "monitoring gap (no valid data)",
        "reply_subject": "[Sunlight] {office} replied to report {code}",
        "enterprise": "the enterprise {id}",
        "district": "the district {id}",
        "radius": "everything within {r:g} m of {lat:.5f}, {lon:.5f}",
        "why": "You receive this because you subscribed to news about {scope}.",
        "unsubscribe": "Unsubscribe (one click): {url}",
        "record": "Public record: {url}",
        "office": "Office in charge: {office}",
        "since": "Since: {start}  until: {end}  hours: {hours}",
        "highest": "Highest mean: {mean:.3f} against limit {limit:g}",
        "action": "Action taken: {action}",
        "status": "Report status: {status}",
    },
    "zh": {
        "confirm_subject": "[Sunlight] 请确认您的订阅",
        "confirm_body": "有人（希望是您本人）请求 Sunlight 向此地址发送关于{scope}的消息。\n"
        "确认订阅请打开：{url}\n如非本人操作，请忽略本邮件，我们不会再发送任何消息。",
        "episode_opened": "新的超标事件",
        "episode_reopened": "再次发生的事件",
        "episode_resolved": "事件已处理完结",
        "over": "{pollutant} {period}均值超过排放限值",
        "gap": "监测数据缺失（无有效数据）",
        "reply_subject": "[Sunlight] {office} 答复了举报 {code}",
        "enterprise": "企业 {id}",
        "district": "辖区 {id}",
        "radius": "坐标 {lat:.5f}, {lon:.5f} 周围 {r:g} 米范围",
        "why": "您收到此消息，是因为您订阅了关于{scope}的消息。",
        "unsubscribe": "退订（一键）：{url}",
        "record": "公开记录：{url}",
        "office": "负责部门：{office}",
        "since": "开始：{start}  结束：{end}  小时数：{hours}",
        "highest": "最高均值：{mean:.3f}，限值 {limit:g}",
        "action": "处理措施：{action}",
        "status": "举报状态：{status}",
    },
}


def _iso(value: Any) -> Any:
    return (
        value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if isinstance(value, datetime)
        else value
    )


def describe_scope(scope: Scope, lang: str) -> str:
    words = _WORDS[lang]
    if scope.kind is ScopeKind.ENTERPRISE:
        return words["enterprise"].format(id=scope.enterprise_id)
    if scope.kind is ScopeKind.DISTRICT:
        return words["district"].format(id=scope.district_id)
    return words["radius"].format(r=scope.radius_m, lat=scope.lat, lon=scope.lon)


def scope_json(scope: Scope) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": scope.kind.value}
    if scope.kind is ScopeKind.ENTERPRISE:
        out["enterprise"] = scope.enterprise_id
    elif scope.kind is ScopeKind.DISTRICT:
        out["district"] = scope.district_id
    else:
        out.update(lon=scope.lon, lat=scope.lat, radius_m=scope.radius_m)
    return out


@dataclass(frozen=True, slots=True)
class Message:
    """One subscriber message in every form a channel needs."""

    subject: str
    text: str
    payload: dict[str, Any]
    regulator_id: str  # the office the news is about; 'sunlight' for the opt-in itself


def compose(
    delivery: Mapping[str, Any],
    base: str,
    *,
    episode: Mapping[str, Any] | None = None,
    reply: Mapping[str, Any] | None = None,
) -> Message:
    """Subject, text and JSON of one delivery, in the subscriber's language; every form carries
    the one-click unsubscribe link."""
    lang = delivery["lang"] if delivery["lang"] in _WORDS else "en"
    words = _WORDS[lang]
    scope = scope_of(delivery)
    leave = unsubscribe_url(base, delivery["unsubscribe_token"])
    payload: dict[str, Any] = {
        "stream": STREAM,
        "delivery_id": delivery["id"],
        "subscription": {"id": delivery["subscription_id"], "scope": scope_json(scope)},
        "unsubscribe_url": leave,
    }
    footer = [
        "",
        "--",
        words["why"].format(scope=describe_scope(scope, lang)),
        words["unsubscribe"].format(url=leave),
    ]
    kind = delivery["kind"]
    if kind == "confirm":
        url = confirm_url(base, delivery["confirm_token"])
        payload["confirm_url"] = url
        body = words["confirm_body"].format(scope=describe_scope(scope, lang), url=url)
        return Message(
            words["confirm_subject"], "\n".join([body, *footer]) + "\n", payload, "sunlight"
        )
    if kind == "report_reply":
        assert reply is not None
        record = f"{base}/reports/{reply['tracking_code']}"
        subject = words["reply_subject"].format(
            office=reply["regulator_id"], code=reply["tracking_code"]
        )
        lines = [subject, "", reply["body"], ""]
        if reply["reply_status"]:
            lines.append(words["status"].format(status=reply["reply_status"]))
        lines.append(words["record"].format(url=record))
        payload["reply"] = {
            "id": reply["id"],
            "at": _iso(reply["created_at"]),
            "office": reply["regulator_id"],
            "body": reply["body"],
            "status": reply["reply_status"],
            "episode": reply["episode_id"],
            "report": {
                "tracking_code": reply["tracking_code"],
                "category": reply["category"],
                "received_at": _iso(reply["received_at"]),
                "status": reply["status"],
                "district": reply["district_id"],
                "lon": reply["lon"],
                "lat": reply["lat"],
                "url": record,
            },
        }
        return Message(subject, "\n".join([*lines, *footer]) + "\n", payload, reply["regulator_id"])
    assert episode is not None
    what = (
        words["over"].format(pollutant=episode["pollutant"], period=episode["period"])
        if episode["kind"] == "exceedance"
        else words["gap"]
    )
    name = (
        (episode["enterprise_name_zh"] if lang == "zh" else None)
        or episode["enterprise_name"]
        or episode["site_id"]
    )
    subject = f"[Sunlight] {words[kind]} {episode['id']}: {name}, {what}"
    record = f"{base}/api/v1/episodes/{episode['id']}"
    lines = [
        subject,
        "",
        f"{episode['site_id']}"
        + (f" ({episode['enterprise_id']})" if episode["enterprise_id"] else ""),
        words["office"].format(office=episode["regulator_id"]),
        words["since"].format(
            start=_iso(episode["first_start"]),
            end=_iso(episode["last_end"]),
            hours=episode["hours"],
        ),
    ]
    if episode["kind"] == "exceedance" and episode["max_mean"] is not None:
        lines.append(
            words["highest"].format(mean=episode["max_mean"], limit=episode["limit_value"] or 0)
        )
    if kind == "episode_resolved" and episode["resolution"]:
        lines.append(words["action"].format(action=episode["resolution"]))
    lines.append(words["record"].format(url=record))
    payload["episode"] = {
        "id": episode["id"],
        "kind": episode["kind"],
        "site": episode["site_id"],
        "enterprise": episode["enterprise_id"],
        "district": episode["district_id"],
        "pollutant": episode["pollutant"] or None,
        "period": episode["period"] or None,
        "status": episode["status"],
        "severity": episode["severity"],
        "first_start": _iso(episode["first_start"]),
        "last_end": _iso(episode["last_end"]),
        "hours": episode["hours"],
        "max_mean": episode["max_mean"],
        "limit": episode["limit_value"],
        "office_in_charge": episode["regulator_id"],
        "resolved_at": _iso(episode["resolved_at"]),
        "resolution": episode["resolution"],
        "url": record,
    }
    return Message(subject, "\n".join([*lines, *footer]) + "\n", payload, episode["regulator_id"])


# ---- sending ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriberNotification(Notification):
    """A ``Notification`` whose webhook envelope is the subscriber payload plus ``id`` (the
    delivery id, also the ``Idempotency-Key``) and ``kind``: no office field, so no receiver
    can take it for an office's alert."""

    def envelope(self) -> dict[str, Any]:
        return {**self.payload, "id": self.id, "kind": self.kind}


def build_email(notification: Notification, to: str, sender: str) -> EmailMessage:
    """The plain-text e-mail with RFC 8058 one-click unsubscribe headers."""
    email = EmailMessage(policy=SMTP)
    email["Subject"] = notification.subject
    email["From"] = sender
    email["To"] = to
    email["Date"] = format_datetime(datetime.now(UTC))
    domain = sender.rpartition("@")[2]
    # Not the offices' <sunlight-notification-…>: the two outboxes' ids overlap.
    email["Message-ID"] = f"<sunlight-subscription-{notification.id}@{domain}>"
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders stay quiet
    email["List-Unsubscribe"] = f"<{notification.payload['unsubscribe_url']}>"
    email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email["X-Sunlight-Delivery-Id"] = str(notification.id)
    email["X-Sunlight-Kind"] = notification.kind
    email.set_content(notification.body_text)
    return email


class SubscriberEmailNotifier:
    """The e-mail channel for subscribers: one message per delivery to the subscription's one
    address, with the unsubscribe headers the offices' messages do not carry."""

    channel: ClassVar[str] = "email"
    target_type: ClassVar[type[Target]] = EmailTarget

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, notification: Notification, target: Target) -> None:
        if not isinstance(target, EmailTarget) or len(target.addresses) != 1:
            raise DeliveryError("a subscriber e-mail goes to one address", retryable=False)
        (to,) = target.addresses
        send_email(self.config, build_email(notification, to, self.config.sender), [to])

    def close(self) -> None:
        """Nothing to release: every message has its own connection."""


class _GuardedWebhook:
    """The office webhook channel, refusing at send time a host that resolves to a private
    address (a public name may point inward), unless private targets are allowed."""

    channel: ClassVar[str] = "webhook"
    target_type: ClassVar[type[Target]] = WebhookTarget

    def __init__(self, inner: WebhookNotifier, allow_private: bool) -> None:
        self.inner, self.allow_private = inner, allow_private

    def send(self, notification: Notification, target: Target) -> None:
        if not isinstance(target, WebhookTarget):
            raise DeliveryError(f"not a webhook target: {type(target).__name__}", retryable=False)
        if not self.allow_private:
            parts = urlsplit(target.url)
            try:
                infos = socket.getaddrinfo(parts.hostname, parts.port or 443)
            except OSError as exc:
                raise DeliveryError(f"cannot resolve host: {exc}", retryable=True) from None
            if any(is_private_address(str(info[4][0])) for info in infos):
                raise DeliveryError("host resolves to a private address", retryable=False)
        self.inner.send(notification, target)

    def close(self) -> None:
        self.inner.close()


class Subscribers:
    """The fan-out and the sender, as one job for the alerts leader."""

    BATCH = 500  # deliveries per run; the rest wait for the next run, seconds later

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.webhook = _GuardedWebhook(
            WebhookNotifier(user_agent="sunlight-subscriptions"),
            settings.subscriptions_allow_private_targets,
        )

    def _smtp(self) -> SmtpConfig | None:
        s = self.settings
        if not s.smtp_host:
            return None
        return SmtpConfig(
            host=s.smtp_host,
            port=s.smtp_port,
            sender=s.smtp_sender,
            starttls=s.smtp_starttls,
            username=s.smtp_username,
            password=s.smtp_password,
        )

    def run(self, conn: psycopg.Connection, now: datetime) -> int:
        """Fan out new events, then send what is due; returns how many were delivered."""
        lookback = timedelta(hours=self.settings.subscriptions_lookback_hours)
        with conn.transaction():
            fan_out(conn, now, lookback=lookback)
            # Keep no address longer than it is needed.
            store.erase_spent_targets(conn, now)
        return self.send_due(conn, now)

    def send_due(self, conn: psycopg.Connection, now: datetime) -> int:
        """Attempt every due delivery once (up to ``BATCH``); return how many were delivered.

        One transaction per delivery, as in the offices' dispatcher: a crash resends at most the
        one in flight (under its idempotency key), never every earlier one of the run."""
        base = public_base(self.settings)
        delivered = 0
        for _ in range(self.BATCH):
            with conn.transaction():
                rows = store.due(conn, now, limit=1)
                if not rows:
                    break
                delivered += self._send_one(conn, rows[0], base)
        return delivered

    def _send_one(self, conn: psycopg.Connection, row: Mapping[str, Any], base: str) -> int:
        if row["unsubscribed_at"] is not None:
            store.record_attempt(
                conn, row["id"], ok=False, detail="unsubscribed", next_attempt_at=None, cancel=True
            )
            return 0
        episode = store.episode_summary(conn, row["episode_id"]) if row["episode_id"] else None
        reply = store.reply_summary(conn, row["reply_id"]) if row["reply_id"] else None
        message = compose(row, base, episode=episode, reply=reply)
        notification = SubscriberNotification(
            id=row["id"],
            regulator_id=message.regulator_id,
            kind=row["kind"],
            subject=message.subject,
            body_text=message.text,
            payload=message.payload,
        )
        channel = row["channel"]
        notifier: Notifier
        target: Target
        if channel == "webhook":
            notifier, target = self.webhook, WebhookTarget(row["target"], row["secret"])
        else:
            config = self._smtp()
            if config is None:
                store.record_attempt(
                    conn,
                    row["id"],
                    ok=False,
                    detail="no SMTP relay configured (SUNLIGHT_SMTP_HOST)",
                    next_attempt_at=None,
                )
                return 0
            notifier, target = SubscriberEmailNotifier(config), EmailTarget((row["target"],))
        outcome = attempt_once(
            notification,
            channel,
            target,
            notifier,
            attempt=row["attempts"] + 1,
            max_attempts=self.settings.subscriptions_max_attempts,
        )
        store.record_attempt(
            conn,
            row["id"],
            ok=outcome.ok,
            detail=outcome.detail,
            next_attempt_at=outcome.next_attempt_at,
        )
        if not outcome.ok and not outcome.retryable and _gone(outcome.detail):
            logger.info("subscription %s ended: %s", row["subscription_id"], outcome.detail)
            store.end_gone(conn, row["subscription_id"], datetime.now(UTC))
        return int(outcome.ok)


def _gone(detail: str) -> bool:
    """Whether a final failure says the target no longer exists: a webhook's ``410 Gone``, or
    a mail server refusing the recipient for good (5xx). Sending again would only be noise."""
    return detail.startswith(("HTTP 410", "all recipients refused"))
