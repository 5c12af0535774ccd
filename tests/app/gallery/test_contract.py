"""One behaviour for every adapter: the embedded engine and the client (local mode standing in for a server)."""

from __future__ import annotations

import numpy as np
import pytest

from app.gallery import Gallery, GalleryError, UnknownPerson
from tests.app.gallery import near, unit

THRESHOLD = 0.5
NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]


def _open(kind: str, root, dim: int = 512) -> Gallery:
    if kind == "edge":
        from app.gallery.edge import EdgeGallery

        return EdgeGallery(root, "faces", dim)
    from app.gallery.server import ServerGallery

    return ServerGallery("faces", dim, path=root / "local")


@pytest.fixture(params=["edge", "local"])
def opener(request, tmp_path):
    opened: list[Gallery] = []

    def open_(dim: int = 512) -> Gallery:
        g = _open(request.param, tmp_path, dim)
        opened.append(g)
        return g

    yield open_
    for g in opened:
        g.close()


@pytest.fixture
def enrolled(opener):
    """A gallery with three people of three embeddings each, and those embeddings."""
    rng = np.random.default_rng(7)
    g = opener()
    vectors = {name: unit(rng, 3) for name in NAMES}
    ids = {name: g.add(name, v).person_id for name, v in vectors.items()}
    return g, vectors, ids


def test_search_names_each_person_and_leaves_strangers_unknown(enrolled):
    g, vectors, ids = enrolled
    rng = np.random.default_rng(1)
    queries = np.stack([near(vectors[n][0], rng) for n in NAMES] + [unit(rng, 1)[0]])
    matches = g.search(queries, threshold=THRESHOLD)
    assert len(matches) == 4
    for name, match in zip(NAMES, matches):
        assert match is not None and match.name == name and match.person_id == ids[name]
        expected = float(queries[NAMES.index(name)] @ vectors[name][0] / np.linalg.norm(queries[NAMES.index(name)]))
        assert THRESHOLD < match.score <= 1.0
        assert match.score == pytest.approx(expected, abs=1e-3)
    assert matches[3] is None
    assert g.search(np.zeros((0, 512), np.float32), threshold=THRESHOLD) == []


def test_threshold_decides_known_from_unknown(enrolled):
    g, vectors, _ = enrolled
    q = near(vectors["Ada Lovelace"][1], np.random.default_rng(2))[None]
    score = g.search(q, threshold=-1.0)[0].score
    assert g.search(q, threshold=score - 0.01)[0] is not None
    assert g.search(q, threshold=score + 0.01)[0] is None


def test_search_top_gives_distinct_people_best_first(enrolled):
    g, vectors, _ = enrolled
    q = (vectors["Ada Lovelace"][0] + 0.8 * vectors["Grace Hopper"][0])[None]
    top = g.search_top(q, threshold=0.1, k=3)[0]
    assert [m.name for m in top] == ["Ada Lovelace", "Grace Hopper"]
    assert top[0].score > top[1].score


def test_people_count_rename_remove(enrolled):
    g, _, ids = enrolled
    assert g.count() == 9
    listed = [(p.name, p.embeddings) for p in g.people()]
    assert listed == [("Ada Lovelace", 3), ("Alan Turing", 3), ("Grace Hopper", 3)]
    assert {p.person_id for p in g.people()} == set(ids.values())

    renamed = g.rename("grace hopper", "Rear Admiral Grace Hopper")  # case-insensitive lookup, case kept
    assert (renamed.person_id, renamed.embeddings) == (ids["Grace Hopper"], 3)
    assert renamed.name == "Rear Admiral Grace Hopper"
    assert "Rear Admiral Grace Hopper" in [p.name for p in g.people()]
    assert g.lookup("REAR admiral grace hopper").person_id == ids["Grace Hopper"]
    with pytest.raises(GalleryError, match="already the name"):
        g.rename(ids["Alan Turing"], "Ada Lovelace", by_id=True)

    gone = g.remove(ids["Alan Turing"], by_id=True)
    assert (gone.name, gone.embeddings) == ("Alan Turing", 3)
    assert g.count() == 6
    assert [p.name for p in g.people()] == ["Ada Lovelace", "Rear Admiral Grace Hopper"]


def test_rename_and_remove_take_a_display_name_never_an_id(opener):
    g = opener()
    rng = np.random.default_rng(11)
    g.add("Lin-Manuel Miranda", unit(rng, 1), person_id="lin_manuel_miranda")
    g.add("lin_manuel_miranda", unit(rng, 2), person_id="someone-else")  # a display name equal to another's id
    assert g.remove("lin_manuel_miranda").person_id == "someone-else"
    assert [p.person_id for p in g.people()] == ["lin_manuel_miranda"]
    with pytest.raises(UnknownPerson) as err:
        g.rename("lin_manuel_miranda", "X")
    text = str(err.value)
    assert "no one called 'lin_manuel_miranda'" in text and "Lin-Manuel Miranda (id lin_manuel_miranda)" in text
    assert "--id" in text
    assert g.rename("lin_manuel_miranda", "LMM", by_id=True).name == "LMM"


def test_unknown_names_list_the_closest_people_and_change_nothing(enrolled):
    g, _, _ = enrolled
    before = g.people()
    for act in (lambda: g.remove("Ada Lovelance"), lambda: g.rename("Ada Lovelance", "X"),
                lambda: g.remove("grace-hopperr", by_id=True)):
        with pytest.raises(UnknownPerson) as err:
            act()
        text = str(err.value)
        first = text.split("closest: ")[1].split(",")[0]
        assert first.startswith(("Ada Lovelace", "Grace Hopper"))
    assert g.people() == before


def test_a_name_shared_by_two_people_is_ambiguous_and_lists_them(opener):
    g = opener()
    rng = np.random.default_rng(12)
    g.add("Ada", unit(rng, 1), person_id="ada-1")
    # a gallery damaged from outside (two writers racing): two people end up with one name
    from app.gallery.base import name_key
    from app.gallery.records import point_id

    g._upsert([point_id("emb:x")], unit(rng, 1), [{"person_id": "ada-2", "name": "ADA", "name_key": name_key("Ada")}])
    with pytest.raises(GalleryError) as err:
        g.remove("ada")
    assert "2 people" in str(err.value) and "ada-1" in str(err.value) and "ada-2" in str(err.value)
    assert g.count() == 2
    assert g.remove("ada-2", by_id=True).name == "ADA"


def test_the_embedder_record_is_kept_out_of_searches_listings_and_counts(opener):
    from app.gallery import Embedder

    g = opener()
    g.set_embedder(Embedder("w600k_mbf", "ab" * 32))
    e0 = np.zeros((1, 512), np.float32)
    e0[0, 0] = 1
    assert g.count() == 0 and g.people() == [] and g.search(e0, threshold=-1.0) == [None]
    assert g.stored_embedder() == Embedder("w600k_mbf", "ab" * 32)


def test_a_gallery_filled_by_another_model_is_refused_with_one_line(opener, tmp_path):
    from app.gallery import Embedder, EmbedderMismatch

    mbf, r50 = Embedder("w600k_mbf", "a" * 64), Embedder("w600k_r50", "b" * 64)
    g = opener()
    g.embedder = mbf
    g._bind_embedder()  # a new gallery records its model
    g.add("Ada", unit(np.random.default_rng(13), 1))
    assert g.stored_embedder() == mbf
    g.embedder = r50
    with pytest.raises(EmbedderMismatch) as err:
        g._bind_embedder()
    text = str(err.value)
    assert "\n" not in text and "w600k_mbf" in text and "w600k_r50" in text and "people reembed" in text
    g.embedder = mbf
    g._bind_embedder()  # the same model passes


def test_renamed_person_is_found_under_the_new_name(enrolled):
    g, vectors, ids = enrolled
    g.rename("Ada Lovelace", "Countess Lovelace")
    m = g.search(vectors["Ada Lovelace"][:1], threshold=THRESHOLD)[0]
    assert (m.name, m.person_id) == ("Countess Lovelace", ids["Ada Lovelace"])
    # the old name is free again: enrolling it makes a new person, not more points for the renamed one
    new = g.add("Ada Lovelace", unit(np.random.default_rng(3), 1))
    assert new.person_id != ids["Ada Lovelace"] and new.written == 1
    assert g.lookup("Countess Lovelace").person_id == ids["Ada Lovelace"]


def test_enrolling_again_adds_new_embeddings_and_never_duplicates(enrolled):
    g, vectors, ids = enrolled
    again = g.add("Ada Lovelace", vectors["Ada Lovelace"])
    assert again.person_id == ids["Ada Lovelace"] and again.written == 0 and len(again.ids) == 3
    assert g.count() == 9
    more = g.add("Ada Lovelace", unit(np.random.default_rng(4), 2))
    assert more.person_id == ids["Ada Lovelace"] and more.written == 2
    assert g.count() == 11
    assert {p.name: p.embeddings for p in g.people()}["Ada Lovelace"] == 5


def test_the_same_photo_is_one_point_whatever_its_embedding(opener, tmp_path):
    g = opener()
    rng = np.random.default_rng(5)
    photo, other = tmp_path / "a.jpg", tmp_path / "b.jpg"
    photo.write_bytes(b"photo one")
    other.write_bytes(b"photo two")
    v = unit(rng, 1)
    assert g.add("Ada", v, source=[str(photo)]).written == 1
    # re-embedded on another backend: a slightly different vector from the same file
    assert g.add("Ada", near(v, rng, 0.01), source=[str(photo)]).written == 0
    assert g.add("Ada", unit(rng, 1), source=[str(other)]).written == 1
    assert g.count() == 2


def test_a_name_is_one_person_whatever_its_case(enrolled):
    g, _, ids = enrolled
    more = g.add("  ada   LOVELACE ", unit(np.random.default_rng(6), 1))
    assert more.person_id == ids["Ada Lovelace"] and more.written == 1
    assert more.name == "Ada Lovelace"  # the stored spelling stays until a rename
    assert {p.name: p.embeddings for p in g.people()}["Ada Lovelace"] == 4


def test_add_with_a_person_id_keeps_one_name_per_person(opener):
    g = opener()
    rng = np.random.default_rng(6)
    g.add("Ada", unit(rng, 2), person_id="p-1")
    g.add("Ada King", unit(rng, 1), person_id="p-1")
    assert [(p.person_id, p.name, p.embeddings) for p in g.people()] == [("p-1", "Ada King", 3)]
    with pytest.raises(GalleryError, match="already the name of person p-1"):
        g.add("ada king", unit(rng, 1), person_id="p-2")
    assert g.count() == 3


def test_bad_input_is_refused(opener):
    g = opener()
    with pytest.raises(ValueError, match=r"\(N, 512\)"):
        g.add("Ada", np.ones((2, 128), np.float32))
    with pytest.raises(ValueError, match="sources"):
        g.add("Ada", unit(np.random.default_rng(0), 2), source=["one.jpg"])
    with pytest.raises(GalleryError, match="name"):
        g.add("  ", unit(np.random.default_rng(0), 1))
    assert g.count() == 0


def test_persistence_across_close_and_reopen(opener):
    rng = np.random.default_rng(8)
    g = opener()
    v = unit(rng, 4)
    pid = g.add("Ada", v[:2]).person_id
    g.add("Alan", v[2:])
    before = g.people()
    g.close()
    g2 = opener()
    assert g2.people() == before and g2.count() == 4
    assert g2.search(near(v[1], rng)[None], threshold=THRESHOLD)[0].person_id == pid
    assert g2.add("Ada", v[:2]).written == 0


def test_reopening_with_another_vector_size_is_one_clear_error(opener):
    g = opener()
    g.add("Ada", unit(np.random.default_rng(9), 1))
    g.close()
    with pytest.raises(GalleryError) as err:
        opener(dim=128)
    text = str(err.value)
    assert "512-d" in text and "128-d" in text and "QDRANT_COLLECTION" in text and "faces" in text
    assert opener().count() == 1  # the stored gallery is untouched


def test_a_photo_is_enrolled_once_whatever_its_person_is_called_now(opener, tmp_path):
    g = opener()
    rng = np.random.default_rng(14)
    photo, other = tmp_path / "lmm.png", tmp_path / "obama.jpg"
    photo.write_bytes(b"a photo of Lin-Manuel")
    other.write_bytes(b"a photo of Obama")
    v = unit(rng, 2)
    first = g.add("lin_manuel_miranda", v[:1], person_id="lin_manuel_miranda", source=[str(photo)])
    g.rename("lin_manuel_miranda", "Lin-Manuel Miranda")
    again = g.add("Lin-Manuel Miranda", near(v[:1], rng, 0.01), person_id="lin_manuel_miranda", source=[str(photo)])
    assert (first.written, again.written, again.already) == (1, 0, 1)
    assert [(p.person_id, p.name, p.embeddings) for p in g.people()] == [
        ("lin_manuel_miranda", "Lin-Manuel Miranda", 1)]
    # the same photo under another person is refused, naming who has it
    taken = g.add("Someone", v[1:], source=[str(photo)])
    assert taken.written == 0 and taken.taken == ((str(photo), "Lin-Manuel Miranda"),)
    assert g.photo_owner(photo).name == "Lin-Manuel Miranda" and g.photo_owner(other) is None
    assert g.count() == 1


def test_points_from_before_content_ids_still_count_as_enrolled(opener, tmp_path):
    from app.gallery.base import name_key
    from app.gallery.records import legacy_point_id, photo_key

    g = opener()
    photo = tmp_path / "ada.jpg"
    photo.write_bytes(b"ada")
    v = unit(np.random.default_rng(15), 1)
    g._upsert([legacy_point_id("ada", photo_key(photo))], v,
              [{"person_id": "ada", "name": "Ada", "name_key": name_key("Ada"), "source": str(photo)}])
    assert g.add("Ada", v, source=[str(photo)]).already == 1 and g.count() == 1
    assert g.photo_owner(photo, "ada").person_id == "ada"


def test_enrolment_photos_are_kept_by_content(opener, tmp_path):
    from app.gallery.photos import PhotoStore
    from app.gallery.records import file_digest

    g = opener()
    g.photos = PhotoStore(tmp_path / "photos")
    photo = tmp_path / "Ada.JPG"
    photo.write_bytes(b"ada's photo")
    g.add("Ada", unit(np.random.default_rng(16), 1), source=[str(photo)])
    kept = tmp_path / "photos" / f"{file_digest(photo)}.jpg"
    assert kept.read_bytes() == b"ada's photo"
    [(_, payload)] = list(g.points())
    assert payload["photo"] == kept.name and g.photos.path(payload["photo"]) == kept
    assert not list((tmp_path / "photos").glob(".*"))  # no temporary file left


def test_a_spooled_photo_that_has_gone_is_enrolled_without_being_kept(opener, tmp_path):
    from app.gallery.photos import PhotoStore
    from app.gallery.records import prepare

    g = opener()
    g.photos = PhotoStore(tmp_path / "photos")
    photo = tmp_path / "ada.jpg"
    photo.write_bytes(b"ada")
    prep = prepare(unit(np.random.default_rng(17), 1), 512, [str(photo)])  # as the spool holds it
    photo.unlink()
    assert g._write("Ada", None, prep).written == 1
    [(_, payload)] = list(g.points())
    assert "photo" not in payload and not list((tmp_path / "photos").glob("*"))  # no half-kept photo either


def test_a_gallery_from_before_embedder_records_is_taken_as_the_configured_model(opener, caplog):
    from app.gallery import Embedder

    g = opener()
    g.add("Ada", unit(np.random.default_rng(18), 1))  # written with no record, as older versions did
    assert g.stored_embedder() is None
    g.embedder = Embedder("w600k_mbf", "c" * 64)
    g._bind_embedder()
    assert g.stored_embedder() == g.embedder and g.count() == 1
    assert "no record of the model" in caplog.text and "people reembed" in caplog.text


class _Detections:
    def __init__(self, n: int) -> None:
        self.areas = np.arange(1, n + 1, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.areas)


class _NewModel:
    """Stands in for another embedding model: a fixed embedding per photo, by the photo's first pixel."""

    def __init__(self, faces_per_photo: int = 1) -> None:
        self.n = faces_per_photo

    def analyze(self, image):
        rng = np.random.default_rng(int(image[0, 0, 0]))
        from types import SimpleNamespace

        return SimpleNamespace(detections=_Detections(self.n), embeddings=unit(rng, self.n))


def test_reembed_rebuilds_every_point_from_its_kept_photo_and_records_the_model(opener, tmp_path):
    import cv2

    from app.gallery import Embedder
    from app.gallery.photos import PhotoStore
    from app.gallery.reembed import reembed

    g = opener()
    g.photos = PhotoStore(tmp_path / "photos")
    photos = []
    for i, who in enumerate(("Ada", "Alan")):
        path = tmp_path / f"{who}.png"
        cv2.imwrite(str(path), np.full((8, 8, 3), 10 + i, np.uint8))
        photos.append(path)
        g.add(who, unit(np.random.default_rng(100 + i), 1), source=[str(path)])
    g.add("stranger", unit(np.random.default_rng(3), 1))  # no photo: cannot be rebuilt
    for p in photos:
        p.unlink()  # only the kept copies remain
    new = Embedder("w600k_r50", "d" * 64)

    with pytest.raises(GalleryError, match=r"1 embedding\(s\) have no photo.*stranger \(1\).*--drop-missing"):
        reembed(_NewModel(), g, new)
    assert g.stored_embedder() is None and g.count() == 3  # nothing changed

    line = reembed(_NewModel(), g, new, drop_missing=True)
    assert line == "re-embedded 2 photo(s) of 2 people with w600k_r50; left out 1 embedding(s) with no photo"
    assert g.stored_embedder() == new and [p.name for p in g.people()] == ["Ada", "Alan"]
    for i, who in enumerate(("Ada", "Alan")):  # each point now holds the new model's embedding of its photo
        m = g.search(unit(np.random.default_rng(10 + i), 1), threshold=0.99)[0]
        assert m is not None and m.name == who
