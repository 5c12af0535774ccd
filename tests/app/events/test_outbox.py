"""The on-disk outbox: durable, in order, per-sink acknowledgement, deduplication, and a bound with a clear
policy."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import FacestreamError
from app.events.outbox import Outbox, announced_lookup
from app.events.schema import APPEARED, Event

pytestmark = pytest.mark.timeout(60)

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 1000


def event(track, type=APPEARED, run="r1", crop=JPEG):
    return Event(type=type, run=run, stream="0", track=track, known=True, name="Obama", person_id="p-1",
                 similarity=0.6, box=[0.0, 0.0, 10.0, 10.0], frame=track, captured_at=1.0 + track, first_seen=1.0,
                 crop_jpeg=crop)


def test_events_wait_for_each_sink_in_order_and_go_when_all_have_them(tmp_path):
    box = Outbox(tmp_path, ["mqtt", "webhook"])
    seqs = [box.accept(event(t)) for t in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [Event.from_json(b).track for _, b in box.pending("mqtt")] == [0, 1, 2, 3, 4]
    assert [s for s, _ in box.pending("mqtt", after=seqs[1], limit=2)] == seqs[2:4]
    box.ack("mqtt", seqs[0])
    assert box.count("mqtt") == 4 and box.count("webhook") == 5 and box.count() == 5
    box.ack("webhook", seqs[0])
    assert box.count() == 4  # gone once both sinks have it


def test_a_duplicate_key_is_refused_even_after_a_restart(tmp_path):
    box = Outbox(tmp_path, ["webhook"])
    assert box.accept(event(1)) is not None
    assert box.accept(event(1)) is None
    box.close()
    again = Outbox(tmp_path, ["webhook"])
    assert again.accept(event(1)) is None  # a restarted identify stage offers it once more
    assert again.accept(event(1, run="r2")) is not None  # another run's track 1 is another track
    assert again.count("webhook") == 2


def test_accepted_events_survive_a_killed_process(tmp_path):
    code = ("import os, sys; from tests.app.events.test_outbox import event; from app.events.outbox import Outbox;"
            f"b = Outbox({str(tmp_path)!r}, ['webhook']); [b.accept(event(t)) for t in range(3)]; os._exit(9)")
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 9  # died without closing anything
    box = Outbox(tmp_path, ["webhook"])
    assert [Event.from_json(b).track for _, b in box.pending("webhook")] == [0, 1, 2]


def test_when_full_the_oldest_undelivered_events_are_dropped_with_a_warning(tmp_path, caplog):
    size = len(event(0).to_json())
    box = Outbox(tmp_path, ["webhook"], max_bytes=3 * size + size // 2)
    with caplog.at_level(logging.WARNING, logger="facestream.events"):
        for t in range(5):
            box.accept(event(t))
    assert [Event.from_json(b).track for _, b in box.pending("webhook")] == [2, 3, 4]
    assert box.dropped == 2
    assert "dropped the 1 oldest undelivered event(s) (2 so far); webhook not taking events" in caplog.text
    assert "EVENTS_MAX_MB" in caplog.text


def test_events_for_a_sink_no_longer_configured_are_kept_and_reported(tmp_path, caplog):
    Outbox(tmp_path, ["webhook"]).accept(event(1))
    with caplog.at_level(logging.WARNING, logger="facestream.events"):
        box = Outbox(tmp_path, ["mqtt"])
    assert "1 event(s)" in caplog.text and "wait for webhook, which is not configured now" in caplog.text
    assert box.count("webhook") == 1 and box.count("mqtt") == 0


def test_announced_gives_the_summary_without_images_to_another_reader(tmp_path):
    lookup = announced_lookup(tmp_path)
    assert lookup(event(1).key) is None  # no queue yet: nothing announced
    box = Outbox(tmp_path, [])  # no sink: remembered for deduplication only
    box.accept(event(1))
    summary = lookup(event(1).key)
    assert summary["name"] == "Obama" and summary["first_seen"] == 1.0 and "snapshot" not in summary
    assert lookup(event(2).key) is None and box.count() == 0


def test_an_unusable_folder_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FacestreamError) as info:
        Outbox(blocker / "events", ["webhook"])
    assert "set EVENTS_DIR to a writable folder" in str(info.value) and "\n" not in str(info.value)


def test_a_reader_that_opens_the_queue_before_its_tables_exist_counts_nothing_owed(tmp_path):
    """The publisher's first connect creates the file a moment before its tables: a reader in between (a deriver,
    a status check) sees an empty queue, not an error."""
    import sqlite3

    sqlite3.connect(tmp_path / "outbox.sqlite3").close()  # the file, no tables yet
    box = Outbox(tmp_path, readonly=True)
    try:
        assert box.count("webhook") == 0 and box.count() == 0
    finally:
        box.close()
