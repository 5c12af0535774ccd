"""A running identify reacts to the face library at once: an enrolment names an unknown live track on its
next frame (no new query from embed+track needed), a rename shows on the next frame, a merge moves the name, a
removal or a correction un-names, and a track's embeddings stay enrollable for a while after it ends."""

from __future__ import annotations

import numpy as np
import pytest

from app.gallery import open_gallery
from app.library.errors import DuplicateName, UnknownTrack
from app.library.owner import GalleryOwner
from app.settings import Settings
from app.stages.identify import Identify, TrackMemory
from app.types import Faces


def unit(seed):
    v = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    return v / np.linalg.norm(v)


def frame(track_ids, embeddings=None, query=True, removed=None):
    n = len(track_ids)
    return Faces(np.tile([[0, 0, 50, 50]], (n, 1)).astype(np.float32), np.full(n, 0.9, np.float32),
                 np.zeros((n, 5, 2), np.float32), track_ids=np.array(track_ids),
                 embeddings=np.stack(embeddings) if query else np.zeros((0, 512), np.float32),
                 query=np.arange(n) if query else np.zeros(0, np.int64))


@pytest.fixture
def live(tmp_path):
    settings = Settings.load(None, environ={"QDRANT_PATH": str(tmp_path), "MATCH_THRESHOLD": "0.5"})
    identify = Identify(settings, gallery=open_gallery(None, tmp_path, "faces"))
    yield identify, GalleryOwner(identify.gallery, settings, live=identify, lock=identify.lock)
    identify.close()


def names(identify, tids, stream=0):
    return identify(frame(tids, query=False), stream=stream).names


def test_an_enrolment_names_an_unknown_live_track_on_its_next_frame(live):
    identify, owner = live
    ada, bob = unit(1), unit(2)
    for _ in range(8):  # many unknown answers: they would outvote one new match
        identify(frame([1, 2], [ada, bob]))
    assert names(identify, [1, 2]) == ["unknown", "unknown"]
    owner.handle("add", {"name": "Ada", "embeddings": (ada + 0.05 * unit(9))[None]})
    assert names(identify, [1, 2]) == ["Ada", "unknown"]  # no new query came from upstream


def test_rename_merge_remove_and_correction_show_on_the_next_frame(live):
    identify, owner = live
    ada, bob = unit(1), unit(2)
    owner.handle("add", {"name": "Ada", "embeddings": ada[None]})
    owner.handle("add", {"name": "Bob", "embeddings": bob[None]})
    identify(frame([1, 2], [ada, bob]))
    assert names(identify, [1, 2]) == ["Ada", "Bob"]
    owner.handle("rename", {"person_id": "ada", "name": "Ada Lovelace"})
    assert names(identify, [1, 2]) == ["Ada Lovelace", "Bob"]
    owner.handle("merge", {"person_id": "bob", "into_id": "ada"})
    assert names(identify, [1, 2]) == ["Ada Lovelace", "Ada Lovelace"]
    owner.handle("correct_track", {"stream": 0, "track_id": 2, "not_person_id": "ada"})
    assert names(identify, [1, 2]) == ["Ada Lovelace", "unknown"]
    identify(frame([2], [bob]))  # asked again: the correction refuses the match
    assert names(identify, [2]) == ["unknown"]
    owner.handle("remove", {"person_id": "ada"})
    assert names(identify, [1, 2]) == ["unknown", "unknown"]


def test_an_ended_track_can_be_enrolled_until_it_expires(live):
    identify, owner = live
    ada = unit(1)
    identify(frame([5], [ada]))
    identify(frame([5], [ada + 0.1 * unit(3)]))
    identify(Faces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32),
                   track_ids=np.zeros(0, np.int64)), removed=[5])
    [track] = owner.handle("tracks", {})
    assert track["track_id"] == 5 and track["ended_at"] > 0 and track["embeddings"] == 2
    person = owner.handle("enrol_track", {"stream": 0, "track_id": 5, "name": "Ada"})
    assert person["embeddings"] == 2
    identify(frame([6], [unit(7)]))
    with pytest.raises(DuplicateName):  # "this is a new person called Ada": Ada exists
        owner.handle("enrol_track", {"stream": 0, "track_id": 6, "name": "ADA"})
    person = owner.handle("enrol_track", {"stream": 0, "track_id": 6, "person_id": "ada"})  # "this is Ada"
    assert person["embeddings"] == 3 and names(identify, [6]) == ["Ada"]
    with pytest.raises(UnknownTrack):
        owner.handle("enrol_track", {"stream": 1, "track_id": 5, "name": "Other"})  # another stream's track 5
    identify(frame([8], [ada]))  # a live face of Ada: named; then it ends, and changes still reach its label
    identify(Faces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32),
                   track_ids=np.zeros(0, np.int64)), removed=[8])

    def ended_name():
        return next(t["name"] for t in owner.handle("tracks", {}) if t["track_id"] == 8)

    assert ended_name() == "Ada"
    owner.handle("rename", {"person_id": "ada", "name": "Ada L."})
    assert ended_name() == "Ada L."
    owner.handle("correct_track", {"stream": 0, "track_id": 8, "not_person_id": "ada"})
    assert ended_name() is None


def test_track_memory_keeps_the_latest_embeddings_and_forgets_ended_tracks_after_a_while():
    now = [100.0]
    memory = TrackMemory(per_track=3, keep_s=60, clock=lambda: now[0])
    for i in range(5):
        memory.add(0, 1, unit(i))
    assert np.allclose(memory.get(0, 1), np.stack([unit(2), unit(3), unit(4)]))
    memory.end(0, [1], {})
    assert memory.live() == [] and len(memory.get(0, 1)) == 3
    now[0] += 61
    memory.end(0, [], {})  # the purge runs as tracks end
    with pytest.raises(KeyError):
        memory.get(0, 1)
