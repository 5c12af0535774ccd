"""One behaviour for every adapter: the embedded engine and the client (local mode standing in for a server)."""

from __future__ import annotations

import numpy as np
import pytest

from app.gallery import Gallery, GalleryError
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

    assert g.rename("grace hopper", "Rear Admiral Grace Hopper") == 3  # case-insensitive lookup, case kept
    assert "Rear Admiral Grace Hopper" in [p.name for p in g.people()]
    assert g.resolve("Rear Admiral Grace Hopper") == ids["Grace Hopper"]
    with pytest.raises(GalleryError, match="already the name"):
        g.rename(ids["Alan Turing"], "Ada Lovelace")

    assert g.remove(ids["Alan Turing"]) == 3
    assert g.count() == 6
    assert [p.name for p in g.people()] == ["Ada Lovelace", "Rear Admiral Grace Hopper"]
    assert g.remove("nobody") == 0 and g.rename("nobody", "x") == 0


def test_renamed_person_is_found_under_the_new_name(enrolled):
    g, vectors, ids = enrolled
    g.rename("Ada Lovelace", "Countess Lovelace")
    m = g.search(vectors["Ada Lovelace"][:1], threshold=THRESHOLD)[0]
    assert (m.name, m.person_id) == ("Countess Lovelace", ids["Ada Lovelace"])
    # the old name is free again: enrolling it makes a new person, not more points for the renamed one
    new = g.add("Ada Lovelace", unit(np.random.default_rng(3), 1))
    assert new.person_id != ids["Ada Lovelace"] and new.written == 1
    assert g.resolve("Countess Lovelace") == ids["Ada Lovelace"]


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
