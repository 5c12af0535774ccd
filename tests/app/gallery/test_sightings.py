"""Sightings behave the same on both engines (qdrant-edge, and qdrant-client's local mode standing in for a server)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.gallery.sightings import Sighting, SightingStore, Where
from tests.app.gallery import near, unit

JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"


def _open(kind: str, root) -> SightingStore:
    if kind == "edge":
        from app.gallery.sightings_edge import EdgeSightings

        return EdgeSightings(root, "faces_sightings", root / "snapshots")
    from app.gallery.sightings_server import ServerSightings

    return ServerSightings("faces_sightings", root / "snapshots", path=root / "local")


@pytest.fixture(params=["edge", "local"])
def store(request, tmp_path):
    s = _open(request.param, tmp_path)
    yield s
    s.close()


def seen(v, track, person_id="", name="unknown", t=None, stream=0, run="r1") -> Sighting:
    t = time.time() if t is None else t
    return Sighting(stream=stream, track_id=track, first_seen=t - 2.0, last_seen=t, embedding=v, person_id=person_id,
                    name=name, similarity=0.8 if person_id else 0.1, first_frame=10 * track, last_frame=10 * track + 9,
                    run_id=run)


def test_a_face_finds_its_own_sightings_first_with_their_snapshots(store):
    rng = np.random.default_rng(1)
    ada, bob = unit(rng, 2)
    ids = {store.add(seen(near(ada, rng), 1, "ada", "Ada"), JPEG): "ada",
           store.add(seen(near(bob, rng), 2), JPEG): "bob",
           store.add(seen(near(ada, rng), 3, "ada", "Ada"), JPEG): "ada"}
    hits = store.search(ada, limit=10)
    assert [ids[h.id] for h in hits[:2]] == ["ada", "ada"] and hits[0].score >= hits[1].score >= hits[2].score
    for h in hits:
        assert h.sighting.snapshot and Path(h.sighting.snapshot).read_bytes() == JPEG
    assert {h.sighting.track_id for h in hits[:2]} == {1, 3} and hits[0].sighting.first_frame in (10, 30)
    # below the threshold nothing is found: a stranger's sightings do not come up for Ada
    assert [ids[h.id] for h in store.search(ada, threshold=0.5)] == ["ada", "ada"]


def test_filters_by_name_stream_time_and_unknown(store):
    rng = np.random.default_rng(2)
    now = time.time()
    store.add(seen(unit(rng, 1)[0], 1, "ada", "Ada Lovelace", t=now - 3600, stream=0))
    store.add(seen(unit(rng, 1)[0], 2, "ada", "Ada Lovelace", t=now, stream=1))
    store.add(seen(unit(rng, 1)[0], 3, t=now, stream=1))
    assert [h.sighting.track_id for h in store.list(Where(name="ada  LOVELACE"))] == [2, 1]  # latest first
    assert {h.sighting.track_id for h in store.list(Where(stream=1))} == {2, 3}
    assert {h.sighting.track_id for h in store.list(Where(since=now - 60))} == {2, 3}
    assert [h.sighting.track_id for h in store.list(Where(unknown_only=True))] == [3]
    assert store.count(Where(person_id="ada")) == 2 and store.count() == 3


def test_the_same_track_written_twice_is_one_sighting(store):
    v = unit(np.random.default_rng(3), 1)[0]
    s = seen(v, 5, t=1000.0)
    assert store.add(s) == store.add(s) and store.count() == 1


def test_delete_and_prune_take_the_snapshot_files_with_them(store, tmp_path):
    rng = np.random.default_rng(4)
    now = time.time()
    old = store.add(seen(unit(rng, 1)[0], 1, t=now - 10 * 86400), JPEG)
    new = store.add(seen(unit(rng, 1)[0], 2, t=now), JPEG)
    files = {h.id: h.sighting.snapshot for h in store.list()}
    assert store.prune(days=7, now=now) == 1
    assert [h.id for h in store.list()] == [new] and not _exists(files[old]) and _exists(files[new])
    assert store.prune(days=0) == 0  # 0: keep forever
    assert store.delete([new]) == 1 and store.count() == 0 and not _exists(files[new])
    assert list((tmp_path / "snapshots").iterdir()) == []  # no half-written or orphaned file


def test_vectors_of_a_person_come_back_for_an_erase(store):
    rng = np.random.default_rng(5)
    v = unit(rng, 1)[0]
    sid = store.add(seen(v, 1, "ada", "Ada"))
    [(got_id, got)] = store.vectors(Where(person_id="ada"))
    assert got_id == sid and float(got @ v) > 0.999


def test_a_bad_embedding_writes_nothing(store, tmp_path):
    with pytest.raises(ValueError, match="512"):
        store.add(seen(np.ones(3, np.float32), 1), JPEG)
    assert store.count() == 0 and not (tmp_path / "snapshots").exists()


def _exists(path: str) -> bool:
    return Path(path).exists()
