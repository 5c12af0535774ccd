"""Embed + track: EMBED_INTERVAL embeds a steady face every k-th frame, batches over streams change nothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.settings import Settings
from app.stages.align import Align
from app.stages.detect import Detect
from app.stages.embed_track import EmbedTrack
from app.types import Faces, FrameRef


@pytest.fixture(scope="module")
def obama(checkpoint_dir, media_dir):
    """(Faces, crops) of the one face in a shared photo."""
    settings = Settings(checkpoint_dir=str(checkpoint_dir))
    image = cv2.imread(str(media_dir / "people/obama/obama.jpg"))
    dets = Detect(settings)([image])[0]
    assert len(dets) == 1
    return Faces(dets.boxes, dets.scores, dets.landmarks), Align()(image, dets)


def counting(stage: EmbedTrack) -> list[int]:
    """Wrap the stage's embedder so each call's batch size is recorded."""
    calls: list[int] = []
    embed = stage.embedder.embed

    def wrapped(crops):
        calls.append(len(crops))
        return embed(crops)

    stage.embedder.embed = wrapped
    return calls


def test_interval_three_embeds_a_steady_face_on_every_third_frame(checkpoint_dir, obama):
    faces, crops = obama
    stage = EmbedTrack(Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=3))
    calls = counting(stage)
    ids, queried = [], []
    for i in range(10):
        out = stage(faces, crops, frame_index=i)
        ids.append(int(out.track_ids[0]))
        queried.append(len(out.query))
    assert sum(calls) == 4  # frames 0, 3, 6, 9
    assert len(set(ids)) == 1 and ids[0] >= 0  # tracked, and drawn with its id on every frame
    assert queried[0] == 1  # a new track is embedded and sent to the gallery at once


def test_interval_one_embeds_every_frame(checkpoint_dir, obama):
    faces, crops = obama
    stage = EmbedTrack(Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=1))
    calls = counting(stage)
    for i in range(5):
        stage(faces, crops, frame_index=i)
    assert sum(calls) == 5


def test_auto_interval_embeds_every_third_frame_on_a_cpu(checkpoint_dir):
    stage = EmbedTrack(Settings(checkpoint_dir=str(checkpoint_dir)))  # EMBED_INTERVAL=0: auto
    assert not stage.backend.on_gpu and stage.interval == 3


def test_a_batch_of_two_streams_equals_two_separate_calls(checkpoint_dir, obama):
    faces, crops = obama
    settings = Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=1)
    together, apart = EmbedTrack(settings), EmbedTrack(settings)
    calls = counting(together)
    for i in range(3):
        a, b = together.batch([(faces, crops, 0, i), (faces, crops, 1, i)])
        c, d = apart(faces, crops, stream=0, frame_index=i), apart(faces, crops, stream=1, frame_index=i)
        assert np.array_equal(a.track_ids, c.track_ids) and np.array_equal(b.track_ids, d.track_ids)
        assert a.track_ids[0] != b.track_ids[0]  # each stream has its own tracker and ids
        np.testing.assert_allclose(a.embeddings, c.embeddings, atol=1e-5)
        np.testing.assert_allclose(b.embeddings, d.embeddings, atol=1e-5)
    assert calls == [2, 2, 2]  # one embedder call per batch, both streams' faces in it


class _Ctx:
    """As much of a stage's context as embed+track uses: how many records wait at its input."""

    def __init__(self) -> None:
        self.waiting = 0

    def pending(self) -> int:
        return self.waiting


def test_a_batch_is_held_back_only_while_the_next_is_queued_and_nothing_is_lost(checkpoint_dir, obama,
                                                                               monkeypatch):
    """On a GPU embed+track overlaps a batch's embedding with taking the next one: it hands on the batch
    before, finishes at once when nothing else is queued, and its end-of-stream ``finish`` hands on what it
    holds. The records that come out are the same, in the same order, as one batch at a time. On a CPU
    (nothing runs in the background) it never holds a batch."""
    from app.stages.embed_track import EmbedTrackStage

    faces, crops = obama
    settings = Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=1)
    stage = EmbedTrackStage(settings, {0: 30.0})
    stage.embed = EmbedTrack(settings)
    reference = EmbedTrack(settings)
    ctx = stage.ctx = _Ctx()

    def recs(first: int, n: int) -> tuple[list, list[Faces]]:
        return [None] * n, [Faces(faces.boxes, faces.scores, faces.landmarks, crops=crops, frame=FrameRef(i, 0.0, 0, i))
                            for i in range(first, first + n)]

    ctx.waiting = 3
    assert not stage.embed.overlaps and [r.frame.seq for r in stage.process_batch(*recs(0, 2))] == [0, 1]
    stage.embed, reference = EmbedTrack(settings), EmbedTrack(settings)
    monkeypatch.setattr(EmbedTrack, "overlaps", property(lambda self: True))  # as the GPU adapter

    ctx.waiting = 3  # more queued: this batch is held
    assert stage.process_batch(*recs(0, 2)) == []
    out = stage.process_batch(*recs(2, 2))  # still more queued: the first batch comes out
    assert [r.frame.seq for r in out] == [0, 1]
    ctx.waiting = 0  # nothing queued: the held batch and this one both come out
    out += stage.process_batch(*recs(4, 1))
    assert [r.frame.seq for r in out] == [0, 1, 2, 3, 4] and stage.finish() == []
    ctx.waiting = 1
    assert stage.process_batch(*recs(5, 1)) == []
    out += stage.finish()  # end of stream
    assert [r.frame.seq for r in out] == [0, 1, 2, 3, 4, 5]
    want = reference.batch([(faces, crops, 0, i) for i in range(2)])
    want += reference.batch([(faces, crops, 0, i) for i in range(2, 4)])
    want += reference.batch([(faces, crops, 0, 4)]) + reference.batch([(faces, crops, 0, 5)])
    for rec, w in zip(out, want):
        assert np.array_equal(rec.track_ids, w.track_ids)
        np.testing.assert_allclose(rec.embeddings, w.embeddings, atol=1e-5)


# -- a name only on the face it was confirmed for ---------------------------------------------------------

@pytest.fixture(scope="module")
def biden_crops(checkpoint_dir, media_dir):
    """The aligned crop of another person's face (drawn in Obama's box below: a cut with the face in place)."""
    settings = Settings(checkpoint_dir=str(checkpoint_dir))
    image = cv2.imread(str(media_dir / "people/biden/biden.jpg"))
    dets = Detect(settings)([image])[0]
    assert len(dets) == 1
    return Align()(image, dets)


@pytest.fixture
def gallery_of_obama(tmp_path, checkpoint_dir, obama):
    from app.gallery import open_gallery

    gallery = open_gallery(None, tmp_path, "faces")
    embedder = EmbedTrack(Settings(checkpoint_dir=str(checkpoint_dir))).embedder
    gallery.add("obama", embedder.embed(obama[1]))
    yield gallery
    gallery.close()


def with_scene(faces: Faces, scene: int) -> Faces:
    return Faces(faces.boxes, faces.scores, faces.landmarks, frame=FrameRef(scene=scene))


def test_a_cut_with_the_new_face_in_the_old_box_ends_the_name_even_when_the_track_is_not_due(
        checkpoint_dir, obama, biden_crops, gallery_of_obama):
    """EMBED_INTERVAL=3: frames 0 and 3 embed Obama's track; frame 4 (not due) is a cut to another person in the
    very same box. That face gets a new track id, is embedded at once, the old id is reported removed, and it
    is never shown as Obama; it logs Obama as its nearest person, with their (low) similarity."""
    from app.stages.identify import Identify

    faces, crops = obama
    settings = Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=3)
    stage, identify = EmbedTrack(settings), Identify(settings, gallery=gallery_of_obama)
    calls = counting(stage)
    for i in range(4):
        out = identify(stage(with_scene(faces, 0), crops, frame_index=i))
        assert out.names == ["obama"]
    old = int(out.track_ids[0])
    cosine = float(stage.embedder.embed(biden_crops)[0] @ stage.embedder.embed(crops)[0])
    embedded = sum(calls)
    for i in range(4, 7):
        out = stage(with_scene(faces, 1), biden_crops, frame_index=i)
        if i == 4:
            assert sum(calls) == embedded + 1  # out of turn
            assert int(out.track_ids[0]) != old and out.removed == [old]
        out = identify(out, removed=out.removed)
        assert out.names == ["unknown"] and out.nearest == ["obama"]
        assert out.similarities[0] == pytest.approx(cosine, abs=0.02)  # the nearest's similarity, not 0.0


def test_without_a_scene_signal_the_cut_face_is_still_never_named_on_a_frame_it_was_embedded(
        checkpoint_dir, obama, biden_crops, gallery_of_obama):
    """EMBED_INTERVAL=1, no scene counter (scene −1): the embedding on the cut frame itself breaks the track."""
    from app.stages.identify import Identify

    faces, crops = obama
    settings = Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=1)
    stage, identify = EmbedTrack(settings), Identify(settings, gallery=gallery_of_obama)
    assert identify(stage(faces, crops, frame_index=0)).names == ["obama"]
    out = stage(faces, biden_crops, frame_index=1)
    assert identify(out, removed=out.removed).names == ["unknown"]


def test_a_box_that_jumps_is_embedded_out_of_turn_and_keeps_its_id_when_the_face_is_the_same(checkpoint_dir, obama):
    faces, crops = obama
    stage = EmbedTrack(Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=3))
    calls = counting(stage)
    for i in range(4):
        out = stage(faces, crops, frame_index=i)
    tid, embedded = int(out.track_ids[0]), sum(calls)
    w = float(faces.boxes[0, 2] - faces.boxes[0, 0])
    moved = Faces(faces.boxes + np.array([0.4 * w, 0, 0.4 * w, 0], np.float32), faces.scores, faces.landmarks)
    out = stage(moved, crops, frame_index=4)  # not due (embedded on 3), but its box did not follow the track
    assert sum(calls) == embedded + 1
    assert int(out.track_ids[0]) == tid  # the same face: IDENTITY_BREAK keeps the track
    out = stage(moved, crops, frame_index=5)  # steady again: back to every third frame
    assert sum(calls) == embedded + 1


def test_the_scene_counter_travels_in_the_frame_header_through_the_queues_to_embed_track(checkpoint_dir, obama,
                                                                                        biden_crops):
    """Capture's header carries the counter; detect builds its faces anew on that header (on a GPU with the
    crops); through the queues' byte form embed+track still sees the cut: a new id at once, the old one in the
    record's ``removed`` field."""
    from app.runtime.queue import RecordQueue
    from app.stages.embed_track import EmbedTrackStage

    faces, crops = obama
    settings = Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=3)
    stage = EmbedTrackStage(settings, {0: 30.0})
    stage.embed = EmbedTrack(settings)
    stage.ctx = _Ctx()
    ids, removed = [], []
    with RecordQueue.create(capacity=2, slot_bytes=1 << 20) as q:
        for i in range(6):
            scene, face = (0, crops) if i < 4 else (1, biden_crops)
            captured = Faces(frame=FrameRef(i, 0.0, 0, i, scene))
            q.put(Faces(faces.boxes, faces.scores, faces.landmarks, crops=face, frame=captured.frame))
            (out,) = stage.process_batch([None], [q.get(timeout=1)])
            q.put(out)
            out = q.get(timeout=1)
            assert out.frame == captured.frame
            ids.append(int(out.track_ids[0]))
            removed.append(out.removed)
    assert ids[:4] == [ids[0]] * 4 and ids[4] == ids[5] != ids[0]
    assert removed[4] == [ids[0]] and removed[5] == []


def test_a_cut_in_the_batch_submitted_while_the_one_before_still_embeds_gives_the_same_result(
        checkpoint_dir, obama, biden_crops):
    """The GPU overlap: batch B (a cut) is tracked before batch A is finished. The ids, removals and identities
    come out as when each batch is finished before the next is tracked, and no ended track's identity stays."""
    faces, crops = obama
    settings = Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=3)
    a = [(with_scene(faces, 0), crops, 0, i) for i in range(3)]
    b = [(with_scene(faces, 1), biden_crops, 0, i) for i in range(3, 5)]
    overlapped, sequential = EmbedTrack(settings), EmbedTrack(settings)
    pending_a = overlapped.submit(a)
    pending_b = overlapped.submit(b)  # tracked (the cut restarts the tracker) before A is collected
    got = overlapped.collect(pending_a) + overlapped.collect(pending_b)
    want = sequential.batch(a) + sequential.batch(b)
    for g, w in zip(got, want):
        assert np.array_equal(g.track_ids, w.track_ids) and g.removed == w.removed
    assert got[3].removed == [int(got[0].track_ids[0])]
    assert sorted(overlapped.identities[0].tracks) == [int(got[4].track_ids[0])]
    assert overlapped.aliases[0] == sequential.aliases[0] and len(overlapped.aliases[0]) == 1
