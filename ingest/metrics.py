"""Prometheus metrics of one ingestor: what came in, what was stored, what was refused, how fast."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class IngestMetrics:
    """A registry per ingestor, so several in one process (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "sunlight_ingest_messages_received", "MQTT messages received", registry=self.registry
        )
        self.stored = Counter(
            "sunlight_ingest_readings_stored",
            "Readings committed (inserted, corrected or already present)",
            registry=self.registry,
        )
        self.rejected = Counter(
            "sunlight_ingest_rejected",
            "Messages or values sent to the dead-letter table, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "sunlight_ingest_batch_seconds",
            "Time to validate and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.broker_connected = Gauge(
            "sunlight_ingest_broker_connected",
            "1 while connected to the broker",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "sunlight_ingest_database_up",
            "1 while the last database operation succeeded",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "sunlight_ingest_queue_depth",
            "Messages received and not yet committed",
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``host:port`` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
