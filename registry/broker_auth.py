"""Broker accounts from the registry: Mosquitto's password file and ACL, and their secrets.

Every registered device gets an account named by its id that may publish only under
``sunlight/v1/devices/{device_id}/``; each Sunlight service gets an account of its own. The
plain passwords live in ``credentials.yaml`` (mode 0600), the only file that must stay secret;
``passwd`` holds PBKDF2-SHA512 hashes in the format of Mosquitto 2.0's ``mosquitto_passwd``,
written here so neither compose nor ``sunlight up`` needs that binary.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Final, Literal
from urllib.parse import quote

import yaml

from domain.errors import ValidationError
from ingest.topics import HJ212_FILTER, PREFIX, READINGS_FILTER
from registry.model import Registry

logger = logging.getLogger(__name__)

CREDENTIALS_FILE: Final = "credentials.yaml"
PASSWORD_FILE: Final = "passwd"
ACL_FILE: Final = "acl"

# Mosquitto 2.0 reads "$7$<iterations>$<salt>$<hash>" with a salt of exactly 12 bytes and a
# 64-byte hash, both in standard padded base64 (src/security_default.c, unpwd__decode_passwords).
HASH_TYPE_PBKDF2: Final = 7
SALT_BYTES: Final = 12
HASH_BYTES: Final = 64
# The broker re-derives the hash on every CONNECT, so iterations cost connect latency; the
# passwords are 256-bit random tokens, which no iteration count makes any harder to guess.
# 1000 is the current upstream default (2.0's mosquitto_passwd used 101).
PBKDF2_ITERATIONS: Final = 1000
PASSWORD_BYTES: Final = 32

Access = Literal["read", "write", "readwrite"]
AccountKind = Literal["service", "device", "regulator"]


class BrokerAuthError(ValidationError):
    """Broker accounts that cannot be generated or a credentials file that cannot be read."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="bad_broker_auth")


@dataclass(frozen=True, slots=True)
class Grant:
    """One ACL line: ``topic <access> <topic filter>``."""

    access: Access
    topic: str


@dataclass(frozen=True, slots=True)
class Account:
    """A broker login and what it may publish and receive."""

    username: str
    password: str = field(repr=False)
    kind: AccountKind
    grants: tuple[Grant, ...]

    def url(self, host: str, port: int, *, tls: bool = False) -> str:
        """This account's broker URL, for ``SUNLIGHT_MQTT_URL``."""
        return mqtt_url(self.username, self.password, host, port, tls=tls)


INGEST: Final = "sunlight-ingest"
GATEWAY: Final = "sunlight-gateway"
SIMULATOR: Final = "sunlight-sim"
ALERTS: Final = "sunlight-alerts"
MONITOR: Final = "sunlight-monitor"

# Read grants also cover "$share/<group>/<filter>" subscriptions: Mosquitto checks read access
# against each delivered message's own topic, not against the subscription.
SERVICE_GRANTS: Final[Mapping[str, tuple[Grant, ...]]] = {
    INGEST: (Grant("read", READINGS_FILTER), Grant("read", HJ212_FILTER)),
    # The HJ 212 gateway relays TCP data loggers, so it speaks for any device, in that format only.
    GATEWAY: (Grant("write", HJ212_FILTER),),
    # The simulator publishes for every simulated device (and could send them commands).
    SIMULATOR: (Grant("write", f"{PREFIX}/#"),),
    ALERTS: (Grant("write", "sunlight/v1/regulators/#"),),
    # For health checks such as `mosquitto_sub -t '$SYS/broker/uptime'` once anonymous is off.
    MONITOR: (Grant("read", "$SYS/#"),),
}

# The ACL and password files are line-based: a newline, NUL or ':' in a name would forge lines;
# wildcards or '/' in a device id would widen its topic grant.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


REGULATOR_PREFIX: Final = "office."


def regulator_grants(regulator_id: str) -> tuple[Grant, ...]:
    """An office's own account reads the alerts Sunlight publishes for it, and nothing else."""
    _check_name(regulator_id, "regulator id")
    return (Grant("read", f"sunlight/v1/regulators/{regulator_id}/#"),)


def device_grants(device_id: str) -> tuple[Grant, ...]:
    """A device publishes under its own prefix and may receive only its own commands."""
    _check_name(device_id, "device id")
    own = f"{PREFIX}/{device_id}"
    return (Grant("write", f"{own}/#"), Grant("read", f"{own}/commands/#"))


@dataclass(frozen=True, slots=True)
class BrokerAuth:
    """What ``generate_broker_auth`` wrote: every account and what changed since the last run."""

    out_dir: Path
    accounts: tuple[Account, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def credentials_file(self) -> Path:
        return self.out_dir / CREDENTIALS_FILE

    @property
    def password_file(self) -> Path:
        return self.out_dir / PASSWORD_FILE

    @property
    def acl_file(self) -> Path:
        return self.out_dir / ACL_FILE

    def account(self, username: str) -> Account:
        for account in self.accounts:
            if account.username == username:
                return account
        raise KeyError(username)

    def url(self, username: str, host: str, port: int, *, tls: bool = False) -> str:
        return self.account(username).url(host, port, tls=tls)


def mqtt_url(username: str, password: str, host: str, port: int, *, tls: bool = False) -> str:
    """``mqtt://user:password@host:port`` with both parts percent-encoded (see parse_mqtt_url)."""
    scheme = "mqtts" if tls else "mqtt"
    netloc_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{netloc_host}:{port}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """The password-file hash ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    if len(salt) != SALT_BYTES:
        raise ValueError(f"Mosquitto accepts only {SALT_BYTES}-byte salts, got {len(salt)}")
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"${HASH_TYPE_PBKDF2}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``hashed`` (a ``$7$`` password-file hash) is of ``password``; False if malformed."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != str(HASH_TYPE_PBKDF2):
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if iterations < 1 or len(salt) != SALT_BYTES or len(expected) != HASH_BYTES:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def _check_name(name: str, what: str) -> None:
    if not _SAFE_NAME.match(name):
        raise BrokerAuthError(f"{what} {name!r} cannot be a broker account or topic level")


def _check_topic(topic: str) -> None:
    # ACL lines are "topic <access> <filter>" split on the first spaces; a newline would add lines.
    if not topic or any(c in topic for c in "\n\r\0"):
        raise BrokerAuthError(f"unsafe ACL topic {topic!r}")


def password_file_text(
    accounts: Iterable[Account], previous: Mapping[str, str] | None = None
) -> str:
    """Password-file lines; a previous hash that still matches is kept, so re-runs change
    nothing."""
    previous = previous or {}
    lines = []
    for account in accounts:
        _check_name(account.username, "account")
        old = previous.get(account.username)
        hashed = old if old and verify_password(account.password, old) else None
        lines.append(f"{account.username}:{hashed or hash_password(account.password)}")
    return "".join(f"{line}\n" for line in lines)


def acl_text(accounts: Iterable[Account]) -> str:
    """The ACL file: one ``user`` block per account; no line before the first ``user`` line,
    since those would apply to anonymous clients."""
    blocks = ["# Generated by `sunlight registry broker-auth` from the registry; do not edit.\n"]
    for account in accounts:
        _check_name(account.username, "account")
        lines = [f"user {account.username}"]
        for grant in account.grants:
            _check_topic(grant.topic)
            lines.append(f"topic {grant.access} {grant.topic}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def mosquitto_auth_config(auth_dir: PurePath) -> str:
    """Mosquitto config lines enforcing the files in ``auth_dir`` (as the broker will see it)."""
    return (
        "allow_anonymous false\n"
        f"password_file {auth_dir / PASSWORD_FILE}\n"
        f"acl_file {auth_dir / ACL_FILE}\n"
    )


def load_credentials(path: Path) -> dict[str, str]:
    """Account → password from a credentials file written by ``generate_broker_auth``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BrokerAuthError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise BrokerAuthError(f"{path}: must map each account name to its password")
    return dict(data)


def _read_password_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    hashes: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        user, sep, hashed = line.partition(":")
        if sep and not line.startswith("#"):
            hashes[user.strip()] = hashed.strip()
    return hashes


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` with ``text`` at ``mode``: readers (and the broker on reload) see the old
    file or the new one, never half of one, and a secret is never briefly world-readable."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_broker_auth(registry: Registry, out_dir: Path) -> BrokerAuth:
    """Write ``credentials.yaml``, ``passwd`` and ``acl`` for the registry's devices and the
    services into ``out_dir``. Existing passwords are kept; devices no longer in the registry
    lose their accounts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    credentials_path = out_dir / CREDENTIALS_FILE
    old = load_credentials(credentials_path) if credentials_path.exists() else {}

    wanted: list[tuple[str, AccountKind, tuple[Grant, ...]]] = [
        (name, "service", grants) for name, grants in SERVICE_GRANTS.items()
    ]
    for device, _site, _medium in registry.devices():
        if device.id in SERVICE_GRANTS:
            raise BrokerAuthError(f"device id {device.id!r} is reserved for a service account")
        wanted.append((device.id, "device", device_grants(device.id)))
    for regulator in registry.regulators:
        wanted.append(
            (REGULATOR_PREFIX + regulator.id, "regulator", regulator_grants(regulator.id))
        )
    seen: set[str] = set()
    for name, _kind, _grants in wanted:
        if name in seen:
            raise BrokerAuthError(f"broker account {name!r} would be defined twice")
        seen.add(name)

    accounts = tuple(
        Account(name, old.get(name) or secrets.token_urlsafe(PASSWORD_BYTES), kind, grants)
        for name, kind, grants in wanted
    )
    names = {a.username for a in accounts}
    added = tuple(a.username for a in accounts if a.username not in old)
    removed = tuple(name for name in old if name not in names)

    # Secrets first: a crash before the broker files are replaced leaves passwords that are
    # recorded but not yet accepted, never accepted passwords that nobody recorded.
    header = "# Broker passwords generated by `sunlight registry broker-auth`. Keep secret.\n"
    body = yaml.safe_dump({a.username: a.password for a in accounts}, sort_keys=False)
    write_atomic(credentials_path, header + body, 0o600)
    previous_hashes = _read_password_file(out_dir / PASSWORD_FILE)
    # The broker files hold no secret (hashes of random 256-bit tokens) and must be readable by
    # the broker's own user, which may not be the user running this.
    write_atomic(out_dir / PASSWORD_FILE, password_file_text(accounts, previous_hashes), 0o644)
    write_atomic(out_dir / ACL_FILE, acl_text(accounts), 0o644)
    if added or removed:
        logger.info(
            "broker accounts in %s: %d added, %d removed", out_dir, len(added), len(removed)
        )
    return BrokerAuth(out_dir=out_dir, accounts=accounts, added=added, removed=removed)
