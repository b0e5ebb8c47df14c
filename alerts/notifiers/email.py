"""The e-mail channel: one plain-text message per notification, through an SMTP relay."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import ClassVar

from alerts.notifiers.base import DeliveryError, EmailTarget, Notification, Target

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """How to reach the relay. ``starttls`` upgrades the connection before ``username`` logs in;
    without it a password would cross the network in clear, so that combination is refused
    unless the relay is on loopback."""

    host: str
    port: int = 25
    sender: str = "sunlight-alerts@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.sender.count("@") != 1 or any(c.isspace() or c in ",;<>" for c in self.sender):
            raise ValueError(f"not a plain sender address: {self.sender!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP username and password go together")
        loopback = self.host in ("localhost", "127.0.0.1", "::1")
        if self.username is not None and not self.starttls and not loopback:
            raise ValueError("SMTP login without STARTTLS would send the password in clear")


def message_id(notification: Notification, sender: str) -> str:
    """The same ``Message-ID`` for every attempt at one notification, so a mailbox (or a
    person) can recognise a redelivered duplicate."""
    domain = sender.rpartition("@")[2]
    return f"<sunlight-notification-{notification.id}@{domain}>"


def build_message(
    notification: Notification, target: EmailTarget, sender: str, *, now: datetime | None = None
) -> EmailMessage:
    """The plain-text message for ``notification``, in UTF-8 where needed."""
    message = EmailMessage(policy=SMTP)
    message["Subject"] = notification.subject
    message["From"] = sender
    message["To"] = ", ".join(target.addresses)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id(notification, sender)
    # RFC 3834: an automatic message, so vacation responders stay quiet.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Sunlight-Notification-Id"] = str(notification.id)
    message["X-Sunlight-Kind"] = notification.kind
    message["X-Sunlight-Regulator"] = notification.regulator_id
    message.set_content(notification.body_text)
    return message


def _is_temporary(code: int) -> bool:
    return 400 <= code < 500


def _smtp_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


def send_email(
    config: SmtpConfig, message: EmailMessage, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    """One SMTP transaction, a fresh connection; failures as ``DeliveryError``s, 4xx and lost
    connections retryable and the rest final. Returns the recipients the relay refused while
    accepting others (a retry would duplicate the others' copies)."""
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls(context=config.ssl_context or ssl.create_default_context())
            if config.username is not None and config.password is not None:
                smtp.login(config.username, config.password)
            return smtp.send_message(message, config.sender, recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        detail = "; ".join(
            f"{rcpt}: {code} {_smtp_text(text)}" for rcpt, (code, text) in exc.recipients.items()
        )
        retryable = any(_is_temporary(code) for code in codes)
        raise DeliveryError(f"all recipients refused: {detail}", retryable=retryable) from None
    except smtplib.SMTPResponseException as exc:
        # Covers refused sender, data, HELO and login (535): 4xx are temporary by definition.
        detail = f"SMTP {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
        raise DeliveryError(detail, retryable=_is_temporary(exc.smtp_code)) from None
    except smtplib.SMTPServerDisconnected as exc:
        raise DeliveryError(f"relay disconnected: {exc}", retryable=True) from None
    except smtplib.SMTPException as exc:
        # What is left is configuration: no STARTTLS or AUTH offered, no common mechanism.
        raise DeliveryError(f"SMTP: {exc}", retryable=False) from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"relay certificate: {exc.verify_message}", retryable=False) from None
    except OSError as exc:  # refused, unreachable, timed out, TLS broke
        raise DeliveryError(f"relay unreachable: {exc!r}", retryable=True) from None


class EmailNotifier:
    """Sends with ``smtplib``, a fresh connection per message: notifications are rare, and an
    idle connection to a relay would only time out between them."""

    channel: ClassVar[str] = "email"
    target_type: ClassVar[type[Target]] = EmailTarget

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, notification: Notification, target: Target) -> None:
        if not isinstance(target, EmailTarget):
            raise DeliveryError(f"not an e-mail target: {type(target).__name__}", retryable=False)
        config = self.config
        message = build_message(notification, target, config.sender)
        refused = send_email(config, message, list(target.addresses))
        if refused:
            # Delivered to the others; a retry would duplicate their copies, so this is logged.
            logger.warning(
                "notification %s: relay refused %s",
                notification.id,
                ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in refused.items()),
            )

    def close(self) -> None:
        """Nothing to release: every message has its own connection."""
