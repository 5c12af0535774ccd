"""A ``drop_oldest`` producer may overwrite the slot a consumer is still reading: the consumer must notice.

A consumer takes a record (tail moves past it under the inner lock) and copies it out afterwards; a producer that
puts twice into the full queue meanwhile drops the oldest records and wraps round onto that very slot. The
deterministic tests stop a consumer thread at a chosen point between taking and returning a record (right after
the take, at the call of ``_decode``, in the middle of copying an array out), let the producer overwrite the slot
and check that the consumer returns only intact records, in order, each once, with every record it lost counted
in ``drops``. End-of-stream records are never lost; a producer killed while overwriting the slot never yields a
torn record; and a stress test runs real processes flat out against a consumer slowed down inside its reads.
"""

from __future__ import annotations

import linecache
import multiprocessing as mp
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import pytest

from app.runtime import queue, record
from app.runtime.queue import RecordQueue
from app.types import Faces, FrameRef
from tests.app.runtime.helpers import end, is_end
from tests.app.runtime.test_shm_recovery import _fork_and_stop, drain, intact, leftovers, rec

SPAWN = mp.get_context("spawn")


class PausedGet:
    """``q.get()`` in a thread that stops at ``where`` and waits there until ``resume()``:

    ``taken``: right after the critical section in which it took a record (the inner lock is released);
    ``decoding``: at the call of the queue's ``_decode``; ``copying``: at the first line of ``record.decode`` that
    copies an array out of the slot (its header, descriptor and text have been read).
    """

    def __init__(self, q: RecordQueue, where: str) -> None:
        self.q, self.where = q, where
        self.reached, self.go = threading.Event(), threading.Event()
        self.result: list = []
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._unlock = q._unlock

    def _stop_here(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            self.go.wait(20)

    def _tracer(self, frame, event, arg):
        code = frame.f_code
        if self.where == "decoding":
            if code.co_filename == queue.__file__ and code.co_name == "_decode":
                self._stop_here()
            return None
        return self._line if code.co_filename == record.__file__ and code.co_name == "decode" else None

    def _line(self, frame, event, arg):
        if event == "line" and "buffer=buf" in linecache.getline(frame.f_code.co_filename, frame.f_lineno):
            self._stop_here()
        return self._line

    def _run(self) -> None:
        try:
            if self.where == "taken":
                unlock = self._unlock

                def unlock_then_stop(m):
                    rc = unlock(m)
                    if threading.current_thread() is self.thread:
                        self._stop_here()
                    return rc

                self.q._unlock = unlock_then_stop
            else:
                sys.settrace(self._tracer)
            self.result.append(self.q.get(timeout=10))
        except BaseException as exc:  # reported by resume()
            self.error.append(exc)
        finally:
            sys.settrace(None)
            self.reached.set()

    def start(self) -> PausedGet:
        self.thread.start()
        assert self.reached.wait(10), "the consumer did not get there"
        assert not self.result and not self.error, f"the consumer never stopped at {self.where}: {self.error}"
        return self

    def resume(self) -> Faces | None:
        self.go.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the consumer is stuck"
        self.q._unlock = self._unlock
        if self.error:
            raise self.error[0]
        return self.result[0]


def in_order_and_intact(got: list[Faces]) -> None:
    seqs = [r.frame.seq for r in got]
    assert all(map(intact, got)), f"torn record among {seqs}"
    assert all(a < b for a, b in zip(seqs, seqs[1:])), f"not strictly increasing: {seqs}"


# -- deterministic: the consumer stopped between taking a record and returning it ------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("more", [1, 2, 3, 5])
@pytest.mark.parametrize("where", ["taken", "decoding", "copying"])
def test_a_record_overwritten_while_its_consumer_reads_it_is_dropped_never_delivered(where, more):
    """Capacity 2 (3 slots): records 0, 1 queued; the consumer takes 0 and stops; ``more`` puts follow. From the
    second on (record 3) the producer writes into record 0's slot: 0 is then lost, and counted, not replaced by
    3 (delivered twice) or by a mix of 0's header and 3's data."""
    with RecordQueue.create(capacity=2, slot_bytes=1024, policy="drop_oldest") as q:
        q.put(rec(0))
        q.put(rec(1))
        consumer = PausedGet(q, where).start()
        for seq in range(2, 2 + more):
            assert q.put(rec(seq))
        first = consumer.resume()
        assert first is not None
        got = [first, *drain(q)]
        in_order_and_intact(got)
        want = [0, 1, 2] if more == 1 else [more, more + 1]  # record 0 survives only if its slot was not reused
        assert [r.frame.seq for r in got] == want
        assert q.drops == 2 + more - len(got)  # every record put is delivered or counted as dropped
        assert q.overwritten == (0 if more == 1 else 1) and q.qsize() == 0


@pytest.mark.timeout(30)
def test_an_end_taken_by_the_consumer_survives_the_overwrite_of_its_slot():
    """Two producers on one queue: one has ended, the other goes on; its puts must not cost the consumer the
    end-of-stream it has already taken (the stage would wait for it for ever)."""
    with RecordQueue.create(capacity=2, slot_bytes=1024, policy="drop_oldest") as q:
        q.put(end(seq=5, ts=5.0, stream=7))
        q.put(rec(1))
        consumer = PausedGet(q, "taken").start()
        q.put(rec(2))
        q.put(rec(3))  # into the end's slot
        first = consumer.resume()
        assert first is not None and is_end(first)
        assert (first.frame.seq, first.frame.ts, first.frame.stream) == (5, 5.0, 7)
        got = drain(q)
        in_order_and_intact(got)
        assert [r.frame.seq for r in got] == [2, 3] and q.drops == 1


@pytest.mark.timeout(30)
def test_an_end_at_the_head_of_a_full_drop_oldest_queue_is_never_dropped():
    with RecordQueue.create(capacity=2, slot_bytes=1024, policy="drop_oldest") as q:
        q.put(rec(0))
        q.put(end(stream=1))
        q.put(rec(2))  # drops record 0
        assert q.drops == 1
        q.put(rec(3))  # the oldest is the end: it is set aside, not dropped
        q.put(rec(4))  # drops record 2
        assert q.drops == 2 and q.qsize() == 3  # the end set aside still counts as queued
        got = drain(q)
        assert is_end(got[0])  # first: everything older than it is gone
        in_order_and_intact(got[1:])
        assert [r.frame.seq for r in got[1:]] == [3, 4] and q.qsize() == 0 and q.drops == 2
        q.put(end())
        assert is_end(q.get(timeout=1)) and q.get(timeout=0) is None


@pytest.mark.timeout(30)
def test_block_queues_keep_every_record_a_paused_consumer_holds():
    """In a block queue the producer can never reach the slot being read: nothing is lost, nothing counted."""
    with RecordQueue.create(capacity=2, slot_bytes=1024, policy="block") as q:
        q.put(rec(0))
        q.put(rec(1))
        consumer = PausedGet(q, "copying").start()
        assert q.put(rec(2), timeout=1)
        assert not q.put(rec(3), timeout=0.05)  # full: waits (the slot being read is not free)
        first = consumer.resume()
        got = [first, *drain(q)]
        in_order_and_intact(got)
        assert [r.frame.seq for r in got] == [0, 1, 2] and q.drops == 0 and q.overwritten == 0


# -- a producer killed while it overwrites the slot being read ------------------------------------------------

def _free_put_lock(q: RecordQueue) -> None:
    """The killed producer may hold the put lock (the get lock is the paused consumer's: left alone)."""
    lock = q.spec.put_lock
    if lock.acquire(False):
        lock.release()
    else:
        lock.release()


@pytest.mark.skipif(queue._MUTEX is None or not hasattr(os, "fork"), reason="needs a robust mutex and fork")
@pytest.mark.timeout(120)
def test_a_producer_killed_at_every_line_of_an_overwrite_never_hands_the_reader_a_torn_record():
    """The consumer stops in the middle of copying record 0 out; record 2 is put; a forked producer runs
    ``put(3)`` (which drops 1 and writes into 0's slot) and is SIGKILLed before each line it executes in turn."""

    def setup() -> tuple[RecordQueue, PausedGet]:
        q = RecordQueue.create(capacity=2, slot_bytes=1024, policy="drop_oldest")
        q.put(rec(0))
        q.put(rec(1))
        consumer = PausedGet(q, "copying").start()
        q.put(rec(2))
        return q, consumer

    q, consumer = setup()
    pid, msg = _fork_and_stop(q, lambda q: q.put(rec(3)), stop_at=0)  # a full run, counting the lines
    os.waitpid(pid, 0)
    consumer.resume()
    q.close()
    assert msg.startswith("done"), msg
    n_lines = int(msg.split()[1])
    assert n_lines > 10
    outcomes = {
        ((0, 1, 2), 0),  # killed before the drop
        ((0, 2), 1),  # after the drop (journaled: finished by whoever takes the lock next), before the write
        ((2,), 2),  # while writing into 0's slot, or before committing 3: 0 lost and counted, 3 never happened
        ((2, 3), 2),  # after committing 3
    }
    seen = set()
    for stop_at in range(1, n_lines + 1):
        q, consumer = setup()
        try:
            pid, msg = _fork_and_stop(q, lambda q: q.put(rec(3)), stop_at)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            assert msg == "stopped", f"line {stop_at}: {msg}"
            _free_put_lock(q)
            first = consumer.resume()
            got = ([] if first is None else [first]) + drain(q)
            in_order_and_intact(got)
            outcome = (tuple(r.frame.seq for r in got), q.drops)
            assert outcome in outcomes, f"line {stop_at}: the consumer got {outcome}"
            seen.add(outcome)
            assert q.put(rec(9), timeout=1) and q.get(timeout=1).frame.seq == 9 and q.qsize() == 0
        finally:
            q.close()
    assert seen == outcomes  # the kills landed before, during and after the overwrite
    assert leftovers() == []


# -- stress: real producers flat out, a consumer slowed down inside its reads ----------------------------------

def payload(stream: int, seq: int) -> np.ndarray:
    n = (seq * 7919 + stream * 104729) % 3000 + 1
    return np.arange(n, dtype=np.int64) * 3 + seq * 1_000_003 + stream


def _produce(spec, stream: int, n: int, ready) -> None:
    q = RecordQueue.attach(spec)
    ready.wait(30)
    for seq in range(n):
        q.put(Faces(track_ids=payload(stream, seq), names=[f"{stream}:{seq}"], frame=FrameRef(seq, float(seq), stream)))
    q.put(end(stream=stream))
    q.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fast_producers_and_a_slow_consumer_only_ever_deliver_intact_records_in_order():
    n, streams = 10000, (1, 2)
    q = RecordQueue.create(capacity=2, slot_bytes=32 * 1024, policy="drop_oldest")
    ready = SPAWN.Event()
    procs = [SPAWN.Process(target=_produce, args=(q.spec, s, n, ready), daemon=True) for s in streams]
    rng = random.Random(11)

    def slow_reads(frame, event, arg):  # now and then the consumer is held up in the middle of a read
        if frame.f_code.co_filename == record.__file__ and frame.f_code.co_name == "decode":
            return slow_lines
        return None

    def slow_lines(frame, event, arg):
        if event == "line" and rng.random() < 0.02:
            time.sleep(0.0005)
        return slow_lines

    for p in procs:
        p.start()
    got: dict[int, list[int]] = {s: [] for s in streams}
    ends, bad = [], []
    try:
        ready.set()
        deadline = time.monotonic() + 60
        sys.settrace(slow_reads)
        try:
            while len(ends) < len(streams) and time.monotonic() < deadline:
                r = q.get(timeout=5)
                if r is None:
                    break
                if is_end(r):
                    ends.append(r)
                    continue
                f = r.frame
                if not (f.stream in got and r.names == [f"{f.stream}:{f.seq}"] and f.ts == float(f.seq)
                        and np.array_equal(r.track_ids, payload(f.stream, f.seq))):
                    bad.append((f.stream, f.seq))
                    continue
                got[f.stream].append(f.seq)
        finally:
            sys.settrace(None)
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0, 0]
        assert bad == [], f"torn or foreign records: {bad[:10]}"
        assert len(ends) == len(streams), "an end-of-stream was lost"
        for s in streams:
            assert all(a < b for a, b in zip(got[s], got[s][1:])), f"stream {s}: out of order or repeated"
        delivered = sum(map(len, got.values()))
        assert q.get(timeout=0) is None
        assert delivered + q.drops == n * len(streams)  # each record delivered once or counted as dropped
        assert q.overwritten > 0, "the slow reads never met an overwrite: the test did not test anything"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        q.close()
    assert leftovers() == []
