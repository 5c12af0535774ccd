"""How events join a run: only with a sink (no publisher otherwise), MQTT/webhooks count as a headless run's
output, a bad URL stops the start with one line, and run ids differ."""

from __future__ import annotations

import argparse

import pytest

from app.cli.run import check_outputs
from app.errors import FacestreamError
from app.events.wiring import events_link, new_run_id, publisher_step
from app.settings import Settings

pytestmark = pytest.mark.timeout(30)


def headless() -> argparse.Namespace:
    return argparse.Namespace(headless=True, out=None, serve=None, log_tracks=None, overlay=None)


def test_no_sink_no_publisher(tmp_path):
    link = events_link(Settings(events_dir=str(tmp_path)), marks=None)
    assert link.events is None and publisher_step(Settings(), link, 1024) is None


def test_a_sink_brings_the_spool_and_the_publisher(tmp_path):
    settings = Settings(events_dir=str(tmp_path), mqtt_url="mqtt://127.0.0.1:1883")
    link = events_link(settings, marks=str(tmp_path / "m"), run="r-1")
    assert link.run == "r-1" and link.events == str(tmp_path.resolve() / "spool")
    step = publisher_step(settings, link, 1024)
    assert step.name == "publish" and step.output == "published"


def test_a_bad_mqtt_url_stops_the_start_with_one_line(tmp_path):
    with pytest.raises(FacestreamError, match="MQTT_URL must look like mqtt://"):
        events_link(Settings(events_dir=str(tmp_path), mqtt_url="http://broker:1883"), marks=None)


def test_mqtt_or_a_webhook_is_output_enough_for_a_headless_run():
    with pytest.raises(FacestreamError, match="no output"):
        check_outputs(Settings(), headless())
    check_outputs(Settings(mqtt_url="mqtt://127.0.0.1:1883"), headless())
    check_outputs(Settings(webhook_url="http://127.0.0.1:9/hook"), headless())


def test_run_ids_are_unique_and_sortable():
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50 and all(len(i) == 22 and "/" not in i for i in ids)
