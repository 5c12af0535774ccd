"""Identify against the real embedded gallery: votes name tracks; strangers are never enrolled."""

from types import SimpleNamespace

import numpy as np

from app.gallery import open_gallery
from app.settings import Settings
from app.stages.identify import Identify
from app.types import Faces, FrameRef


def unit(seed):
    v = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    return v / np.linalg.norm(v)


def frame_with(track_ids, embeddings):
    n = len(track_ids)
    return Faces(np.tile([[0, 0, 50, 50]], (n, 1)).astype(np.float32), np.full(n, 0.9, np.float32),
                 np.zeros((n, 5, 2), np.float32), track_ids=np.array(track_ids), embeddings=np.stack(embeddings),
                 query=np.arange(n))


def test_known_face_is_named_and_a_stranger_stays_unknown_and_unwritten(tmp_path):
    gallery = open_gallery(None, tmp_path, "faces")
    ada = unit(1)
    gallery.add("Ada", ada[None])
    identify = Identify(Settings.load(None, environ={}), gallery=gallery)
    for i in range(5):
        out = identify(frame_with([1, 2], [ada + 0.01 * unit(10 + i), unit(2)]))
        assert out.names == ["Ada", "unknown"] and out.similarities[0] > 0.9
    assert [p.name for p in gallery.people()] == ["Ada"]  # the stranger is not enrolled under a made-up name
    identify.close()


def test_an_unknown_face_carries_its_nearest_person_and_their_similarity(tmp_path):
    """What a threshold tuner reads: below MATCH_THRESHOLD the name is unknown, but the similarity is the best
    one found (not 0.0) and the nearest person is named; with an empty gallery there is neither."""
    gallery = open_gallery(None, tmp_path, "faces")
    identify = Identify(Settings.load(None, environ={"MATCH_THRESHOLD": "0.35"}), gallery=gallery)
    ada, other = unit(1), unit(2)
    out = identify(frame_with([5], [other]))
    assert out.names == ["unknown"] and out.nearest == [""] and out.similarities[0] == 0.0
    gallery.add("Ada", ada[None])
    near = other - (other @ ada) * ada  # orthogonal to Ada, then tilted towards her: cosine 0.2
    near = 0.2 * ada + np.sqrt(1 - 0.2**2) * near / np.linalg.norm(near)
    out = identify(frame_with([6, 7], [near, ada]))
    assert out.names == ["unknown", "Ada"] and out.nearest == ["Ada", ""]
    assert abs(out.similarities[0] - 0.2) < 1e-3 and out.similarities[1] > 0.99
    identify.close()


def test_a_removed_track_loses_its_name():
    """embed+track reports the ids a cut ended: a face shown under such an id again (no new answer) is unknown."""

    class Gallery:
        def search(self, embeddings, threshold):
            from app.gallery.records import Match

            return [Match("ada", "Ada", 0.9)] * len(embeddings)

        def close(self):
            pass

    identify = Identify(Settings.load(None, environ={}), gallery=Gallery())
    assert identify(frame_with([3], [unit(1)])).names == ["Ada"]
    steady = frame_with([3], [unit(1)])
    steady.query = np.zeros(0, np.int64)  # not due: the name comes from the vote
    assert identify(steady).names == ["Ada"]
    assert identify(steady, removed=[3]).names == ["unknown"]


def test_the_identify_stage_hands_on_names_without_the_embeddings(tmp_path):
    """After a scene cut every face is queried at once: the record to the display must stay the size of names and
    boxes (64 faces' embeddings would overflow its queue slot)."""
    from app.events.tap import EventsLink, EventTap
    from app.gallery.sightings_feed import SightingRecorder
    from app.stages.identify import IdentifyStage
    from tests.app.runtime.helpers import encoded_size

    stage = IdentifyStage(Settings.load(None, environ={"SIGHTINGS": "off", "QDRANT_PATH": str(tmp_path)}))
    gallery = open_gallery(None, tmp_path, "faces")
    gallery.add("Ada", unit(1)[None])
    stage.identify = Identify(stage.settings, gallery=gallery)
    stage.tap = EventTap(stage.settings, EventsLink(run="-"))  # no events sink: counts only
    stage.sightings = SightingRecorder(stage.settings)
    stage.ctx = SimpleNamespace(health=lambda *a: None, frame_valid=lambda: True)
    faces = frame_with(list(range(64)), [unit(1)] * 64)
    faces.frame = FrameRef(5, 0.0, 0, 5, scene=3)
    out = stage.process(None, faces)
    assert out.embeddings is None and out.query is None
    assert out.names == ["Ada"] * 64 and out.frame.scene == 3
    assert encoded_size(out) <= 65536 + 64 * 160  # the "named" queue's slot for MAX_FACES=64
    stage.teardown()
