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
