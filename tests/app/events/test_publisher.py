"""The publisher's configuration and loop: sinks from settings, secrets masked, bad events skipped with one
line, duplicates refused."""

import logging
import queue

import pytest

from app.errors import FacestreamError
from app.events.mqtt import MqttSink
from app.events.outbox import announced_lookup
from app.events.publisher import Publisher, publisher_main, sinks_from_settings
from app.events.webhook import WebhookSink
from app.redact import redact
from app.settings import Settings
from tests.app.events.conftest import make_events

pytestmark = pytest.mark.timeout(60)


def test_sinks_follow_the_settings():
    assert sinks_from_settings(Settings()) == []
    sinks = sinks_from_settings(Settings(mqtt_url="mqtt://127.0.0.1:1", webhook_url="http://127.0.0.1:1/h",
                                         webhook_secret="s"))
    assert [type(s) for s in sinks] == [MqttSink, WebhookSink]
    with pytest.raises(FacestreamError, match="WEBHOOK_URL must be an http:// or https:// URL"):
        sinks_from_settings(Settings(webhook_url="ftp://host/x"))


def test_webhook_secret_and_mqtt_password_never_reach_a_log_line():
    Settings.load(None, environ={"WEBHOOK_SECRET": "whsec-never-print-me", "MQTT_URL": "mqtt://u:pw-hidden-9@h:1"})
    sinks_from_settings(Settings(mqtt_url="mqtt://u:pw-hidden-9@h:1"))
    line = redact("secret whsec-never-print-me, password pw-hidden-9, url mqtt://u:pw-hidden-9@h:1")
    assert "whsec-never-print-me" not in line and "pw-hidden-9" not in line


def test_duplicates_are_refused(tmp_path):
    publisher = Publisher(tmp_path, [])
    event = make_events(range(1))[0]
    assert publisher.submit(event) is True
    assert publisher.submit(event) is False
    publisher.close()


@pytest.mark.timeout(30)
def test_the_loop_skips_a_bad_event_with_one_line_and_keeps_going(tmp_path, capfd):
    events = queue.Queue()
    good = make_events(range(1))[0]
    bad = good.to_dict() | {"track": -3}
    for item in (bad, good.to_dict(), None):
        events.put(item)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        publisher_main(Settings(events_dir=str(tmp_path), log_level="ERROR"), events)  # as its own process would
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    errors = [line for line in capfd.readouterr().err.splitlines() if " E " in line]
    assert len(errors) == 1 and errors[0].endswith("event dropped: event track -3 must be a whole number >= 0")
    assert announced_lookup(tmp_path)(good.key)["track"] == 0  # the good one was accepted after it
