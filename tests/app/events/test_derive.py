"""Deriving events from the identify stage's decisions: once per track, names only from decisions, strangers
only after N confirmations, open tracks closed at the end, and no second announcement after a restart."""

import cv2
import numpy as np
import pytest

from app.events.derive import Deriver, FaceDecision, FrameDecisions
from app.events.outbox import Outbox
from app.events.schema import APPEARED, LEFT, UNKNOWN_APPEARED

pytestmark = pytest.mark.timeout(60)

FPS = 25.0
T0 = 1_700_000_000.0


def frame(i, faces, ended=(), stream=0):
    return FrameDecisions(stream=stream, frame=i, captured_at=T0 + i / FPS, faces=faces, ended=list(ended))


def named(track, sim=0.6, x=100.0, votes=1):
    return FaceDecision(track=track, box=[x, 50.0, x + 80.0, 150.0], name="Obama", person_id="p-obama",
                        similarity=sim, votes=votes)


def unknown(track, votes, x=300.0, nearest=("p-lin", "Lin-Manuel"), sim=0.21):
    return FaceDecision(track=track, box=[x, 60.0, x + 60.0, 140.0], name="unknown", similarity=sim,
                        nearest=nearest, votes=votes)


def scene():
    """Track 1: undecided for 2 frames, then named (similarity rising), ends at frame 12. Track 2: a stranger whose
    unknown answers grow one per frame, open at the end. Track 3: two unknown answers, then named. Track 4: one
    unknown answer, then gone (a flicker)."""
    frames = []
    for i in range(14):
        faces = []
        if i < 12:
            faces.append(unknown(1, votes=0, x=100.0, nearest=None, sim=None) if i < 2 else named(1, 0.5 + i / 100))
        faces.append(unknown(2, votes=i + 1))
        if i >= 3:
            faces.append(unknown(3, votes=i - 2, x=500.0) if i < 5 else named(3, 0.55, x=500.0))
        if i == 4:
            faces.append(unknown(4, votes=1, x=700.0))
        ended = [1] if i == 12 else [4] if i == 5 else []
        frames.append(frame(i, faces, ended))
    return frames


def run(deriver, frames, image=None):
    events = []
    for f in frames:
        events += deriver.update(f, image)
    return events


def test_one_appeared_and_one_left_per_named_track():
    d = Deriver("run1", unknown_after=3)
    events = run(d, scene()) + d.finish()
    by_track = {}
    for e in events:
        by_track.setdefault(e.track, []).append(e.type)
    assert by_track[1] == [APPEARED, LEFT]
    assert by_track[3] == [APPEARED, LEFT]  # two unknown answers were not enough to call it a stranger
    assert 4 not in by_track  # a flicker is never announced
    appeared = next(e for e in events if e.track == 1 and e.type == APPEARED)
    assert appeared.frame == 2 and appeared.name == "Obama" and appeared.person_id == "p-obama"
    assert appeared.first_seen == pytest.approx(T0) and appeared.captured_at == pytest.approx(T0 + 2 / FPS)
    left = next(e for e in events if e.track == 1 and e.type == LEFT)
    assert left.last_seen == pytest.approx(T0 + 11 / FPS) and left.duration == pytest.approx(11 / FPS)
    assert left.best_similarity == pytest.approx(0.61) and left.name == "Obama"
    assert len({e.id for e in events}) == len(events)


def test_unknown_appeared_after_n_confirmations_then_finish_closes_it():
    d = Deriver("run1", unknown_after=3)
    events = run(d, scene())
    stranger = [e for e in events if e.track == 2]
    assert [e.type for e in stranger] == [UNKNOWN_APPEARED]
    assert stranger[0].frame == 2  # the third unknown answer
    assert not stranger[0].known and stranger[0].name is None
    assert stranger[0].nearest == {"person_id": "p-lin", "name": "Lin-Manuel"}
    closing = d.finish()
    assert [(e.track, e.type) for e in closing] == [(2, LEFT), (3, LEFT)]  # open at the end; track 1 ended before
    assert closing[0].last_seen == pytest.approx(T0 + 13 / FPS) and not closing[0].known
    assert d.finish() == []


@pytest.mark.parametrize("n", [1, 5])
def test_unknown_after_is_the_number_of_confirmations(n):
    d = Deriver("run1", unknown_after=n)
    stranger = [e for e in run(d, scene()) if e.type == UNKNOWN_APPEARED]
    assert [(e.track, e.frame) for e in stranger if e.track == 2] == [(2, n - 1)]


def test_snapshots_are_crops_of_the_frame():
    yy, xx = np.mgrid[0:360, 0:800]
    image = np.dstack([xx // 4, yy // 2, (xx + yy) // 5]).astype(np.uint8)  # smooth: JPEG keeps it, each spot differs
    d = Deriver("run1", full_frame=True)
    events = run(d, scene()[:4], image)
    appeared = next(e for e in events if e.type == APPEARED)
    crop = cv2.imdecode(np.frombuffer(appeared.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (140, 112, 3)  # the 80x100 box with a 20 % margin on each side
    full = cv2.imdecode(np.frombuffer(appeared.frame_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert full.shape == image.shape
    assert np.abs(crop.astype(int) - image[30:170, 84:196].astype(int)).mean() < 3  # the same pixels, JPEG'd
    assert np.abs(crop.astype(int) - image[30:170, 184:296].astype(int)).mean() > 10  # (and not any pixels)
    no_frame = Deriver("run1")
    assert all(e.frame_jpeg is None for e in run(no_frame, scene()[:4], image))


def test_the_left_snapshot_is_the_best_named_frame():
    yy, xx = np.mgrid[0:360, 0:800]
    image = np.dstack([xx // 4, yy // 2, (xx + yy) // 5]).astype(np.uint8)
    d = Deriver("run1")
    d.update(frame(0, [unknown(5, votes=1, x=300.0)]), image)  # a bigger face, before it is named
    d.update(frame(1, [named(5, sim=0.5, x=100.0)]), image)
    d.update(frame(2, [named(5, sim=0.7, x=600.0)]), image)  # the best match: its snapshot
    d.update(frame(3, [named(5, sim=0.6, x=200.0)]), image)
    (left,) = d.update(frame(4, [], ended=[5]), image)
    crop = cv2.imdecode(np.frombuffer(left.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(crop.astype(int) - image[30:170, 584:696].astype(int)).mean() < 3
    assert left.best_similarity == pytest.approx(0.7) and left.similarity == pytest.approx(0.6)


def test_streams_keep_their_tracks_apart():
    d = Deriver("run1")
    events = d.update(frame(0, [named(1)], stream=0)) + d.update(frame(0, [named(1)], stream=1))
    assert [(e.stream, e.type) for e in events] == [("0", APPEARED), ("1", APPEARED)]


def test_a_restarted_deriver_does_not_announce_a_track_again(tmp_path):
    outbox = Outbox(tmp_path, sinks=["test"])
    first = Deriver("run1", announced=outbox.announced)
    frames = scene()
    for e in run(first, frames[:6]):  # the identify stage dies after frame 5
        outbox.accept(e)
    second = Deriver("run1", announced=outbox.announced)  # its replacement meets the same tracks
    events = run(second, frames[6:]) + second.finish()
    assert not [e for e in events if e.type in (APPEARED, UNKNOWN_APPEARED)]
    left = {e.track: e for e in events}
    assert set(left) == {1, 2, 3}  # each announced track still gets its person.left
    assert left[1].first_seen == pytest.approx(T0) and left[1].name == "Obama"  # as announced, before the restart
    assert all(outbox.accept(e) for e in events)  # and none of them is a duplicate
    other_run = Deriver("run2", announced=outbox.announced)  # a new run numbers its tracks afresh
    assert [(e.track, e.type) for e in other_run.update(frames[3])] == [(1, APPEARED), (2, UNKNOWN_APPEARED)]
