"""The identify process's recorder: one sighting per ended track, its best face and snapshot, the SIGHTINGS and
PRIVACY_BLUR policies; written to the real embedded store by its writer thread."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from app.gallery.sightings import Where
from app.gallery.sightings_edge import EdgeSightings
from app.gallery.sightings_feed import SightingRecorder, policy_warning
from app.settings import Settings
from app.types import UNKNOWN, Faces
from tests.app.gallery import near, unit

T0 = time.time() - 60  # within SIGHTINGS_DAYS: the writer prunes older sightings


def labelled(tids, names, sims, embeddings, pids=None) -> Faces:
    n = len(tids)
    boxes = np.array([[40 + 100 * i, 40, 120 + 100 * i, 140] for i in range(n)], np.float32)
    return Faces(boxes, np.full(n, 0.9, np.float32), np.zeros((n, 5, 2), np.float32), track_ids=np.array(tids),
                 embeddings=np.stack(embeddings), query=np.arange(n), names=list(names),
                 person_ids=pids or [("p-" + x if x != UNKNOWN else "") for x in names],
                 similarities=np.array(sims, np.float32), nearest=["Ada" if x == UNKNOWN else "" for x in names])


@pytest.fixture
def recorder(tmp_path):
    made = []

    def make(**env) -> tuple[SightingRecorder, EdgeSightings]:
        settings = Settings.load(None, environ={k.upper(): v for k, v in env.items()})
        def opener() -> EdgeSightings:
            return EdgeSightings(tmp_path, "faces_sightings", tmp_path / "snaps")

        rec = SightingRecorder(settings, "run1", ["rtsp://user:secret@cam/1"], open_store=opener)
        made.append(rec)
        return rec, opener()  # a reader of its own: the writer closes the one it opened when the stream ends

    yield make
    for rec in made:
        rec.close()


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (240, 320, 3), np.uint8)


def test_each_ended_track_is_one_sighting_with_its_best_face(recorder):
    rec, store = recorder(sightings="all")
    rng = np.random.default_rng(1)
    ada, stranger = unit(rng, 2)
    best = near(ada, rng, 0.1)
    frames = [(0.6, near(ada, rng)), (0.9, best), (0.7, near(ada, rng))]
    for i, (sim, emb) in enumerate(frames):
        faces = labelled([1, 2], ["Ada", UNKNOWN], [sim, 0.2], [emb, stranger])
        image = _image(i) if rec.wants_image(0, faces) else None
        assert (image is not None) == (i < 2)  # the third frame improves neither track: no picture needed
        rec.frame(0, 10 + i, T0 + i, faces, [], image)
    rec.frame(0, 13, T0 + 3, Faces.empty(), [1])
    assert rec.finish() == 2
    by_track = {h.sighting.track_id: h.sighting for h in store.list()}
    ada_s, other = by_track[1], by_track[2]
    assert ada_s.name == "Ada" and ada_s.person_id == "p-Ada" and ada_s.similarity == pytest.approx(0.9)
    assert (ada_s.first_frame, ada_s.last_frame) == (10, 12)
    # times go through the store's payload as JSON numbers: equal to the microsecond, not to the last bit
    assert (ada_s.first_seen, ada_s.last_seen) == (pytest.approx(T0, abs=1e-5), pytest.approx(T0 + 2, abs=1e-5))
    assert other.name == UNKNOWN and other.nearest == "Ada" and "secret" not in other.source and other.source
    [(_, got)] = store.vectors(Where(person_id="p-Ada"))
    assert float(got @ best) / float(np.linalg.norm(best)) > 0.999  # the highest-scoring embedding
    snap = cv2.imread(ada_s.snapshot)
    assert snap is not None and snap.shape[0] > 100  # the crop of the best frame, decodable


def test_known_keeps_only_named_tracks_and_off_keeps_nothing(recorder):
    rng = np.random.default_rng(2)
    rec, store = recorder(sightings="known")
    rec.frame(0, 0, T0, labelled([1, 2], ["Ada", UNKNOWN], [0.8, 0.1], list(unit(rng, 2))), [])
    assert rec.finish() == 1 and [h.sighting.name for h in store.list()] == ["Ada"]
    off, _ = recorder(sightings="off")
    off.frame(0, 0, T0, labelled([3], ["Ada"], [0.8], list(unit(rng, 1))), [3])
    assert off.finish() == 0 and off.tracks == {}


def test_privacy_blur_wins_over_sightings_all(recorder, caplog):
    rng = np.random.default_rng(3)
    rec, store = recorder(sightings="all", privacy_blur="unknown")
    rec.frame(0, 0, T0, labelled([1, 2], ["Ada", UNKNOWN], [0.8, 0.1], list(unit(rng, 2))), [1, 2])
    assert rec.finish() == 1 and store.count() == 1 and store.list()[0].sighting.name == "Ada"
    settings = Settings.load(None, environ={"SIGHTINGS": "all", "PRIVACY_BLUR": "unknown"})
    assert "PRIVACY_BLUR=unknown wins over SIGHTINGS=all" in policy_warning(settings)
    assert policy_warning(Settings.load(None, environ={"SIGHTINGS": "all"})) is None


def test_a_store_that_cannot_open_costs_the_sightings_not_the_stage(tmp_path, caplog):
    def broken():
        raise OSError("disk gone")

    rec = SightingRecorder(Settings.load(None, environ={}), open_store=broken)
    with caplog.at_level(logging.WARNING):
        rec.frame(0, 0, T0, labelled([1], ["Ada"], [0.8], list(unit(np.random.default_rng(4), 1))), [1])
        assert rec.finish() == 0
    assert "not recorded this run: disk gone" in caplog.text
    rec.close()


def test_a_track_un_named_before_it_ends_is_not_a_sighting_of_that_person(recorder):
    """A person removed (or a correction) while their track is on screen: its sighting must not name them."""
    rng = np.random.default_rng(5)
    rec, store = recorder(sightings="known")
    v = unit(rng, 1)[0]
    rec.frame(0, 0, T0, labelled([1], ["Ada"], [0.8], [v]), [])
    rec.frame(0, 1, T0 + 1, labelled([1], [UNKNOWN], [0.1], [v], pids=[""]), [1])
    assert rec.finish() == 0 and store.count() == 0
