"""The one place configuration is read: ``SUNLIGHT_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A broker address parsed from ``mqtt://user:password@host:port``."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @property
    def display(self) -> str:
        """The address without the password, safe for logs."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """Parse a broker URL; a bad URL is a configuration error, raised as ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"MQTT URL has no host: {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"MQTT URL has a bad port: {url!r}") from exc
    return MqttEndpoint(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


class Settings(BaseSettings):
    """Every process's configuration; each field is ``SUNLIGHT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SUNLIGHT_", extra="ignore")

    database_url: str = Field(
        default="postgresql://postgres@localhost:5432/sunlight",
        description="libpq URL of the PostgreSQL/TimescaleDB database.",
    )
    storage: Literal["auto", "timescaledb", "postgres"] = Field(
        default="auto",
        description="Storage path chosen at migration: TimescaleDB when the extension is "
        "available ('auto'), or forced.",
    )
    retention_days: int = Field(
        default=5 * 365, ge=30, description="Raw readings older than this are dropped."
    )
    compress_after_days: int = Field(
        default=7, ge=1, description="TimescaleDB compresses raw chunks older than this."
    )
    mqtt_url: str = Field(
        default="mqtt://localhost:1883", description="Broker as mqtt://user:password@host:port."
    )
    mqtt_credentials_file: Path | None = Field(
        default=None,
        description="credentials.yaml written by 'sunlight registry broker-auth'; with "
        "SUNLIGHT_MQTT_ACCOUNT, the broker password is read from it instead of the URL.",
    )
    mqtt_account: str | None = Field(
        default=None, description="This service's broker account, e.g. sunlight-ingest."
    )
    mqtt_client_id: str = Field(
        default="sunlight-ingest", description="Client id of the ingestor's persistent session."
    )
    mqtt_shared_group: str | None = Field(
        default=None,
        description="Subscribe through $share/<group>/… so several ingestors split the load.",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve Prometheus /metrics on this port."
    )
    metrics_host: str = "127.0.0.1"
    ingest_batch_size: int = Field(default=500, ge=1, le=100_000)
    ingest_batch_ms: int = Field(default=200, ge=1, le=60_000)
    gateway_host: str = Field(default="127.0.0.1", description="HJ 212 TCP gateway address.")
    gateway_port: int = Field(default=9212, ge=0, le=65535)
    gateway_idle_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Close a data-logger connection that sent no complete frame this long.",
    )
    gateway_frame_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Close a connection whose started frame is not complete this long after "
        "its first byte (slow-loris senders).",
    )
    gateway_max_connections: int = Field(
        default=1000, ge=1, description="Refuse data-logger connections beyond this many open."
    )
    alerts_gap_minutes: int = Field(
        default=60, ge=5, description="An outlet with no valid data this long is a monitoring gap."
    )
    alerts_reminder_minutes: int = Field(
        default=60, ge=1, description="Remind the office this often while unacknowledged."
    )
    alerts_reopen_hours: int = Field(
        default=24, ge=0, description="An exceedance this soon after resolution reopens it."
    )
    alerts_grace_minutes: int = Field(
        default=5, ge=0, description="Wait this long after an hour ends before judging it."
    )
    alerts_backfill_hours: int = Field(
        default=24, ge=1, description="On first start, judge this many past hours."
    )
    smtp_host: str | None = Field(default=None, description="SMTP relay for e-mail alerts.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_sender: str = "sunlight-alerts@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    api_rate_limit_per_minute: int = Field(
        default=600, ge=1, description="Requests per minute per client address on the API."
    )
    api_cache_seconds: float = Field(
        default=60,
        ge=0,
        le=60,
        description="Lists, the map and series are rebuilt at most this often and reused in "
        "between (values arrive each minute; at most the Cache-Control max-age clients are "
        "told); 0 rebuilds every time.",
    )
    api_cors_origins: list[str] = Field(
        default=["*"], description="Origins allowed to call the API from a browser."
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_head_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A request head must arrive whole this long after the connection opens or"
        " the previous response ends; slower clients get 408 and are disconnected.",
    )
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API worker processes sharing the port (about one per core). Each keeps "
        "its own response reuse and rate-limit counts: a client spreading requests over many "
        "connections may get up to this many times the per-minute limit.",
    )
    api_build_process: bool = Field(
        default=True,
        description="Each API process builds the responses it reuses (lists, the map, series) "
        "in a child process of its own, so requests never wait while one is built; false "
        "builds them in the serving process's threads.",
    )
    api_build_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="A build child that answers nothing for this long while builds wait for "
        "it is presumed stuck: killed and started again, those builds done by the serving "
        "process.",
    )
    public_base_url: str | None = Field(
        default=None, description="Public URL of the API, used in links; defaults to host:port."
    )
    subscriptions_allow_private_targets: bool = Field(
        default=False,
        description="Let citizens' webhooks point at loopback or private networks (tests, "
        "local use only).",
    )
    subscriptions_confirm_hours: int = Field(
        default=48, ge=1, description="A subscription's opt-in link works this long."
    )
    subscriptions_per_hour: int = Field(
        default=10, ge=1, description="New subscriptions per hour per client address."
    )
    subscriptions_per_target_per_day: int = Field(
        default=5, ge=1, description="New subscriptions per day for one address or URL."
    )
    subscriptions_lookback_hours: int = Field(
        default=72,
        ge=1,
        description="Events older than this are not sent to subscribers (after downtime).",
    )
    subscriptions_max_attempts: int = Field(
        default=8, ge=1, description="Delivery attempts to a subscriber before giving up."
    )
    map_tiles: str = Field(
        default="local",
        description="'local' draws the registry's district polygons as an offline basemap; "
        "'osm' or a tile URL template uses an online tile server.",
    )
    map_tiles_attribution: str = "&copy; OpenStreetMap contributors"
    data_dir: Path | None = Field(
        default=None, description="Where 'sunlight up' keeps its database and broker files."
    )
    registry_file: Path | None = Field(
        default=None, description="Registry YAML for 'sunlight up' and the simulator."
    )
    sim_interval_s: float = Field(default=60.0, gt=0, description="Simulated seconds per reading.")
    sim_speedup: float = Field(
        default=2880.0,
        gt=0,
        description="Simulated time / wall time while back-filling (two days per minute: the "
        "back-fill reaches back to the start of yesterday); the simulator never runs ahead of "
        "the real clock.",
    )
    reports_rate_limit_per_hour: int = Field(
        default=10, ge=1, description="Citizen reports accepted per hour per client address."
    )
    reports_pow_difficulty: int = Field(
        default=16,
        ge=0,
        le=32,
        description="Leading zero bits a report's proof of work needs (about 2**n hashes).",
    )
    reports_challenge_ttl_minutes: int = Field(
        default=30, ge=1, description="A proof-of-work challenge must be used within this."
    )
    reports_photo_max_bytes: int = Field(
        default=8_000_000,
        ge=10_000,
        le=16_000_000,  # the API refuses any body over 16 MiB (api.limits)
        description="Largest photo accepted with a report, bytes.",
    )
    reports_evidence_radius_m: float = Field(
        default=3000.0,
        gt=0,
        le=50_000,
        description="Enterprises within this many metres of a report are shown as evidence.",
    )
    reports_evidence_stations: int = Field(
        default=3, ge=1, le=20, description="Nearest air-quality stations shown with a report."
    )
    reports_remind_before_minutes: int = Field(
        default=30, ge=0, description="Remind the office this long before a reply is due."
    )
    device_timezone: str = Field(default="+08:00", description="Default HJ 212 device time zone.")
    memory_return_threshold_kib: int = Field(
        default=128,
        ge=0,
        le=32 * 1024,
        description=(
            "Blocks this large and larger are returned to the system when freed, so services"
            " that rebuild big responses stay flat in memory (glibc; 0 keeps its own policy)."
        ),
    )
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("SUNLIGHT_DATABASE_URL must be a libpq URL: postgresql://…")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @property
    def mqtt(self) -> MqttEndpoint:
        endpoint = parse_mqtt_url(self.mqtt_url)
        if self.mqtt_account and self.mqtt_credentials_file:
            from registry.broker_auth import load_credentials

            password = load_credentials(self.mqtt_credentials_file).get(self.mqtt_account)
            if password is None:
                raise ValueError(
                    f"no account {self.mqtt_account!r} in {self.mqtt_credentials_file}"
                )
            endpoint = MqttEndpoint(
                endpoint.host, endpoint.port, self.mqtt_account, password, endpoint.tls
            )
        return endpoint


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
