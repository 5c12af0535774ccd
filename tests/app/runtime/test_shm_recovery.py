"""A process killed while it holds a record queue's inner lock must not take its peers down.

The headline tests spawn a real peer and SIGKILL it; the crash-point matrix forks a peer that runs a real
put / get under a line tracer, stops it before each line of the queue's code (``app/runtime/queue.py``,
``record.py``, ``mutex.py``) the operation executes in
turn, SIGKILLs it there and checks what the survivor sees: bounded recovery, FIFO, no torn record, exact drops.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import select
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.runtime import mutex, queue, record
from app.runtime.queue import QueueBroken, RecordQueue
from app.types import Faces, FrameRef
from tests.app.runtime.helpers import end, is_end

SPAWN = mp.get_context("spawn")
RECOVERY_BOUND = 3.0  # seconds from the kill until the survivor's put/get has gone through

pytestmark = pytest.mark.skipif(queue._MUTEX is None, reason="no robust pthread mutex on this platform")


def leftovers() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"fs_{os.getpid()}_*"))


#: the files of the queue's code: a line traced in any of them is a crash point
QUEUE_FILES = {queue.__file__, record.__file__, mutex.__file__}


def rec(seq: int) -> Faces:
    """A record whose every part says ``seq``: a torn one (header of one record, data of another) shows."""
    return Faces(track_ids=np.full(16 + seq % 50, seq, np.int64), names=[str(seq)], frame=FrameRef(seq, float(seq)))


def intact(r: Faces) -> bool:
    v, seq = r.track_ids, r.frame.seq
    return (r.names == [str(seq)] and r.frame.ts == float(seq) and v is not None and v.shape == (16 + seq % 50,)
            and bool((v == seq).all()))


def drain(q: RecordQueue) -> list:
    got = []
    while (r := q.get(timeout=0)) is not None:
        got.append(r)
    return got


def free_outer_locks(q: RecordQueue) -> None:
    """What ``free_orphaned_locks`` does for a restarted stage: the dead peer may hold the put / get lock."""
    for lock in (q.spec.put_lock, q.spec.get_lock):
        if lock.acquire(False):
            lock.release()
        else:
            lock.release()


def _hold_inner_lock(spec, ready) -> None:
    q = RecordQueue.attach(spec)
    q._acquire()  # the short critical section's lock, taken and never released
    ready.set()
    time.sleep(60)


def _spawn_holder(q: RecordQueue):
    ready = SPAWN.Event()
    p = SPAWN.Process(target=_hold_inner_lock, args=(q.spec, ready), daemon=True)
    p.start()
    assert ready.wait(30), "the holder did not start"
    return p


# -- a real spawned peer, SIGKILLed --------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_peer_killed_holding_the_inner_lock_is_recovered_by_a_waiting_consumer():
    q = RecordQueue.create(capacity=4, slot_bytes=1024, policy="block")
    holder = None
    try:
        for seq in range(3):
            assert q.put(rec(seq))
        holder = _spawn_holder(q)
        killed_at = []

        def kill() -> None:
            killed_at.append(time.monotonic())
            os.kill(holder.pid, signal.SIGKILL)

        threading.Timer(0.3, kill).start()  # while the get below is blocked on the lock
        first = q.get(timeout=10)
        waited = time.monotonic() - killed_at[0]
        holder.join(10)
        assert holder.exitcode == -signal.SIGKILL
        assert first is not None and waited < RECOVERY_BOUND, f"recovered {waited:.2f} s after the kill"
        assert q.recoveries == 1
        assert q.put(rec(3), timeout=1) and q.put(rec(4), timeout=1)
        got = [first, *drain(q)]
        assert [r.frame.seq for r in got] == [0, 1, 2, 3, 4] and all(map(intact, got))
        assert q.qsize() == 0 and q.drops == 0
    finally:
        if holder is not None and holder.is_alive():
            holder.kill()
        q.close()
    assert leftovers() == []


@pytest.mark.timeout(60)
def test_a_live_holder_still_breaks_the_queue_after_the_timeout(monkeypatch):
    monkeypatch.setattr(queue, "_LOCK_TIMEOUT", 0.5)
    q = RecordQueue.create(capacity=2, slot_bytes=1024, policy="drop_oldest")
    holder = None
    try:
        assert q.put(rec(0))
        holder = _spawn_holder(q)
        t0 = time.monotonic()
        with pytest.raises(QueueBroken, match=f"held for 0.5 s by live process {holder.pid}"):
            q.put(rec(1))
        assert 0.4 < time.monotonic() - t0 < 3.0
        assert q.recoveries == 0
        # once that process is gone, the same queue recovers at the next put
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        t0 = time.monotonic()
        assert q.put(rec(1))
        assert time.monotonic() - t0 < RECOVERY_BOUND and q.recoveries == 1
        got = drain(q)
        assert [r.frame.seq for r in got] == [0, 1] and all(map(intact, got)) and q.drops == 0
    finally:
        if holder is not None and holder.is_alive():
            holder.kill()
        q.close()
    assert leftovers() == []


# -- every crash point of a real put / get ---------------------------------------------------------------------

def _run_stopping_at_line(q: RecordQueue, op, stop_at: int, w: int) -> None:
    """(In a forked child.) Run ``op(q)``; before the ``stop_at``-th line of the queue's code it executes, report
    and hang."""
    lines = 0

    def local(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
            if lines == stop_at:
                os.write(w, b"stopped")
                time.sleep(60)
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename in QUEUE_FILES else None)
    op(q)
    sys.settrace(None)
    os.write(w, f"done {lines}".encode())


def _fork_and_stop(q: RecordQueue, op, stop_at: int) -> tuple[int, str]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(r)
            _run_stopping_at_line(q, op, stop_at, w)
        finally:
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 20)
        msg = os.read(r, 64).decode() if ready else "no answer"
    finally:
        os.close(r)
    return pid, msg


# scenario: policy, records queued before, what the killed peer was doing, outcomes allowed (seqs the survivor
# then gets, drops) and the outcomes a complete matrix must have produced
SCENARIOS = {
    "put into a full drop_oldest queue": (
        "drop_oldest", [0, 1], lambda q: q.put(rec(2)),
        {((0, 1), 0), ((1,), 1), ((1, 2), 1)}),
    "put into a block queue": (
        "block", [0], lambda q: q.put(rec(1)),
        {((0,), 0), ((0, 1), 0)}),
    "get": (
        "block", [0, 1], lambda q: q.get(timeout=1),
        {((0, 1), 0), ((1,), 0)}),
    # an end-of-stream is never dropped (set aside, handed out first) nor duplicated, wherever the kill lands
    "put into a full drop_oldest queue whose oldest is an end": (
        "drop_oldest", ["end", 1], lambda q: q.put(rec(2)),
        {(("end", 1), 0), (("end", 1, 2), 0)}),
    # ... and a drop_oldest consumer copies an end out while it holds the lock
    "get an end from a drop_oldest queue": (
        "drop_oldest", ["end", 1], lambda q: q.get(timeout=1),
        {(("end", 1), 0), ((1,), 0)}),
}


def _fresh_queue(policy: str, queued: list[int]) -> RecordQueue:
    q = RecordQueue.create(capacity=2, slot_bytes=1024, policy=policy)
    for seq in (100, 101, 102):  # every slot holds an old, intact record: a half-overwritten one would show
        q.put(rec(seq))
        q.get()
    for seq in queued:
        q.put(end() if seq == "end" else rec(seq))
    return q


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_peer_killed_at_every_line_of_an_operation_leaves_a_consistent_queue(scenario):
    policy, queued, op, outcomes = SCENARIOS[scenario]
    q = _fresh_queue(policy, queued)
    pid, msg = _fork_and_stop(q, op, stop_at=0)  # a full run, counting the lines
    os.waitpid(pid, 0)
    q.close()
    assert msg.startswith("done"), msg
    n_lines = int(msg.split()[1])
    assert n_lines > 10
    seen, recovered, slowest = set(), 0, 0.0
    for stop_at in range(1, n_lines + 1):
        q = _fresh_queue(policy, queued)
        try:
            pid, msg = _fork_and_stop(q, op, stop_at)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            assert msg == "stopped", f"line {stop_at}: {msg}"
            free_outer_locks(q)
            t0 = time.monotonic()
            got = drain(q)
            slowest = max(slowest, time.monotonic() - t0)
            outcome = (tuple("end" if is_end(r) else r.frame.seq for r in got), q.drops)
            assert all(intact(r) for r in got if not is_end(r)), f"line {stop_at}: torn record in {outcome}"
            assert outcome in outcomes, f"line {stop_at}: the survivor got {outcome}"
            seen.add(outcome)
            recovered += q.recoveries
            assert q.put(rec(9), timeout=1) and q.get(timeout=1).frame.seq == 9 and q.qsize() == 0
        finally:
            q.close()
    assert seen == outcomes  # the kills landed before, inside and after every phase of the operation
    assert recovered >= 3  # ... and several of them inside the inner lock
    assert slowest < RECOVERY_BOUND
    assert leftovers() == []


def test_recovery_finishes_a_journaled_drop_and_ignores_an_unmarked_one():
    """The journal rule on its own: a drop whose journal is marked valid is completed, one that is not never
    happened. (A holder that dies is simulated by a thread that exits with the lock: same robust-mutex path.)"""
    for mark, want in ((1, ([1], 1)), (0, ([0, 1], 0))):
        with RecordQueue.create(capacity=2, slot_bytes=1024, policy="drop_oldest") as q:
            q.put(rec(0))
            q.put(rec(1))

            def die_mid_drop(q=q, mark=mark) -> None:
                q._acquire()
                q._h[queue._Q_J_TAIL], q._h[queue._Q_J_DROPS] = 1, 1
                q._h[queue._Q_JOURNAL] = mark

            t = threading.Thread(target=die_mid_drop)
            t.start()
            t.join(5)
            got = drain(q)
            assert ([r.frame.seq for r in got], q.drops) == want and q.recoveries == 1


@pytest.mark.timeout(30)
def test_without_a_robust_mutex_the_queue_falls_back_to_a_multiprocessing_lock(monkeypatch):
    monkeypatch.setattr(queue, "_MUTEX", None)
    monkeypatch.setattr(queue, "_LOCK_TIMEOUT", 0.2)
    with RecordQueue.create(capacity=2, slot_bytes=1024, policy="drop_oldest") as q:
        assert q.spec.lock is not None
        for seq in range(3):
            assert q.put(rec(seq))
        assert [r.frame.seq for r in drain(q)] == [1, 2] and q.drops == 1
        assert q.spec.lock.acquire(False)  # a holder that never lets go: no way to tell it died
        with pytest.raises(QueueBroken, match="held for 0.2 s"):
            q.put(rec(3))
        q.spec.lock.release()
        assert q.put(rec(3)) and q.get(timeout=1).frame.seq == 3


# -- a producer killed again and again at random moments -------------------------------------------------------

def _produce_forever(spec, base: int) -> None:
    q = RecordQueue.attach(spec)
    rng = np.random.default_rng(base)
    seq = base
    while True:
        n = int(rng.integers(1, 6000))
        q.put(Faces(track_ids=np.full(n, seq, np.int64), names=[str(seq), str(n)], frame=FrameRef(seq)))
        seq += 1


@pytest.mark.slow
@pytest.mark.timeout(180)
def whole(r: Faces) -> bool:
    return r.names == [str(r.frame.seq), str(r.track_ids.size)] and bool((r.track_ids == r.frame.seq).all())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_producer_killed_at_random_moments_never_costs_more_than_its_record_in_flight():
    q = RecordQueue.create(capacity=4, slot_bytes=64 * 1024, policy="block")
    rng = random.Random(7)
    rounds, total = 6, 0
    try:
        for rnd in range(rounds):
            base = (rnd + 1) * 1_000_000
            p = SPAWN.Process(target=_produce_forever, args=(q.spec, base), daemon=True)
            p.start()
            seqs = []
            first = q.get(timeout=60)
            assert first is not None
            kill_at = time.monotonic() + rng.uniform(0.05, 0.5)
            r = first
            while True:
                assert whole(r), "torn record"
                seqs.append(r.frame.seq)
                if time.monotonic() >= kill_at:
                    break
                r = q.get(timeout=10)
                assert r is not None
            os.kill(p.pid, signal.SIGKILL)
            p.join(10)
            free_outer_locks(q)
            t0 = time.monotonic()
            rest = drain(q)
            assert time.monotonic() - t0 < RECOVERY_BOUND
            for r in rest:
                assert whole(r), "torn record"
            seqs += [r.frame.seq for r in rest]
            assert seqs == list(range(base, base + len(seqs)))  # FIFO, nothing lost but the record in flight
            total += len(seqs)
        assert total > rounds * 10
    finally:
        q.close()
    assert leftovers() == []
