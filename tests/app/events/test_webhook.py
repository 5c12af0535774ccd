"""Webhooks against a real receiver on 127.0.0.1: down for the first half, then every event in order with a
valid signature; a wrong secret is caught; a killed publisher's accepted events are delivered by the next one,
with no duplicate."""

import json
import logging
import multiprocessing as mp

import pytest

from app.events.outbox import Outbox
from app.events.publisher import Publisher, publisher_main
from app.events.schema import APPEARED
from app.events.webhook import SIGNATURE_HEADER, WebhookSink, sign, verify_signature
from app.settings import Settings
from tests.app.events.conftest import Receiver, free_port, make_events, wait_for

SECRET = "whsec-test-3c1f"


def test_signature_verifies_only_with_its_secret_and_body():
    body = b'{"id":"x"}'
    header = sign(body, SECRET)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(body, header, SECRET)
    assert not verify_signature(body, header, "another-secret")
    assert not verify_signature(body + b" ", header, SECRET)
    assert not verify_signature(body, None, SECRET)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_receiver_down_for_the_first_half_gets_every_event_in_order_signed(tmp_path):
    port = free_port()
    events = make_events(range(5))  # 10 events
    publisher = Publisher(tmp_path, [WebhookSink(f"http://127.0.0.1:{port}/hook", SECRET)], retry=(0.05, 0.4))
    publisher.start()
    receiver = Receiver(port)
    try:
        for e in events[:5]:
            assert publisher.submit(e)
        wait_for(lambda: publisher.failed["webhook"] >= 3, 10, "failed attempts while the receiver is down")
        assert publisher.owed() == 5  # held, not lost
        receiver.start()
        for e in events[5:]:
            publisher.submit(e)
        wait_for(lambda: len(receiver.received) >= 10, 20, "all events at the receiver")
        assert publisher.drain(5)
    finally:
        publisher.close()
        receiver.stop()
    assert receiver.ids() == [e.id for e in events]  # every event, once, in order
    for headers, body in receiver.received:
        assert verify_signature(body, headers[SIGNATURE_HEADER], SECRET)
        assert not verify_signature(body, headers[SIGNATURE_HEADER], "wrong-secret")
        assert headers["X-Facestream-Event"] == json.loads(body)["type"]
    assert json.loads(receiver.received[0][1])["snapshot"]["crop"]  # the crop travels with the event


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_wrong_secret_is_refused_and_the_event_kept(tmp_path, caplog):
    port = free_port()
    receiver = Receiver(port, secret=SECRET).start()
    publisher = Publisher(tmp_path, [WebhookSink(f"http://127.0.0.1:{port}/hook", "not-the-secret")],
                          retry=(0.05, 0.2))
    try:
        with caplog.at_level(logging.WARNING, logger="facestream.events"):
            publisher.start()
            publisher.submit(make_events(range(1))[0])
            wait_for(lambda: receiver.rejected >= 2, 10, "the receiver to reject the signature")
        assert receiver.received == [] and publisher.owed() == 1  # refused, so still queued
        assert "answered 401 Unauthorized — check WEBHOOK_SECRET" in caplog.text
        assert "not-the-secret" not in caplog.text and "/hook" not in caplog.text  # no secret, no path logged
    finally:
        publisher.close()
        receiver.stop()


def _owed(folder) -> int:
    if not (folder / "outbox.sqlite3").is_file():
        return 0
    box = Outbox(folder, readonly=True)
    try:
        return box.count("webhook")
    finally:
        box.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_restarted_publisher_delivers_what_the_killed_one_accepted_without_duplicates(tmp_path):
    port = free_port()
    settings = Settings(webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret=SECRET,
                        events_dir=str(tmp_path / "events"), log_level="WARNING")
    events = make_events(range(5))
    ctx = mp.get_context("spawn")
    first_q = ctx.Queue()
    first = ctx.Process(target=publisher_main, args=(settings, first_q), kwargs={"retry": (0.05, 0.4)})
    first.start()
    for e in events[:6]:
        first_q.put(e.to_dict())
    wait_for(lambda: _owed(tmp_path / "events") == 6, 60, "the first publisher to accept 6 events", step=0.2)
    first.kill()  # kill -9: no chance to clean up
    first.join(10)
    receiver = Receiver(port).start()
    try:
        second_q = ctx.Queue()
        second = ctx.Process(target=publisher_main, args=(settings, second_q), kwargs={"retry": (0.05, 0.4)})
        second.start()
        second_q.put(events[0].to_dict())  # a restarted identify stage announces track 0 again
        for e in events[6:]:
            second_q.put(e.to_dict())
        second_q.put(None)  # end of stream: deliver what is queued, then exit
        second.join(60)
        assert second.exitcode == 0
    finally:
        receiver.stop()
    assert receiver.ids() == [e.id for e in events]
    appeared = [json.loads(b)["track"] for _, b in receiver.received if json.loads(b)["type"] == APPEARED]
    assert sorted(appeared) == [0, 1, 2, 3, 4]  # one person.appeared per track, the repeat was refused
    assert _owed(tmp_path / "events") == 0
