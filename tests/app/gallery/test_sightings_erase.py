"""The erase behind `people remove`, on both engines: the person's points and photo files, their sightings, the
unknown sightings of their face; everyone else's untouched."""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.gallery.sightings import Sighting, Where
from app.gallery.sightings_erase import erase_person, person_vectors
from tests.app.gallery import near, unit

JPEG = b"\xff\xd8\xff\xe0jpeg\xff\xd9"


def _open(kind: str, root):
    if kind == "edge":
        from app.gallery.edge import EdgeGallery
        from app.gallery.sightings_edge import EdgeSightings

        return EdgeGallery(root, "faces", photos_dir=root / "photos"), EdgeSightings(root, "faces_sightings",
                                                                                     root / "snaps")
    from app.gallery.server import ServerGallery
    from app.gallery.sightings_server import ServerSightings

    return (ServerGallery("faces", path=root / "local", photos_dir=root / "photos"),
            ServerSightings("faces_sightings", root / "snaps", location=":memory:"))


@pytest.fixture(params=["edge", "local"])
def opened(request, tmp_path):
    gallery, store = _open(request.param, tmp_path)
    yield gallery, store
    store.close()
    gallery.close()


def test_erase_leaves_nothing_of_the_person_and_everything_of_the_others(opened, tmp_path):
    gallery, store = opened
    rng = np.random.default_rng(11)
    ada, bob, eve = unit(rng, 3)
    photo = tmp_path / "ada.jpg"
    photo.write_bytes(JPEG + b"ada")
    gallery.add("Ada", ada[None], source=[str(photo)])
    gallery.add("Bob", bob[None])
    [(_, _, v)] = person_vectors(gallery, "ada")
    assert float(v @ ada) > 0.999
    now = time.time()

    def seen(vec, track, pid="", name="unknown"):
        return store.add(Sighting(stream=0, track_id=track, first_seen=now - 9, last_seen=now, embedding=vec,
                                  person_id=pid, name=name), JPEG)

    seen(near(ada, rng), 1, "ada", "Ada")
    seen(near(ada, rng), 2)  # Ada, unknown at the time
    seen(near(bob, rng), 3, "bob", "Bob")
    seen(eve, 4)  # a stranger
    kept_photos = list((tmp_path / "photos").iterdir())
    assert len(kept_photos) == 1
    erased = erase_person(gallery, store, "ada", threshold=0.35)
    assert erased.counts() == {"embeddings": 1, "photos": 1, "sightings": 1, "unknown_sightings": 1,
                               "snapshots": 2}
    assert [p.name for p in gallery.people()] == ["Bob"] and not kept_photos[0].exists()
    assert sorted(h.sighting.track_id for h in store.list()) == [3, 4]
    assert store.count(Where(person_id="ada")) == 0 and len(list((tmp_path / "snaps").iterdir())) == 2
