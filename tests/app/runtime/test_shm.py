"""Frame ring and record queue: seqlock correctness, exact drop counts, lossless blocking mode across processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.runtime.queue import RecordQueue
from app.runtime.record import encoded_size
from app.runtime.ring import FrameRing
from tests.app.runtime.helpers import copy_frame, end, is_end, rec

SPAWN = mp.get_context("spawn")


def leftovers(pid: int | None = None) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"fs_{pid or os.getpid()}_*"))


# -- frame ring --------------------------------------------------------------------------------------------

def test_ring_view_is_invalidated_when_the_writer_overwrites_the_slot():
    with FrameRing.create(slots=3, height=4, width=6) as ring:
        frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
        assert ring.write(frame, seq=0, ts=123.5, stream=2, index=7) == 0
        view = ring.view(0)
        assert np.array_equal(view, frame) and ring.still_valid(0)
        ring.write(frame + 1, seq=1, ts=0.0)
        ring.write(frame + 2, seq=2, ts=0.0)
        assert ring.still_valid(0)  # other slots do not disturb it
        ring.write(frame + 3, seq=3, ts=0.0)  # slot 0 again
        assert not ring.still_valid(0)
        assert ring.view(0) is None and copy_frame(ring, 0) is None
        assert np.array_equal(copy_frame(ring, 3), frame + 3)


def test_ring_smaller_frames_and_attach_by_name():
    with FrameRing.create(slots=2, height=8, width=8) as ring:
        small = np.full((3, 5, 3), 9, np.uint8)
        ring.write(small, seq=10, ts=1.0)
        other = FrameRing.attach(ring.name)  # geometry read back from the segment
        try:
            assert other.spec == ring.spec
            assert np.array_equal(copy_frame(other, 10), small)
        finally:
            other.close()
        with pytest.raises(ValueError, match="does not fit"):
            ring.write(np.zeros((9, 8, 3), np.uint8), seq=11, ts=0.0)
        with pytest.raises(ValueError, match="uint8"):
            ring.write(np.zeros((8, 8, 3), np.float32), seq=11, ts=0.0)
    assert leftovers() == []


def test_a_ring_with_more_slots_than_one_header_page_holds_keeps_each_frame_apart():
    """Every-frame mode with batching needs 60+ slots; the slot headers then take a second page."""
    with FrameRing.create(slots=100, height=4, width=4) as ring:
        assert ring.spec.header_bytes == 8192
        for seq in range(100):
            ring.write(np.full((4, 4, 3), seq, np.uint8), seq=seq, ts=float(seq))
        other = FrameRing.attach(ring.name)
        try:
            assert [int(copy_frame(other, seq)[0, 0, 0]) for seq in range(100)] == list(range(100))
        finally:
            other.close()
        with pytest.raises(ValueError, match="1..1024 slots"):
            FrameRing.create(slots=1025, height=4, width=4)
    assert leftovers() == []


def _hammer(spec, seconds: float, ready, latest) -> None:
    ring = FrameRing.attach(spec)
    frame = np.empty((spec.height, spec.width, 3), np.uint8)
    seq = 0
    ready.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame.fill(seq % 251)
        ring.write(frame, seq, time.time(), stream=seq % 3)
        latest.value = seq
        seq += 1
    ring.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_seqlock_reader_never_sees_pixels_that_disagree_with_the_header():
    ring = FrameRing.create(slots=3, height=240, width=320)
    ready, written = SPAWN.Event(), SPAWN.Value("q", -1, lock=False)
    writer = SPAWN.Process(target=_hammer, args=(ring.spec, 3.0, ready, written))
    writer.start()
    try:
        assert ready.wait(30)
        good = rejected = 0
        out = np.empty((240, 320, 3), np.uint8)
        while writer.is_alive():
            latest = written.value
            for seq in (latest, latest - 2):  # the newest, and the one the writer is about to overwrite
                if seq < 0:
                    continue
                view = ring.view(seq)
                if view is not None:
                    lo, hi = int(view.min()), int(view.max())
                    if ring.still_valid(seq):
                        assert lo == hi == seq % 251, f"torn frame {seq}: pixels {lo}..{hi}"
                        good += 1
                    else:
                        rejected += 1
                copied = copy_frame(ring, seq, out=out)
                if copied is None:
                    rejected += 1
                else:
                    assert copied.min() == copied.max() == seq % 251
                    good += 1
        writer.join(10)
        assert writer.exitcode == 0
        assert good > 50
        assert rejected > 0  # the race was really exercised
    finally:
        if writer.is_alive():
            writer.kill()
        ring.close()
    assert leftovers() == []


# -- records -----------------------------------------------------------------------------------------------

def test_records_round_trip_every_field_its_dtype_shape_and_the_header():
    rng = np.random.default_rng(0)
    arrays = {
        "boxes": rng.random((7, 4), dtype=np.float32),
        "scores": np.zeros(0, np.float32),
        "landmarks": rng.random((7, 5, 2)).astype(np.float16),
        "crops": rng.integers(0, 255, (3, 112, 112, 3), dtype=np.uint8),
        "track_ids": np.array([-1, 5, 2**40], np.int64),
        "query": np.arange(20, dtype=np.int32)[::3],
        "embeddings": np.float64(2.5),
        "similarities": np.arange(4, dtype=">u2"),
    }
    texts = {"names": ["ada", "unknown"], "person_ids": ["p1", ""], "nearest": ["", "bob"]}
    sent = rec(seq=42, ts=1234.25, stream=3, index=99, scene=4, removed=[7, 2**40], **arrays, **texts)
    with RecordQueue.create(capacity=2, slot_bytes=encoded_size(sent)) as q:
        assert q.put(sent)
        got = q.get(timeout=1)
    assert got.frame == sent.frame and not is_end(got)
    assert (got.names, got.person_ids, got.nearest, got.removed) == (*texts.values(), [7, 2**40])
    for name, value in arrays.items():
        value = np.asarray(value)
        assert getattr(got, name).dtype == value.dtype and getattr(got, name).shape == value.shape, name
        assert np.array_equal(getattr(got, name), value), name


def test_an_end_of_stream_carries_its_header():
    with RecordQueue.create(capacity=2, slot_bytes=512) as q:
        q.put(end(seq=5, ts=5.0, stream=7))
        got = q.get(timeout=1)
    assert is_end(got) and (got.frame.seq, got.frame.ts, got.frame.stream) == (5, 5.0, 7)


def test_records_that_cannot_travel_are_refused():
    with RecordQueue.create(capacity=2, slot_bytes=1024) as q:
        with pytest.raises(ValueError, match="slot_bytes"):
            q.put(rec(crops=np.zeros(1024, np.uint8)))
        with pytest.raises(TypeError, match="object"):
            q.put(rec(track_ids=np.array([{}, 1], dtype=object)))
        assert q.qsize() == 0
        q.put(end())
        assert is_end(q.get(timeout=1))


def test_drop_oldest_counts_every_drop_and_keeps_the_newest():
    with RecordQueue.create(capacity=4, slot_bytes=512, policy="drop_oldest") as q:
        for seq in range(10):
            assert q.put(rec(seq=seq, track_ids=np.array([seq])))
        assert (q.qsize(), q.drops) == (4, 6)
        assert [q.get(timeout=1).frame.seq for _ in range(2)] == [6, 7]
        for seq in (10, 11):
            q.put(rec(seq=seq))
        assert q.drops == 6  # room was made by the reads: nothing more dropped
        q.put(rec(seq=12))
        assert q.drops == 7
        got = [q.get(timeout=1) for _ in range(4)]
        assert [r.frame.seq for r in got] == [9, 10, 11, 12] and got[0].track_ids[0] == 9
        assert q.get(timeout=0.01) is None


def test_block_mode_put_times_out_when_full_and_get_when_empty():
    with RecordQueue.create(capacity=2, slot_bytes=512, policy="block") as q:
        assert q.get(timeout=0.05) is None
        assert q.put(rec(seq=0)) and q.put(rec(seq=1))
        t0 = time.monotonic()
        assert not q.put(rec(seq=2), timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 2.0
        assert q.drops == 0 and q.qsize() == 2
        # a blocked put proceeds as soon as a consumer makes room
        threading.Timer(0.2, q.get).start()
        assert q.put(rec(seq=2), timeout=5)
        assert [q.get(timeout=1).frame.seq for _ in range(2)] == [1, 2]


def _payload(seq: int) -> dict:
    n = seq % 7
    return {"boxes": np.full((n, 4), seq, np.float32),
            "embeddings": np.arange(n * 8, dtype=np.float32).reshape(n, 8) + seq,
            "track_ids": np.arange(n, dtype=np.int64) * seq, "names": [str(seq)]}


def _check_consumer(inbox_spec, reply_spec) -> None:
    inbox, reply = RecordQueue.attach(inbox_spec), RecordQueue.attach(reply_spec)
    seqs, bad = [], []
    while True:
        r = inbox.get(timeout=30)
        if r is None or is_end(r):
            break
        seqs.append(r.frame.seq)
        want = _payload(r.frame.seq)
        if r.names != want.pop("names") or r.crops is not None or not all(
                getattr(r, k).dtype == v.dtype and np.array_equal(getattr(r, k), v) for k, v in want.items()):
            bad.append(r.frame.seq)
    reply.put(rec(track_ids=np.array(seqs, np.int64), query=np.array(bad, np.int64)))
    inbox.close()
    reply.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_block_mode_loses_nothing_across_processes():
    inbox = RecordQueue.create(capacity=8, slot_bytes=4096, policy="block")
    reply = RecordQueue.create(capacity=1, slot_bytes=1 << 16)
    consumer = SPAWN.Process(target=_check_consumer, args=(inbox.spec, reply.spec))
    consumer.start()
    try:
        for seq in range(1000):
            assert inbox.put(rec(seq=seq, ts=time.time(), **_payload(seq)), timeout=30)
        inbox.put(end(), timeout=30)
        summary = reply.get(timeout=60)
        consumer.join(30)
        assert summary is not None and consumer.exitcode == 0
        assert summary.track_ids.tolist() == list(range(1000))
        assert summary.query.tolist() == []
        assert inbox.drops == 0
    finally:
        if consumer.is_alive():
            consumer.kill()
        inbox.close()
        reply.close()
    assert leftovers() == []


def _producer(spec, stream: int, n: int) -> None:
    q = RecordQueue.attach(spec)
    for i in range(n):
        q.put(rec(seq=i, stream=stream, track_ids=np.array([stream, i])))
    q.put(end(stream=stream))
    q.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_several_producers_share_one_queue_in_order_per_producer():
    q = RecordQueue.create(capacity=4, slot_bytes=1024, policy="block")
    procs = [SPAWN.Process(target=_producer, args=(q.spec, s, 300)) for s in (1, 2)]
    for p in procs:
        p.start()
    try:
        got: dict[int, list[int]] = {1: [], 2: []}
        ends = 0
        while ends < 2:
            r = q.get(timeout=30)
            assert r is not None
            if is_end(r):
                ends += 1
                continue
            assert r.track_ids.tolist() == [r.frame.stream, r.frame.seq]
            got[r.frame.stream].append(r.frame.seq)
        assert got == {1: list(range(300)), 2: list(range(300))}
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        q.close()


# -- throughput (printed; run with -s to see) ---------------------------------------------------------------

def _echo_frames(ring_spec, inbox_spec, reply_spec) -> None:
    ring, inbox, reply = FrameRing.attach(ring_spec), RecordQueue.attach(inbox_spec), RecordQueue.attach(reply_spec)
    n = stale = 0
    while True:
        r = inbox.get(timeout=30)
        if r is None or is_end(r):
            break
        if r.frame.index:  # a frame's record: its pixels are looked up
            view = ring.view(r.frame.seq)
            if view is None or not ring.still_valid(r.frame.seq):
                stale += 1
        n += 1
    reply.put(rec(track_ids=np.array([n, stale])))
    for seg in (ring, inbox, reply):
        seg.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_throughput_of_a_spawned_pair():
    ring = FrameRing.create(slots=8, height=1080, width=1920)
    inbox = RecordQueue.create(capacity=64, slot_bytes=1 << 16, policy="block")
    reply = RecordQueue.create(capacity=1, slot_bytes=4096)
    peer = SPAWN.Process(target=_echo_frames, args=(ring.spec, inbox.spec, reply.spec))
    peer.start()
    try:
        small = {"boxes": np.zeros((8, 4), np.float32), "landmarks": np.zeros((8, 5, 2), np.float32),
                 "embeddings": np.zeros((2, 512), np.float32)}  # ~4.5 KB
        inbox.put(rec(seq=-1), timeout=60)  # wait for the peer to be up
        n_rec = 20000
        t0 = time.perf_counter()
        for i in range(n_rec):
            inbox.put(rec(seq=i, **small), timeout=30)
        records_s = n_rec / (time.perf_counter() - t0)
        frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
        n_frames = 300
        t0 = time.perf_counter()
        for i in range(n_frames):
            ring.write(frame, i, time.time())
            inbox.put(rec(seq=i, index=1), timeout=30)
        frames_s = n_frames / (time.perf_counter() - t0)
        inbox.put(end(), timeout=30)
        summary = reply.get(timeout=60)
        peer.join(30)
        print(f"\nrecords (~4.5 KB) through a spawned pair: {records_s:,.0f}/s; "
              f"1080p frames written + announced: {frames_s:,.0f}/s; stale at reader: {summary.track_ids[1]}")
        assert summary.track_ids[0] == n_rec + n_frames + 1
        assert records_s > 2000 and frames_s > 30
    finally:
        if peer.is_alive():
            peer.kill()
        for seg in (ring, inbox, reply):
            seg.close()
