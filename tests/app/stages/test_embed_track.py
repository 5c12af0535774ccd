"""Embed + track: EMBED_INTERVAL embeds a steady face every k-th frame, batches over streams change nothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.settings import Settings
from app.stages.align import Align
from app.stages.detect import Detect
from app.stages.embed_track import EmbedTrack
from app.types import Faces


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


class _Queue:
    def __init__(self) -> None:
        self.waiting = 0

    def qsize(self) -> int:
        return self.waiting


class _Ctx:
    def __init__(self) -> None:
        self.inputs = {"crops": _Queue()}


def test_a_batch_is_held_back_only_while_the_next_is_queued_and_nothing_is_lost(checkpoint_dir, obama,
                                                                               monkeypatch):
    """On a GPU embed+track overlaps a batch's embedding with taking the next one: it hands on the batch
    before, finishes at once when nothing else is queued, and its end-of-stream ``finish`` hands on what it
    holds. The records that come out are the same, in the same order, as one batch at a time. On a CPU
    (nothing runs in the background) it never holds a batch."""
    from app.runtime.shm import Record
    from app.runtime.stages import EmbedTrackStage

    faces, crops = obama
    settings = Settings(checkpoint_dir=str(checkpoint_dir), embed_interval=1)
    stage = EmbedTrackStage(settings, {0: 30.0})
    stage.embed = EmbedTrack(settings)
    reference = EmbedTrack(settings)
    ctx = _Ctx()

    def recs(first: int, n: int) -> list[Record]:
        return [Record(seq=i, ts=0.0, stream=0, index=i, arrays={**faces.arrays(), "crops": crops})
                for i in range(first, first + n)]

    ctx.inputs["crops"].waiting = 3
    assert not stage.embed.overlaps and [r.seq for r in stage.process_batch(recs(0, 2), ctx)] == [0, 1]
    stage.embed, reference = EmbedTrack(settings), EmbedTrack(settings)
    monkeypatch.setattr(EmbedTrack, "overlaps", property(lambda self: True))  # as the GPU adapter

    ctx.inputs["crops"].waiting = 3  # more queued: this batch is held
    assert stage.process_batch(recs(0, 2), ctx) == []
    out = stage.process_batch(recs(2, 2), ctx)  # still more queued: the first batch comes out
    assert [r.seq for r in out] == [0, 1]
    ctx.inputs["crops"].waiting = 0  # nothing queued: the held batch and this one both come out
    out += stage.process_batch(recs(4, 1), ctx)
    assert [r.seq for r in out] == [0, 1, 2, 3, 4] and stage.finish(ctx) == []
    ctx.inputs["crops"].waiting = 1
    assert stage.process_batch(recs(5, 1), ctx) == []
    out += stage.finish(ctx)  # end of stream
    assert [r.seq for r in out] == [0, 1, 2, 3, 4, 5]
    want = reference.batch([(faces, crops, 0, i) for i in range(2)])
    want += reference.batch([(faces, crops, 0, i) for i in range(2, 4)])
    want += reference.batch([(faces, crops, 0, 4)]) + reference.batch([(faces, crops, 0, 5)])
    for rec, w in zip(out, want):
        assert np.array_equal(rec.arrays["track_ids"], w.track_ids)
        np.testing.assert_allclose(rec.arrays["embeddings"], w.embeddings, atol=1e-5)
