"""Offices read their alerts over MQTT with their own broker accounts."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sunlight.brokers import wait_until
from tests.servers import SecuredBroker


def test_office_reads_only_its_own_alerts(broker: SecuredBroker) -> None:
    """An office's account receives the alerts published for it, never another office's."""
    from registry.broker_auth import ALERTS, REGULATOR_PREFIX
    from tests.alerts.loopback import subscribe

    office = REGULATOR_PREFIX + "lc-eeb-nanhe"
    with subscribe(broker.port, *broker.login(office), "sunlight/v1/regulators/#") as received:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="alerts-office-test")
        client.username_pw_set(*broker.login(ALERTS))
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            for regulator in ("lc-eeb-gangkou", "lc-eeb-nanhe"):
                info = client.publish(
                    f"sunlight/v1/regulators/{regulator}/alerts", regulator.encode(), qos=1
                )
                info.wait_for_publish(10)
            wait_until(lambda: len(received) >= 1, 10, "the office's own alert")
        finally:
            client.disconnect()
            client.loop_stop()
    assert [payload for _, payload, _, _ in received] == [b"lc-eeb-nanhe"]
