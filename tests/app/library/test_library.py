"""Every face-library operation and every error, in this process and over the control socket to an owner
process: the same results, and a refused request leaves the gallery as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.library import (
    BadPhoto,
    BadRequest,
    DuplicateName,
    NotRunning,
    UnknownPerson,
    UnknownPhoto,
    UnknownTrack,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def photo(media_dir, rel: str) -> tuple[str, bytes]:
    path = media_dir / "people" / rel
    return path.name, path.read_bytes()


def snapshot(library):
    return [(p.id, p.name, p.embeddings, tuple(p.photos)) for p in library.people()]


def test_enrol_list_search_and_photo_bytes(library, media_dir, photo_embedder):
    ada = library.enrol_photos("Barack Obama", [photo(media_dir, "obama/obama.jpg")])
    assert ada.added == 1 and ada.person.name == "Barack Obama" and ada.person.embeddings == 1
    [kept] = ada.person.photos
    assert kept.filename == "obama.jpg"
    assert library.photo(ada.person.id, kept.id) == (media_dir / "people/obama/obama.jpg").read_bytes()
    more = library.enrol_photos(None, [photo(media_dir, "obama/obama2.jpg")], person_id=ada.person.id)
    assert more.added == 1 and more.person.embeddings == 2 and len(more.person.photos) == 2
    library.enrol_photos("Joe Biden", [photo(media_dir, "biden/biden.jpg")])
    assert [(p.name, p.embeddings) for p in library.people()] == [("Barack Obama", 2), ("Joe Biden", 1)]
    assert library.person(ada.person.id).name == "Barack Obama"
    assert library.lookup("barack OBAMA").id == ada.person.id
    probe = photo_embedder.embed([photo(media_dir, "biden/biden2.jpg"), photo(media_dir, "rose_leslie/img1.jpg")])
    found = library.search(probe)
    assert found[0] is not None and found[0].name == "Joe Biden" and found[1] is None
    status = library.status()
    assert status["running"] is library.running and status["people"] == 2 and status["embeddings"] == 3


def test_bad_photos_are_refused_by_name_and_nothing_is_enrolled(library, media_dir, tmp_path):
    library.enrol_photos("Barack Obama", [photo(media_dir, "obama/obama.jpg")])
    before = snapshot(library)
    cv2 = pytest.importorskip("cv2")
    blank = cv2.imencode(".png", np.full((200, 200, 3), 127, np.uint8))[1].tobytes()
    good = photo(media_dir, "biden/biden.jpg")
    cases = [
        ([good, ("notes.txt", b"not an image at all")], "notes.txt: not an image"),
        ([good, ("wall.png", blank)], "wall.png: no face found"),
        ([good, ("huge.jpg", b"\xff\xd8\xff" + bytes(11 << 20))], "huge.jpg: 11 MiB is over"),
        ([("two.jpg", (media_dir / "scenes/two_people.jpg").read_bytes())], "two.jpg: 2 faces"),
        ([], "no photo given"),
    ]
    for photos, message in cases:
        with pytest.raises(BadPhoto, match=message) as err:
            library.enrol_photos("Joe Biden", photos)
        assert err.value.status == 422
    assert snapshot(library) == before


def test_names_ids_and_photos_that_do_not_exist(library, media_dir):
    obama = library.enrol_photos("Barack Obama", [photo(media_dir, "obama/obama.jpg")]).person
    biden = library.enrol_photos("Joe Biden", [photo(media_dir, "biden/biden.jpg")]).person
    before = snapshot(library)
    with pytest.raises(DuplicateName, match="'barack obama' is already the name of person barack-obama") as err:
        library.enrol_photos("barack obama", [photo(media_dir, "obama/obama2.jpg")])
    assert err.value.status == 409
    with pytest.raises(DuplicateName):
        library.rename(biden.id, "BARACK OBAMA")
    for call in (lambda: library.person("nobody"), lambda: library.rename("nobody", "X"),
                 lambda: library.merge("nobody", obama.id), lambda: library.merge(obama.id, "nobody"),
                 lambda: library.remove("nobody"), lambda: library.remove_photo("nobody", "x.jpg"),
                 lambda: library.photo("nobody", "x.jpg"), lambda: library.lookup("Barak Obama"),
                 lambda: library.enrol_photos(None, [photo(media_dir, "obama/obama2.jpg")], person_id="nobody")):
        with pytest.raises(UnknownPerson) as err:
            call()
        assert err.value.status == 404
    with pytest.raises(UnknownPerson, match="closest: Barack Obama"):
        library.lookup("Barak Obama")
    with pytest.raises(UnknownPhoto):
        library.remove_photo(obama.id, biden.photos[0].id)  # Biden's photo is not Obama's
    with pytest.raises(UnknownPhoto):
        library.photo(obama.id, "../../etc/passwd")
    with pytest.raises(BadRequest, match="non-empty name"):
        library.rename(obama.id, "   ")
    with pytest.raises(BadRequest, match="into themself"):
        library.merge(obama.id, obama.id)
    assert snapshot(library) == before


def test_rename_merge_remove_photo_and_remove(library, media_dir):
    obama = library.enrol_photos("Barack Obama", [photo(media_dir, "obama/obama.jpg")]).person
    other = library.enrol_photos("Mr President", [photo(media_dir, "obama/obama2.jpg")]).person
    assert library.rename(obama.id, "Barack H. Obama").name == "Barack H. Obama"
    assert [p.name for p in library.people()] == ["Barack H. Obama", "Mr President"]
    merged = library.merge(other.id, obama.id)
    assert merged.id == obama.id and merged.name == "Barack H. Obama" and merged.embeddings == 2
    assert {p.filename for p in merged.photos} == {"obama.jpg", "obama2.jpg"}
    assert [p.id for p in library.people()] == [obama.id]
    with pytest.raises(UnknownPerson):
        library.person(other.id)
    gone_photo = next(p for p in merged.photos if p.filename == "obama2.jpg")
    after = library.remove_photo(obama.id, gone_photo.id)
    assert after.embeddings == 1 and [p.filename for p in after.photos] == ["obama.jpg"]
    with pytest.raises(BadRequest, match="remove the person instead"):  # the last one: not silently the person
        library.remove_photo(obama.id, after.photos[0].id)
    assert library.person(obama.id).embeddings == 1
    removed = library.remove(obama.id)
    assert removed.id == obama.id and removed.embeddings == 1
    assert library.people() == []


def test_live_tracks_need_a_running_pipeline_and_can_be_enrolled_and_corrected(library, media_dir, obama_track):
    if not library.running:
        for call in (library.tracks, lambda: library.enrol_track(0, 7, name="Barack Obama"),
                     lambda: library.correct_track(0, 7, "barack-obama")):
            with pytest.raises(NotRunning, match="needs a running pipeline") as err:
                call()
            assert err.value.status == 409
        return
    [track] = library.tracks()
    assert (track.stream, track.track_id, track.name, track.embeddings) == (0, 7, None, len(obama_track))
    with pytest.raises(UnknownTrack) as err:
        library.enrol_track(0, 99, name="Someone")
    assert err.value.status == 404
    with pytest.raises(BadRequest, match="not both"):
        library.enrol_track(0, 7)
    crop = photo(media_dir, "obama/obama.jpg")
    person = library.enrol_track(0, 7, name="Barack Obama", photos=[crop])
    assert person.name == "Barack Obama" and person.embeddings == len(obama_track)
    assert [p.filename for p in person.photos] == ["obama.jpg"]
    # enrolling re-asked the live track: it is named at once
    assert library.tracks()[0].name == "Barack Obama"
    assert library.search(obama_track)[0].name == "Barack Obama"
    # "not Barack Obama": the track is un-named, and those faces no longer match him
    library.correct_track(0, 7, person.id)
    assert library.tracks()[0].name is None
    assert library.search(obama_track) == [None, None]
    assert library.status()["corrections"] == len(obama_track)


def test_open_library_finds_the_running_owner_or_opens_the_gallery(library, env_file):
    from app.library import open_library
    from app.settings import Settings

    if library.running:
        with open_library(Settings.load(str(env_file)), wait=0) as found:
            assert found.running and found.status()["running"]
    else:
        library.close()  # the folder is free again: open_library opens it here
        with open_library(Settings.load(str(env_file)), wait=0) as found:
            assert not found.running and found.people() == []


def test_a_gallery_of_another_model_refuses_an_enrolment_and_keeps_its_people(env_file, photo_embedder, media_dir):
    from app.gallery import Embedder, open_gallery
    from app.library import WrongModel
    from app.library.client import LocalLibrary
    from app.settings import Settings

    settings = Settings.load(str(env_file))
    with open_gallery(None, settings.qdrant_path, "faces", embedder=Embedder("other-model", "0" * 64)) as g:
        g.add("Ada", np.eye(1, 512, dtype=np.float32))
    with LocalLibrary(settings, embedder=photo_embedder) as library:
        with pytest.raises(WrongModel, match="other-model") as err:
            library.enrol_photos("Barack Obama", [photo(media_dir, "obama/obama.jpg")])
        assert err.value.status == 409
        assert [(p.name, p.embeddings) for p in library.people()] == [("Ada", 1)]


def test_a_failed_store_leaves_no_photo_behind(library, env_file, media_dir):
    from app.settings import Settings

    photos = Path(Settings.load(str(env_file)).qdrant_path) / "photos"
    before = sorted(photos.glob("*")) if photos.is_dir() else []
    with pytest.raises(BadRequest, match=r"embeddings must be \(N, 512\)"):
        library.call("add", name="Someone", embeddings=np.ones((1, 10), np.float32),
                     photos=[photo(media_dir, "biden/biden.jpg")])
    assert (sorted(photos.glob("*")) if photos.is_dir() else []) == before
    assert library.people() == []


def test_a_correction_outlives_the_pipeline(library, env_file, media_dir, obama_track, photo_embedder):
    """Corrections are kept beside the gallery: after the owner is gone, the faces corrected still do not match
    the person they were said not to be, and other people still match."""
    from app.library.client import LocalLibrary
    from app.settings import Settings

    if not library.running:
        pytest.skip("corrections are made on a running pipeline's tracks")
    obama = library.enrol_photos("Barack Obama", [photo(media_dir, "obama/obama.jpg")]).person
    library.enrol_photos("Joe Biden", [photo(media_dir, "biden/biden.jpg")])
    assert library.search(obama_track)[0].name == "Barack Obama"
    library.correct_track(0, 7, obama.id)
    library.stop_owner()
    with LocalLibrary(Settings.load(str(env_file)), embedder=photo_embedder) as local:
        assert local.search(obama_track) == [None, None]
        assert local.search(photo_embedder.embed([photo(media_dir, "biden/biden2.jpg")]))[0].name == "Joe Biden"
