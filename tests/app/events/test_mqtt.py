"""MQTT against a real mosquitto on 127.0.0.1 (persistence on) with a persistent QoS 1 subscriber: every event
exactly once and in order across a broker restart, snapshots as JPEG, and a retained ``available`` that turns
offline when the publisher is killed (its last will)."""

import logging
import multiprocessing as mp
import time

import pytest

from app.errors import FacestreamError
from app.events.mqtt import MqttSink, check_topic, parse_url
from app.events.publisher import Publisher, publisher_main
from app.redact import redact
from app.settings import Settings
from tests.app.events.conftest import Subscriber, free_port, make_events, wait_for

AVAILABLE = "facestream/available"


def test_url_and_topic_are_checked_and_the_password_masked():
    assert parse_url("mqtt://broker.lan") == ("broker.lan", 1883, None, None, False)
    assert parse_url("mqtts://u:p%40ss-word@h:8884") == ("h", 8884, "u", "p@ss-word", True)
    assert "p@ss-word" not in redact("connecting with p@ss-word")
    with pytest.raises(FacestreamError, match="MQTT_URL must look like mqtt://"):
        parse_url("http://broker:1883")
    with pytest.raises(FacestreamError, match="MQTT_TOPIC='home/#' must be a plain topic prefix"):
        check_topic("home/#")


@pytest.mark.timeout(30)
def test_an_unreachable_broker_holds_events_without_blocking_and_says_so_once(tmp_path, caplog):
    port = free_port()  # nothing listens there
    publisher = Publisher(tmp_path, [MqttSink(f"mqtt://127.0.0.1:{port}", reconnect=(0.1, 0.2))])
    with caplog.at_level(logging.WARNING, logger="facestream.events"):
        publisher.start()
        try:
            t = time.monotonic()
            for e in make_events(range(3)):
                publisher.submit(e)
            assert time.monotonic() - t < 1.0
            time.sleep(1.5)  # several reconnect attempts
            assert publisher.owed() == 6
        finally:
            publisher.close()
    assert caplog.text.count(f"MQTT broker 127.0.0.1:{port} cannot be reached") == 1


def retained(broker, topic: str) -> bytes:
    """What a new client gets on ``topic`` (its retained message)."""
    sub = Subscriber(broker, [topic], client_id=f"probe-{time.monotonic_ns()}", clean=True)
    try:
        return wait_for(lambda: sub.on(topic), 10, f"a retained message on {topic}")[-1]
    finally:
        sub.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_every_event_arrives_in_order_across_a_broker_restart(broker, tmp_path, caplog):
    events = make_events(range(6))  # 12 events
    subscriber = Subscriber(broker, ["facestream/events", "facestream/+/snapshot"])
    sink = MqttSink(broker.url, reconnect=(0.2, 1.0))
    publisher = Publisher(tmp_path, [sink], retry=(0.05, 0.5)).start()
    try:
        assert sink.connected.wait(10)
        assert retained(broker, AVAILABLE) == b"online"
        for e in events[:4]:
            publisher.submit(e)
        wait_for(lambda: len(subscriber.event_ids()) >= 4, 10, "the first events")
        # and their acknowledgements: a PUBACK still on its way when the broker stops makes paho send that event
        # again after the restart (at least once, as documented), which is not what this test is about
        wait_for(lambda: publisher.owed() == 0, 10, "the broker's acknowledgements of the first events")
        with caplog.at_level(logging.WARNING, logger="facestream.events"):
            broker.stop()
            for e in events[4:9]:  # sent while the broker is down: held, the caller does not wait
                t = time.monotonic()
                publisher.submit(e)
                assert time.monotonic() - t < 1.0
            time.sleep(0.5)
            assert publisher.owed() >= 5
            broker.start()
        for e in events[9:]:
            publisher.submit(e)
        wait_for(lambda: len(subscriber.event_ids()) >= len(events), 30, "every event after the restart")
        assert publisher.drain(10)
        time.sleep(0.5)  # a duplicate would arrive now
    finally:
        publisher.close()
        subscriber.close()
    # every event, first arrivals in order. A repeat (same id) is QoS 1 on the broker -> subscriber leg: a
    # subscriber acknowledgement the broker had not processed when it stopped makes it deliver that message again
    # from its saved session (seen under load: [0, 1, 2, 3, 1, 2, 4, ...]); consumers act once per id
    ids, order = subscriber.event_ids(), [e.id for e in events]
    assert list(dict.fromkeys(ids)) == order, " ".join(str(order.index(i)) for i in ids)
    assert len(ids) - len(order) <= 4, "more repeats than messages in flight at the stop"
    snapshots = subscriber.on("facestream/cam1/snapshot")
    assert len(snapshots) >= len(events) and all(s.startswith(b"\xff\xd8") for s in snapshots)
    assert subscriber.sessions[0] is False and subscriber.sessions[-1] is True  # the broker kept its session
    assert "disconnected" in caplog.text and "events are held" in caplog.text
    assert retained(broker, AVAILABLE) == b"offline"  # a clean close says goodbye


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_available_turns_offline_when_the_publisher_is_killed(broker, tmp_path):
    settings = Settings(mqtt_url=broker.url, events_dir=str(tmp_path / "events"), log_level="WARNING")
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    proc = ctx.Process(target=publisher_main, args=(settings, events))
    proc.start()
    watcher = Subscriber(broker, [AVAILABLE], client_id="watcher", clean=True)
    try:
        wait_for(lambda: b"online" in watcher.on(AVAILABLE), 60, "the publisher to say online", step=0.2)
        assert retained(broker, AVAILABLE) == b"online"
        event = make_events(range(1))[0]
        subscriber = Subscriber(broker, ["facestream/events"], client_id="events")
        events.put(event.to_dict())
        wait_for(lambda: subscriber.event_ids() == [event.id], 20, "the event from the publisher process")
        subscriber.close()
        proc.kill()  # kill -9: only the broker's last will can say it is gone
        proc.join(10)
        wait_for(lambda: watcher.on(AVAILABLE)[-1] == b"offline", 20, "the last will")
    finally:
        watcher.close()
        if proc.is_alive():
            proc.kill()
    assert retained(broker, AVAILABLE) == b"offline"
