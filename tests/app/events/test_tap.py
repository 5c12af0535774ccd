"""The identify stage's events tap: labelled faces become decisions (votes counted from the gallery answers),
events go on the queue, the face counters and time-to-name marks are kept, snapshots are never torn."""

from __future__ import annotations

import queue

import numpy as np
import pytest

from app.events.schema import APPEARED, LEFT, UNKNOWN_APPEARED, Event
from app.events.spool import SpoolReader, read_marks
from app.events.tap import NAMED_MARK, UNNAMED_MARK, EventsLink, EventTap
from app.observe import counters
from app.runtime.metrics import Metrics
from app.settings import Settings
from app.types import UNKNOWN, Faces

pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.0


def faces(rows: list[tuple[int, str, bool]]) -> Faces:
    """One face per (track, name or UNKNOWN, queried this frame)."""
    n = len(rows)
    boxes = np.array([[40.0 + 100 * i, 40.0, 120.0 + 100 * i, 140.0] for i in range(n)], np.float32).reshape(n, 4)
    f = Faces(boxes, np.full(n, 0.9, np.float32), np.zeros((n, 5, 2), np.float32),
              track_ids=np.array([t for t, _, _ in rows], np.int64),
              query=np.array([i for i, (_, _, q) in enumerate(rows) if q], np.int64))
    f.names = [name for _, name, _ in rows]
    f.person_ids = ["" if name == UNKNOWN else f"p-{name}" for _, name, _ in rows]
    f.nearest = ["obama" if name == UNKNOWN else "" for _, name, _ in rows]
    f.similarities = np.array([0.6 if name != UNKNOWN else 0.2 for _, name, _ in rows], np.float32)
    return f


@pytest.fixture
def row():
    block = Metrics.create(["identify"])
    yield block
    block.close()


def drain(link: EventsLink, what: str) -> list:
    """What the tap wrote: the events in the spool (None: the end mark) or the time-to-name marks."""
    if what == "marks":
        return read_marks(link.marks)
    reader, out = SpoolReader(link.events, link.run), []
    while True:
        try:
            out.append(reader.get(timeout=0.1))
        except queue.Empty:
            return out
        if out[-1] is None:
            return out


def test_decisions_become_events_counts_and_marks(tmp_path, row):
    link = EventsLink(run="r1", events=str(tmp_path / "spool"), marks=str(tmp_path / "marks"))
    tap = EventTap(Settings(events_dir=str(tmp_path)), link, row.writer("identify"))
    image = np.full((240, 640, 3), 128, np.uint8)
    # track 1: two unknown frames, then named at frame 2; track 2: unknown, queried every frame
    tap.frame(0, 0, T0, faces([(1, UNKNOWN, True), (2, UNKNOWN, True)]), image=image)
    tap.frame(0, 1, T0 + 0.1, faces([(1, UNKNOWN, False), (2, UNKNOWN, True)]), image=image)
    tap.frame(0, 2, T0 + 0.2, faces([(1, "obama", True), (2, UNKNOWN, True)]), image=image)
    tap.frame(0, 3, T0 + 0.3, faces([(2, UNKNOWN, False)]), removed=[1], image=image)
    tap.finish()
    items = drain(link, "events")
    assert items[-1] is None  # the publisher's end mark comes last
    events = [Event.from_dict(d) for d in items[:-1]]
    assert [(e.type, e.track) for e in events] == [(APPEARED, 1), (UNKNOWN_APPEARED, 2), (LEFT, 1), (LEFT, 2)]
    appeared = events[0]
    assert appeared.name == "obama" and appeared.first_seen == T0 and appeared.captured_at == T0 + 0.2
    assert appeared.crop_jpeg.startswith(b"\xff\xd8")
    assert events[1].nearest == {"person_id": None, "name": "obama"}  # 3 answers said unknown: announced
    marks = drain(link, "marks")
    assert (NAMED_MARK, "r1", "0", 1, T0, T0 + 0.2) in marks
    assert (UNNAMED_MARK, "r1", "0", 2, T0, None) in marks
    counted = row.row("identify")["counters"]
    assert counted[counters.FACES] == 7 and counted[counters.NAMED] == 1 and counted[counters.UNKNOWN] == 6


def test_without_a_sink_nothing_is_derived_but_time_to_name_is_marked(tmp_path):
    link = EventsLink(run="r2", events=None, marks=str(tmp_path / "marks"))
    tap = EventTap(Settings(events_dir=str(tmp_path)), link)
    assert not tap.wants_frame
    tap.frame(0, 0, T0, faces([(5, "lin", True)]))
    tap.finish()
    assert drain(link, "marks") == [(NAMED_MARK, "r2", "0", 5, T0, T0)]
    assert not (tmp_path / "outbox.sqlite3").exists() and not (tmp_path / "spool").exists()


def test_a_frame_overwritten_while_copied_gives_no_snapshot(tmp_path):
    """The snapshot is cut from a copy of the ring's frame, kept only if the runtime's torn-frame check still
    passes after the copy: the event is sent all the same, without a picture."""
    link = EventsLink(run="r4", events=str(tmp_path / "spool"), marks=None)
    tap = EventTap(Settings(events_dir=str(tmp_path)), link)
    view = np.full((240, 640, 3), 90, np.uint8)
    f = faces([(3, "obama", True)])
    tap.labelled(f, view, lambda ref: False)  # overwritten while it was copied
    tap.finish()
    appeared = Event.from_dict(drain(link, "events")[0])
    assert appeared.type == APPEARED and appeared.crop_jpeg is None


def test_time_to_name_counts_from_the_first_frame_the_face_was_detected_in(tmp_path):
    """The tracker shows a track from its second hit (or later, for a weak face): the frames before, where the
    same face was detected but not tracked, count; an untracked face elsewhere in the frame does not."""
    link = EventsLink(run="r3", events=None, marks=str(tmp_path / "marks"))
    tap = EventTap(Settings(events_dir=str(tmp_path)), link)
    elsewhere = [500.0, 10.0, 560.0, 70.0]
    for i, x in enumerate((36.0, 38.0)):  # drifting a little, untracked
        f = faces([(-1, UNKNOWN, False), (-1, UNKNOWN, False)])
        f.boxes = np.array([[x, 40.0, x + 80.0, 140.0], elsewhere], np.float32)
        tap.frame(0, i, T0 + i * 0.1, f)
    tap.frame(0, 2, T0 + 0.2, faces([(9, UNKNOWN, True)]))
    tap.frame(0, 3, T0 + 0.3, faces([(9, "lin", True)]))
    tap.frame(0, 4, T0 + 0.4, faces([(4, "lin", True)]))  # the frame before had no untracked face: starts here
    assert drain(link, "marks") == [(NAMED_MARK, "r3", "0", 9, T0, T0 + 0.3), (NAMED_MARK, "r3", "0", 4, T0 + 0.4,
                                                                             T0 + 0.4)]


def test_spool_hands_over_whole_events_in_order_and_only_this_runs_end(tmp_path):
    """Written under a temporary name and renamed: a reader never sees half an event (a killed writer leaves
    only a hidden temporary file); another run's end mark is left alone."""
    from app.events.spool import SpoolWriter

    writer = SpoolWriter(tmp_path)
    (tmp_path / ".123-4-1.tmp").write_bytes(b'{"half')  # what a writer killed mid-write leaves
    writer.put(None, "other-run")
    for k in range(3):
        writer.put({"k": k})
    writer.put(None, "r9")
    reader = SpoolReader(tmp_path, "r9")
    got = [reader.get(timeout=1) for _ in range(4)]
    reader.close()
    assert got == [{"k": 0}, {"k": 1}, {"k": 2}, None]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and left[0].startswith(".") and left[1].endswith(".end")  # the other run's end stays
