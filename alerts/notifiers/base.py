"""What every notification channel shares: the notification value, targets, errors, registry."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final, Protocol

logger = logging.getLogger(__name__)

# The kinds the lifecycle sends today; a new kind needs no change here.
KINDS: Final = ("opened", "reminder", "escalation", "resolved")

ALERTS_TOPIC: Final = "sunlight/v1/regulators/{regulator_id}/alerts"

# A regulator id becomes an MQTT topic level and an e-mail header: nothing that could add a
# level, a wildcard, or a header line.
_TOPIC_LEVEL_FORBIDDEN = frozenset("/+#\0\r\n")


class DeliveryError(Exception):
    """A channel could not deliver; ``retryable`` says whether trying again later may succeed.

    ``retry_after_s`` carries a receiver's own request to wait (HTTP ``Retry-After``).
    """

    def __init__(self, detail: str, *, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def _no_line_breaks(value: str, what: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{what} must be one line")


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one office; ``id`` is the idempotency key every channel passes on, so a
    receiver can recognise a redelivery (at-least-once delivery makes duplicates possible)."""

    id: int
    regulator_id: str
    kind: str
    subject: str
    body_text: str
    # Read-only copy of a JSON-serialisable episode summary; excluded from hashing.
    payload: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.id < 0:
            raise ValueError("notification id must not be negative")
        if not self.regulator_id or _TOPIC_LEVEL_FORBIDDEN & set(self.regulator_id):
            raise ValueError(f"regulator id {self.regulator_id!r} cannot be a topic level")
        if not self.kind:
            raise ValueError("notification kind must not be empty")
        _no_line_breaks(self.kind, "kind")
        _no_line_breaks(self.subject, "subject")
        try:
            frozen = json.loads(json.dumps(dict(self.payload), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"notification payload is not JSON-serialisable: {exc}") from None
        object.__setattr__(self, "payload", MappingProxyType(frozen))

    def envelope(self) -> dict[str, Any]:
        """The JSON document webhooks and MQTT carry: the payload plus id, kind, regulator
        (which win over payload keys of the same name)."""
        return {**self.payload, "id": self.id, "kind": self.kind, "regulator": self.regulator_id}

    def envelope_bytes(self) -> bytes:
        """``envelope()`` as compact UTF-8 JSON with sorted keys: the exact bytes signed."""
        text = json.dumps(
            self.envelope(), ensure_ascii=False, sort_keys=True, separators=(",", ":")
        )
        return text.encode("utf-8")


class Target:
    """Where one channel delivers for one office; each channel has its own frozen subclass."""

    __slots__ = ()

    @classmethod
    def from_config(cls, regulator_id: str, config: Any) -> Target:
        """The target from an office's ``notify`` entry for this channel (see
        ``store.episodes.channels_of``); ``ValueError`` when it is unusable."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class WebhookTarget(Target):
    """An HTTPS endpoint and the shared secret its requests are signed with."""

    url: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")) or any(c.isspace() for c in self.url):
            raise ValueError("webhook URL must be an http(s) URL without spaces")
        if not self.secret:
            raise ValueError("webhook secret must not be empty")

    @classmethod
    def from_config(cls, regulator_id: str, config: Any) -> WebhookTarget:
        if not isinstance(config, Mapping):
            raise ValueError(f"webhook of {regulator_id}: expected url and secret")
        return cls(url=str(config.get("url") or ""), secret=str(config.get("secret") or ""))


@dataclass(frozen=True, slots=True)
class EmailTarget(Target):
    """The office's mailboxes, all on one message."""

    addresses: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("an e-mail target needs at least one address")
        for address in self.addresses:
            # Whitespace or a comma would smuggle extra recipients or header lines.
            if address.count("@") != 1 or any(c.isspace() or c in ",;<>" for c in address):
                raise ValueError(f"not a plain e-mail address: {address!r}")

    @classmethod
    def from_config(cls, regulator_id: str, config: Any) -> EmailTarget:
        if isinstance(config, str) or not isinstance(config, list | tuple):
            raise ValueError(f"e-mail of {regulator_id}: expected a list of addresses")
        return cls(addresses=tuple(str(a) for a in config))


@dataclass(frozen=True, slots=True)
class MqttTarget(Target):
    """A topic on the Sunlight broker; one per office, ``sunlight/v1/regulators/<id>/alerts``."""

    topic: str

    def __post_init__(self) -> None:
        if not self.topic or set(self.topic) & {"+", "#", "\0"}:
            raise ValueError(f"not a publishable MQTT topic: {self.topic!r}")
        if len(self.topic.encode("utf-8")) > 65535:
            raise ValueError("MQTT topic longer than 65535 bytes")

    @classmethod
    def for_regulator(cls, regulator_id: str) -> MqttTarget:
        if not regulator_id or _TOPIC_LEVEL_FORBIDDEN & set(regulator_id):
            raise ValueError(f"regulator id {regulator_id!r} cannot be a topic level")
        return cls(ALERTS_TOPIC.format(regulator_id=regulator_id))

    @classmethod
    def from_config(cls, regulator_id: str, config: Any) -> MqttTarget:
        return cls.for_regulator(regulator_id)


class Notifier(Protocol):
    """A channel. ``send`` returns once the receiver has accepted the notification, or raises
    ``DeliveryError``; it makes one attempt (retrying is the dispatcher's job) and may be called
    from several threads at once."""

    channel: ClassVar[str]
    target_type: ClassVar[type[Target]]

    def send(self, notification: Notification, target: Target) -> None: ...

    def close(self) -> None: ...


# Channel name → "module:class". A new channel is one module and one line here; modules load on
# first use, so a process that never e-mails never imports smtplib's machinery, and the channel
# modules can import this one without a cycle.
NOTIFIERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "webhook": "alerts.notifiers.webhook:WebhookNotifier",
        "email": "alerts.notifiers.email:EmailNotifier",
        "mqtt": "alerts.notifiers.mqtt:MqttNotifier",
    }
)


def notifier_class(channel: str) -> type[Notifier]:
    """The notifier class registered for ``channel``; ``KeyError`` for an unknown channel."""
    module_name, _, class_name = NOTIFIERS[channel].partition(":")
    cls: type[Notifier] = getattr(importlib.import_module(module_name), class_name)
    if cls.channel != channel:
        raise RuntimeError(f"{NOTIFIERS[channel]} declares channel {cls.channel!r}")
    return cls


def targets_for(regulator_id: str, channels: Mapping[str, Any]) -> dict[str, Target]:
    """Targets from an office's channel configuration (``store.episodes.channels_of``).

    An unknown or unusable channel is logged and left out, so one bad entry never stops the
    office's other channels.
    """
    targets: dict[str, Target] = {}
    for channel, config in channels.items():
        try:
            targets[channel] = notifier_class(channel).target_type.from_config(regulator_id, config)
        except (KeyError, ValueError) as exc:
            logger.error("regulator %s: channel %s unusable: %s", regulator_id, channel, exc)
    return targets
