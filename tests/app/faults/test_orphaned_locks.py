"""A stage killed while it waits on its input queue dies holding the queue's consumer lock; its restarted
instance must free it rather than block forever (deterministic version of what the restart test can hit)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from types import SimpleNamespace

import pytest

from app.runtime.child import free_orphaned_locks
from app.runtime.queue import RecordQueue
from tests.app.runtime.helpers import rec


def _hold_and_wait(lock, ready) -> None:
    lock.acquire()
    ready.set()
    time.sleep(60)


@pytest.mark.timeout(30)
def test_restarted_stage_frees_the_lock_its_killed_predecessor_held():
    q = RecordQueue.create(capacity=2, slot_bytes=4096)
    try:
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        p = ctx.Process(target=_hold_and_wait, args=(q.spec.get_lock, ready), daemon=True)
        p.start()
        assert ready.wait(20)
        os.kill(p.pid, signal.SIGKILL)
        p.join(5)
        assert not q.spec.get_lock.acquire(timeout=0.2)  # still held by the dead process
        stage = SimpleNamespace(name="detect", inputs={"frames": q}, outputs={})
        assert free_orphaned_locks(stage, wait=0.3) == ["frames.get"]
        assert q.put(rec(seq=7, ts=1.0), timeout=1)
        assert q.get(timeout=1).frame.seq == 7  # the consumer side works again
        assert free_orphaned_locks(stage, wait=0.3) == []  # a free lock is left alone
    finally:
        q.close()
