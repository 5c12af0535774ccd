"""The embedded sightings take turns: a writer process and a reader share the folder, neither damages it."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from app.gallery import GalleryBusy
from app.gallery.sightings import Sighting
from app.gallery.sightings_edge import EdgeSightings
from tests.app.gallery import unit


def _write(root: str, n: int, started) -> None:
    store = EdgeSightings(root, "faces_sightings", f"{root}/snapshots")
    vectors = unit(np.random.default_rng(9), n)
    started.set()
    for i, v in enumerate(vectors):
        store.add(Sighting(stream=0, track_id=i, first_seen=float(i), last_seen=float(i) + 1, embedding=v),
                  b"\xff\xd8jpeg\xff\xd9")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_reader_searches_while_another_process_writes(tmp_path):
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    n = 60
    writer = ctx.Process(target=_write, args=(str(tmp_path), n, started), daemon=True)
    writer.start()
    reader = EdgeSightings(tmp_path, "faces_sightings", tmp_path / "snapshots")
    assert started.wait(60)
    counts = []
    while writer.is_alive():
        counts.append(reader.count())
        reader.search(unit(np.random.default_rng(0), 1)[0], limit=3)
    writer.join(60)
    assert writer.exitcode == 0
    assert counts == sorted(counts)  # each read saw a consistent, growing store
    assert reader.count() == n and len(list((tmp_path / "snapshots").glob("*.jpg"))) == n


def test_a_turn_held_too_long_is_one_clear_error(tmp_path):
    holder = EdgeSightings(tmp_path, "faces_sightings", tmp_path / "snapshots")
    other = EdgeSightings(tmp_path, "faces_sightings", tmp_path / "snapshots", wait_s=0.2)
    v = unit(np.random.default_rng(1), 1)[0]
    with holder.hold():
        holder.add(Sighting(stream=0, track_id=1, first_seen=0.0, last_seen=1.0, embedding=v))
        t0 = time.monotonic()
        with pytest.raises(GalleryBusy, match="stayed busy for 0.2 s"):
            other.count()
        assert time.monotonic() - t0 < 2.0
    assert other.count() == 1  # the turn is free again, the write is there
