"""`facestream sightings` and the erase in `people remove`, with the real models and real faces (the shared photos);
sightings are written directly here, as the identify stage writes them at track end."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.cli.sightings import parse_since
from app.errors import FacestreamError
from app.gallery.sightings import Sighting, open_sightings
from app.settings import Settings


@pytest.fixture(autouse=True)
def _log_handlers_of_this_test():
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


@pytest.fixture
def env(tmp_path, checkpoint_dir):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\nSIGHTINGS=all\n")
    return env


def _face(analyzer, path: Path) -> tuple[np.ndarray, bytes]:
    """The photo's largest face: its embedding and its crop as JPEG (what a snapshot holds)."""
    image = cv2.imread(str(path))
    faces = analyzer.analyze(image)
    i = int(np.argmax(faces.detections.areas))
    x1, y1, x2, y2 = (int(v) for v in faces.detections.boxes[i])
    ok, jpeg = cv2.imencode(".jpg", image[max(0, y1):y2, max(0, x1):x2])
    assert ok
    return np.asarray(faces.embeddings[i], np.float32), jpeg.tobytes()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_photo_finds_that_persons_sightings_and_remove_erases_every_trace(env, tmp_path, media_dir, capsys):
    from app.cli.tools import _analyzer

    people = media_dir / "people"
    assert main(["--env", str(env), "enrol", "Barack Obama", str(people / "obama" / "obama2.jpg")]) == 0
    assert main(["--env", str(env), "enrol", "Joe Biden", str(people / "biden" / "biden2.jpg")]) == 0
    settings = Settings.load(env, environ={})
    analyzer = _analyzer(settings)
    now = time.time()
    written = {}
    with open_sightings(None, settings.qdrant_path, settings.qdrant_collection) as store:
        for track, (who, pid, path) in enumerate([
                ("Barack Obama", "barack-obama", media_dir / "scenes" / "obama-720p.jpg"),  # named on screen
                ("unknown", "", media_dir / "scenes" / "obama-240p.jpg"),  # his face, left unknown (too small)
                ("Joe Biden", "joe-biden", people / "biden" / "biden.jpg"),
                ("unknown", "", people / "rose_leslie" / "img1.jpg")]):  # a stranger
            emb, jpeg = _face(analyzer, path)
            written[track] = store.add(Sighting(stream=0, track_id=track, first_seen=now - 60 + track,
                                                last_seen=now - 50 + track, embedding=emb, person_id=pid, name=who,
                                                first_frame=100 * track, last_frame=100 * track + 50), jpeg)
        snapshots = {h.sighting.track_id: Path(h.sighting.snapshot) for h in store.list()}
    capsys.readouterr()

    photo = str(people / "obama" / "obama.jpg")
    assert main(["--env", str(env), "sightings", "--photo", photo, "--json"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert found, "no sighting found for Obama's photo"
    assert found[0]["track_id"] == 0 and found[0]["name"] == "Barack Obama"  # best match first: his named track
    assert all(f["score"] >= settings.match_threshold for f in found)
    assert {f["track_id"] for f in found} == {0, 1}  # his unknown track too; never Biden's or the stranger's
    assert Path(found[0]["snapshot"]).is_file() and found[0]["first_frame"] == 0
    assert main(["--env", str(env), "sightings", "--photo", photo]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[1:3] == ["Barack", "Obama"] and str(snapshots[0]) in text[0]
    assert main(["--env", str(env), "sightings", "--name", "joe BIDEN"]) == 0
    assert [line.split("track ")[1].split()[0] for line in capsys.readouterr().out.splitlines()] == ["2"]

    assert main(["--env", str(env), "people", "remove", "Barack Obama"]) == 0
    out = capsys.readouterr().out
    assert "removed Barack Obama" in out and "1 photo(s), 1 sighting(s), 1 unknown sighting(s)" in out
    with open_sightings(None, settings.qdrant_path, settings.qdrant_collection) as store:
        left = {h.sighting.track_id for h in store.list()}
        assert left == {2, 3}  # Biden's and the stranger's stay
        assert not store.search(_face(analyzer, Path(photo))[0], threshold=settings.match_threshold)
    assert not snapshots[0].exists() and not snapshots[1].exists() and snapshots[2].exists() and snapshots[3].exists()
    assert len(list((tmp_path / "gallery" / "photos").iterdir())) == 1  # only Biden's photo is kept
    assert main(["--env", str(env), "sightings", "--photo", photo]) == 0
    assert capsys.readouterr().out.startswith("no sightings of that face")


def test_since_reads_spans_and_dates_and_refuses_the_rest():
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("7d", now=1e6) == 1e6 - 7 * 86400
    assert parse_since(None) is None
    assert abs(parse_since("2026-12-04T15:00") - time.mktime((2026, 12, 4, 15, 0, 0, 0, 0, -1))) < 1
    with pytest.raises(FacestreamError, match="since 'yesterday' is not a time"):
        parse_since("yesterday")


def test_a_photo_with_no_face_is_one_clear_line(env, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    assert main(["--env", str(env), "sightings", "--photo", str(blank)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facestream: error: --photo") and "no face found" in err and "\n" not in err


def test_sightings_are_listed_while_a_pipeline_owns_the_gallery(env, capsys):
    """The identify stage holds the gallery's folder for the whole run; the sightings store is not that folder."""
    from app.gallery import GalleryBusy
    from app.gallery.edge import EdgeGallery

    settings = Settings.load(env, environ={})
    owner = EdgeGallery(settings.qdrant_path, settings.qdrant_collection)  # what a running pipeline holds
    try:
        with pytest.raises(GalleryBusy):
            EdgeGallery(settings.qdrant_path, settings.qdrant_collection)
        v = np.random.default_rng(0).standard_normal(512).astype(np.float32)
        with open_sightings(None, settings.qdrant_path, settings.qdrant_collection) as store:
            store.add(Sighting(stream=1, track_id=7, first_seen=time.time() - 5, last_seen=time.time(), embedding=v,
                               person_id="ada", name="Ada"))
        capsys.readouterr()
        assert main(["--env", str(env), "sightings", "--name", "ada", "--since", "1h"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 1 and out[0].startswith("Ada  stream 1 track 7")
    finally:
        owner.close()
