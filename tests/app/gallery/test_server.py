"""The client adapter: local mode stands in for a server; a closed port stands in for a server that is down."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from qdrant_client import QdrantClient

from app.gallery import GalleryError, GalleryUnavailable, open_gallery
from app.gallery.server import ServerGallery
from app.gallery.spool import Spool
from tests.app.gallery import near, unit

SECRET = "sk-test-0123456789"



def test_accepts_a_client_built_elsewhere_and_leaves_it_usable():
    client = QdrantClient(":memory:")
    g = ServerGallery("people", 512, client=client)
    g.add("Ada", unit(np.random.default_rng(0), 2))
    assert client.count("people").count == 2
    info = client.get_collection("people").config.params.vectors
    assert (info.size, info.distance.value) == (512, "Cosine")


def test_an_existing_collection_with_named_vectors_is_refused():
    from qdrant_client import models as m

    client = QdrantClient(":memory:")
    client.create_collection("faces", vectors_config={"face": m.VectorParams(size=512, distance=m.Distance.COSINE)})
    with pytest.raises(GalleryError, match="named vectors"):
        ServerGallery("faces", 512, client=client)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_unreachable_server_is_one_clear_error_without_the_api_key(closed_url, grpc, caplog):
    caplog.set_level(logging.DEBUG)
    url = closed_url.replace("http://", "http://admin:hunter2@")
    with pytest.raises(GalleryUnavailable) as err:
        ServerGallery("faces", 512, url=url, api_key=SECRET, prefer_grpc=grpc, timeout=2)
    text = str(err.value) + caplog.text
    assert "faces" in str(err.value)
    assert SECRET not in text and "hunter2" not in text


@pytest.mark.timeout(60)
def test_enrolments_wait_in_the_spool_while_the_server_is_down_and_land_when_it_answers(closed_url, tmp_path,
                                                                                         caplog):
    rng = np.random.default_rng(1)
    v = unit(rng, 3)
    down = open_gallery(url=closed_url, path=str(tmp_path), collection="faces", api_key=SECRET, prefer_grpc=False)
    assert isinstance(down, ServerGallery)
    result = down.add("Ada", v)
    assert (result.written, result.spooled) == (0, 3)
    spool = Spool(tmp_path / "spool" / "faces")
    assert len(spool) == 1
    with pytest.raises(GalleryUnavailable):
        down.search(v, 0.5)
    assert down.outage.unreachable and down.outage.blind_s() > 0  # what the identify stage reports as blind time
    down.close()
    assert SECRET not in caplog.text

    # the server "comes back": a reachable gallery with the same spool writes the entry at open
    up = ServerGallery("faces", 512, path=tmp_path / "local", spool_dir=tmp_path / "spool" / "faces")
    try:
        assert len(spool) == 0 and up.count() == 3 and not up.outage.unreachable
        assert up.search(near(v[0], rng)[None], 0.5)[0].name == "Ada"
        assert up.add("Ada", v).written == 0  # replaying the same enrolment writes nothing twice
    finally:
        up.close()


def test_spool_entries_are_whole_and_survive_a_failed_flush(tmp_path):
    from app.gallery.records import prepare

    spool = Spool(tmp_path)
    prep = prepare(unit(np.random.default_rng(2), 2), 512, ["a.jpg", "b.jpg"])
    spool.put("Ada", None, prep)
    spool.put("Alan", "alan", prep)
    assert not list(tmp_path.glob(".tmp-*"))
    entries = spool.entries()
    assert [(e.name, e.person_id) for e in entries] == [("Ada", None), ("Alan", "alan")]
    np.testing.assert_array_equal(entries[0].prepared.vectors, prep.vectors)
    assert entries[0].prepared.keys == prep.keys and entries[0].prepared.sources == ["a.jpg", "b.jpg"]

    def fail(entry):
        raise GalleryUnavailable("still down")

    with pytest.raises(GalleryUnavailable):
        spool.drain(fail)
    assert len(spool) == 2
    written = []
    assert spool.drain(written.append) == 2 and [e.name for e in written] == ["Ada", "Alan"]
    assert len(spool) == 0
