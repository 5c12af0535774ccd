"""The embedded gallery: one process per folder, background optimise, what lands on disk."""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest

from app.gallery import GalleryBusy, open_gallery
from app.gallery.edge import EdgeGallery
from tests.app.gallery import near, unit


def _hold(path: str, ready, release) -> None:
    g = EdgeGallery(path, "faces", 512)
    ready.set()
    release.wait(30)
    g.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_second_process_gets_gallery_busy_naming_the_holder(tmp_path):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(str(tmp_path), ready, release), daemon=True)
    child.start()
    try:
        assert ready.wait(60), "the holding process never opened the gallery"
        with pytest.raises(GalleryBusy) as err:
            EdgeGallery(tmp_path, "faces", 512)
        text = str(err.value)
        assert f"pid {child.pid}" in text and str(tmp_path / "faces") in text and "QDRANT_URL" in text
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0
    with EdgeGallery(tmp_path, "faces", 512) as g:  # free again once the holder has gone
        assert g.count() == 0


def test_a_second_open_in_the_same_process_is_refused_and_harmless(tmp_path):
    rng = np.random.default_rng(0)
    v = unit(rng, 3)
    g = EdgeGallery(tmp_path, "faces", 512)
    g.add("Ada", v)
    with pytest.raises(GalleryBusy, match=f"pid {os.getpid()}"):
        EdgeGallery(tmp_path, "faces", 512)
    # the refused opener never reached the engine: the open shard still writes, flushes and reopens
    g.add("Alan", unit(rng, 2))
    g.close()
    with EdgeGallery(tmp_path, "faces", 512) as again:
        assert again.count() == 5
        assert again.search(near(v[0], rng)[None], 0.5)[0].name == "Ada"


def test_lock_file_names_the_owner_and_is_released(tmp_path):
    g = EdgeGallery(tmp_path, "faces", 512)
    lock = tmp_path / "faces.lock"
    assert lock.read_text().strip() == str(os.getpid())
    g.close()
    g.close()  # closing twice is harmless
    assert lock.read_text() == ""
    EdgeGallery(tmp_path, "faces", 512).close()


def test_collections_are_separate_shard_folders(tmp_path):
    rng = np.random.default_rng(1)
    with EdgeGallery(tmp_path, "faces", 512) as a, EdgeGallery(tmp_path, "staff", 512) as b:
        a.add("Ada", unit(rng, 2))
        b.add("Alan", unit(rng, 1))
        assert (a.count(), b.count()) == (2, 1)
    assert (tmp_path / "faces" / "edge_config.json").is_file()
    assert (tmp_path / "staff" / "edge_config.json").is_file()


def test_bulk_enrolment_starts_a_background_optimise_and_search_still_works(tmp_path):
    rng = np.random.default_rng(2)
    g = EdgeGallery(tmp_path, "faces", 512, optimize_after=50)
    people = {f"P{i}": unit(rng, 5) for i in range(12)}
    for name, v in people.items():
        g.add(name, v)
    assert g._optimizer is not None  # 60 new points crossed optimize_after
    g._optimizer.join(60)
    assert not g._optimizer.is_alive()
    queries = np.stack([near(v[2], rng) for v in people.values()])
    assert [m.name for m in g.search(queries, 0.5)] == list(people)
    assert g.count() == 60
    g.close()


def test_open_gallery_without_url_is_the_embedded_engine(tmp_path):
    g = open_gallery(url=None, path=str(tmp_path), collection="faces", api_key=None, prefer_grpc=False)
    try:
        assert isinstance(g, EdgeGallery) and g.dim == 512
        assert g.folder == tmp_path / "faces"
    finally:
        g.close()
