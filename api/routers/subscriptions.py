"""Citizens subscribe to news about an enterprise, a district or a circle around a point, by
e-mail (double opt-in) or signed webhook (confirmed the same way, by a challenge sent to it);
every message has a one-click unsubscribe. No response ever names a subscriber's address."""

from __future__ import annotations

import html
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, SettingsDep
from api.errors import problem
from api.middleware import RateLimiter
from domain.subscriptions import (
    MAX_RADIUS_M,
    MIN_RADIUS_M,
    Channel,
    Scope,
    ScopeKind,
    check_email,
    check_webhook_url,
    public_base,
    unsubscribe_url,
)
from store import subscriptions as store

router = APIRouter(prefix="/api/v1/subscriptions", tags=["subscriptions"])

TOKEN_BYTES = 24  # 192 bits: unguessable capabilities in links


class SubscriptionRequest(BaseModel):
    """What a citizen asks for."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["email", "webhook"] = Field(description="How to be told.")
    target: str = Field(
        min_length=3,
        max_length=320,
        description="The e-mail address, or the http(s) URL to POST signed JSON to.",
        examples=["resident@example.org"],
    )
    scope: Literal["enterprise", "district", "radius"] = Field(
        description="What to watch: one enterprise, one district, or a circle around a point."
    )
    enterprise: str | None = Field(
        default=None, max_length=64, description="Enterprise id (scope=enterprise)."
    )
    district: str | None = Field(
        default=None, max_length=64, description="District id (scope=district)."
    )
    lon: float | None = Field(default=None, description="Centre longitude (scope=radius).")
    lat: float | None = Field(default=None, description="Centre latitude (scope=radius).")
    radius_m: float | None = Field(
        default=None,
        description=f"Radius in metres, {MIN_RADIUS_M:g} to {MAX_RADIUS_M:g} (scope=radius).",
    )
    lang: Literal["en", "zh"] = Field(default="en", description="Language of the messages.")


def _limiter(request: Request, per_hour: int) -> RateLimiter:
    limiter: RateLimiter | None = getattr(request.app.state, "subscriptions_limiter", None)
    if limiter is None:
        limiter = RateLimiter(per_hour, window_s=3600.0)
        request.app.state.subscriptions_limiter = limiter
    return limiter


@router.post(
    "",
    status_code=202,
    summary="Subscribe by e-mail or webhook; nothing is sent until the target confirms",
    description="E-mail: a confirmation message is sent to the address; the subscription "
    "starts when its link is opened (double opt-in). Webhook: a signed `confirm` POST carrying "
    "`confirm_url` is sent to the URL; the subscription starts when that URL is fetched. The "
    "webhook's signing `secret` and its `unsubscribe_url` are in this response only.",
    responses={429: {"description": "Too many subscriptions from this client or for this target."}},
)
def subscribe(
    body: SubscriptionRequest, request: Request, conn: ConnDep, settings: SettingsDep
) -> Any:
    client = request.client.host if request.client else "unknown"
    allowed, _, wait = _limiter(request, settings.subscriptions_per_hour).take(client)
    if not allowed:
        response = problem(
            429,
            "too many requests",
            f"at most {settings.subscriptions_per_hour} subscriptions per hour per client",
        )
        response.headers["Retry-After"] = str(max(1, int(wait) + 1))
        return response
    channel = Channel(body.channel)
    if channel is Channel.EMAIL:
        target = check_email(body.target)
    else:
        target = check_webhook_url(
            body.target, allow_private=settings.subscriptions_allow_private_targets
        )
    scope = Scope(
        ScopeKind(body.scope),
        enterprise_id=body.enterprise if body.scope == "enterprise" else None,
        district_id=body.district if body.scope == "district" else None,
        lon=body.lon if body.scope == "radius" else None,
        lat=body.lat if body.scope == "radius" else None,
        radius_m=body.radius_m if body.scope == "radius" else None,
    )
    now = datetime.now(UTC)
    with conn.transaction():
        store.check_scope_exists(conn, scope)
        # Without this, anyone could make Sunlight flood one mailbox with opt-in messages.
        recent = store.recent_for_target(conn, channel.value, target, now - timedelta(days=1))
        if recent >= settings.subscriptions_per_target_per_day:
            return problem(
                429,
                "too many requests",
                "too many subscriptions for this target today; try again tomorrow",
            )
        secret = secrets.token_urlsafe(32) if channel is Channel.WEBHOOK else None
        unsubscribe_token = secrets.token_urlsafe(TOKEN_BYTES)
        store.create(
            conn,
            kind=channel.value,
            target=target,
            secret=secret,
            scope=scope,
            lang=body.lang,
            confirm_token=secrets.token_urlsafe(TOKEN_BYTES),
            confirm_expires_at=now + timedelta(hours=settings.subscriptions_confirm_hours),
            unsubscribe_token=unsubscribe_token,
        )
    doc: dict[str, Any] = {
        "status": "pending_confirmation",
        "channel": channel.value,
        "scope": body.scope,
        "confirm_within_hours": settings.subscriptions_confirm_hours,
    }
    if channel is Channel.WEBHOOK:
        doc["secret"] = secret
        doc["signature"] = "X-Sunlight-Signature: sha256=HMAC(secret, timestamp + '.' + body)"
        doc["unsubscribe_url"] = unsubscribe_url(public_base(settings), unsubscribe_token)
    return JSONResponse(doc, status_code=202, headers={"Cache-Control": "no-store"})


Token = Annotated[
    str, Query(min_length=16, max_length=128, description="The token from the message's link.")
]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


_PAGE = {
    "en": {
        "confirmed": "Subscription confirmed. You will be told about new episodes, their "
        "resolution and replies to reports there. Every message has an unsubscribe link.",
        "ask": "Stop these messages?",
        "button": "Unsubscribe",
        "done": "You are unsubscribed. No more messages will be sent.",
    },
    "zh": {
        "confirmed": "订阅已确认。我们会告知您该处的新事件、处理结果以及对举报的答复。"
        "每条消息都附有退订链接。",
        "ask": "不再接收这些消息？",
        "button": "退订",
        "done": "您已退订，我们不会再发送任何消息。",
    },
}


def _page(lang: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!DOCTYPE html><html lang="{"zh-Hans" if lang == "zh" else "en"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        "<title>Sunlight</title></head>"
        f'<body style="font: 15px/1.5 system-ui, sans-serif; max-width: 36em; margin: 3em auto">'
        f"{body}</body></html>",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/confirm", summary="Confirm a subscription (the link in the opt-in message)")
def confirm(token: Token, request: Request, conn: ConnDep) -> Response:
    with conn.transaction():
        row = store.confirm(conn, token, datetime.now(UTC))
    if _wants_html(request):
        lang = row["lang"]
        return _page(lang, f"<p>{html.escape(_PAGE[lang]['confirmed'])}</p>")
    return JSONResponse(
        {"status": "confirmed", "channel": row["kind"], "scope": row["scope"]},
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/unsubscribe",
    summary="The unsubscribe page: one button (a GET never unsubscribes, so link scanners cannot)",
    response_class=HTMLResponse,
)
def unsubscribe_page(token: Token, conn: ConnDep) -> HTMLResponse:
    row = store.find_by_unsubscribe_token(conn, token)
    words = _PAGE[row["lang"]]
    if row["unsubscribed_at"] is not None:
        return _page(row["lang"], f"<p>{html.escape(words['done'])}</p>")
    action = html.escape(f"/api/v1/subscriptions/unsubscribe?token={token}", quote=True)
    return _page(
        row["lang"],
        f'<form method="post" action="{action}"><p>{html.escape(words["ask"])}</p>'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{html.escape(words["button"])}</button></form>',
    )


@router.post(
    "/unsubscribe",
    summary="Unsubscribe: RFC 8058 one-click (mail clients POST List-Unsubscribe=One-Click), "
    "the page's button, or any client",
)
def unsubscribe(token: Token, request: Request, conn: ConnDep) -> Response:
    with conn.transaction():
        row = store.unsubscribe(conn, token, datetime.now(UTC))
    if _wants_html(request):
        lang = store.find_by_unsubscribe_token(conn, token)["lang"]
        return _page(lang, f"<p>{html.escape(_PAGE[lang]['done'])}</p>")
    return JSONResponse(
        {"status": "unsubscribed", "channel": row["kind"], "scope": row["scope"]},
        headers={"Cache-Control": "no-store"},
    )
