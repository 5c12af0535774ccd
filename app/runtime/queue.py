"""A bounded queue of records in shared memory, safe against a peer killed at any point (see ``RecordQueue``)."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from app.runtime import record as _record
from app.runtime.mutex import MUTEX as _MUTEX
from app.runtime.mutex import SLICE as _SLICE
from app.runtime.mutex import RobustMutex, closed, sem_trylock, sem_unlock
from app.runtime.record import END, KIND_OFFSET, End
from app.runtime.segments import Attached, align, attach_segment, create_segment, release_segment, segment_name
from app.types import Faces

log = logging.getLogger("facestream.runtime")

@dataclass
class QueueSpec:
    """What a process needs to attach a queue. Holds multiprocessing locks: pass it to a child as a Process
    argument (it pickles only while spawning), not through another queue. ``lock`` is None where the inner
    lock is the robust mutex in the segment's header (Linux); elsewhere it is a plain multiprocessing lock."""

    name: str
    capacity: int
    slot_bytes: int
    policy: str
    lock: Any
    put_lock: Any
    get_lock: Any
    not_empty: Any
    not_full: Any


# Header, int64 words. HOLDER: pid that last took the inner lock (for messages); RECOVERED: times a process
# took the lock over from a holder that died in it; ENDS: end-of-stream records a drop set aside (see put);
# JOURNAL/J_TAIL/J_DROPS/J_ENDS: a drop in progress (see put).
# Bytes _Q_MUTEX.._Q_MUTEX+64 hold the robust mutex; from _Q_HDR one stamp (int64) per slot, then the slots.
(_Q_HEAD, _Q_TAIL, _Q_DROPS, _Q_GET_WAIT, _Q_PUT_WAIT, _Q_MAGIC, _Q_CAP, _Q_SLOT,
 _Q_HOLDER, _Q_RECOVERED, _Q_JOURNAL, _Q_J_TAIL, _Q_J_DROPS, _Q_ENDS, _Q_J_ENDS) = range(15)
_Q_MUTEX = 128
_Q_HDR = _Q_MUTEX + RobustMutex.SIZE
_Q_MAGIC_V = 0x66735F7175657533  # "fs_queu3"
_WRITING = -1  # a slot's stamp while a producer writes into it (otherwise: the queue position of its record)
POLICIES = ("block", "drop_oldest")
_LOCK_TIMEOUT = 5.0  # a live process holding the inner lock this long is stuck: QueueBroken


class QueueBroken(RuntimeError):
    """The queue's inner lock stayed held by a live process for ``_LOCK_TIMEOUT`` seconds (or, without a robust
    mutex, by a process that may have died in it), or its header is inconsistent."""


class RecordQueue(Attached):
    """Bounded queue of records (``Faces``, ``End``) in shared memory: ``capacity`` records of at most
    ``slot_bytes`` bytes each.

    ``block``: put waits for room, nothing is lost (files, every frame). ``drop_oldest``: put never waits;
    when full the oldest queued record is discarded and ``drops`` counts it (live sources).
    Several producers and several consumers are safe (each side is serialised by its own lock); payloads are
    copied outside the short critical section that moves head/tail.

    Record ``p`` (its position in the queue: head and tail count positions) lives in slot ``p % (capacity + 1)``.
    In a ``block`` queue that one spare slot keeps the slot a consumer is reading out of the producer's way. A
    ``drop_oldest`` producer does not wait, though: while a consumer copies out the record it took, two puts
    into the full queue reach its slot. So each slot carries a stamp, seqlock style: ``_WRITING`` while a
    producer writes into it, then the position of the record it holds (set before head commits the record). A
    consumer that took position ``t`` keeps what it copied out only if the stamp still says ``t`` afterwards (a
    slot's stamps only grow: any write since the take shows): if not, the record was overwritten by a newer one
    (or by a producer killed while writing) — it is counted in ``drops`` and the consumer takes the next one,
    never a torn or repeated record. An end-of-stream record is never lost: a consumer copies one out before
    releasing the lock it took it under (no producer writes the oldest slot), and a drop that finds one oldest
    sets it aside (``_Q_ENDS``; delivered by the next ``get`` as a plain ``End()``) instead.

    A process killed inside that critical section cannot break the queue: its lock is a robust mutex, and every
    update in it is committed by one final store (head after the payload is written, tail before it is read), or
    journaled first (a drop moves tail and counts it), so whatever the kill interrupted is either invisible or
    finished by the next process to take the lock (``_recover``). A record that was being written is never
    delivered; one that was taken is gone with its consumer — the records in flight, nothing else.
    """

    def __init__(self, spec: QueueSpec, shm: SharedMemory, owner: bool) -> None:
        self.spec = spec
        self._shm = shm
        self._owner = owner
        self._buf = shm.buf
        self._h = self._buf[:_Q_MUTEX].cast("q")  # int64 words; memoryview indexing is ~3x cheaper than numpy's
        self._nslots = spec.capacity + 1
        self._stride = align(spec.slot_bytes)
        self._stamps = self._buf[_Q_HDR:_Q_HDR + 8 * self._nslots].cast("q")
        self._data = _Q_HDR + align(8 * self._nslots)  # offset of slot 0
        self.overwritten = 0  # records this handle took but found overwritten (counted in drops too)
        self._drop = spec.policy == "drop_oldest"
        self._put_lock, self._get_lock = spec.put_lock, spec.get_lock
        self._not_empty, self._not_full = spec.not_empty, spec.not_full
        self._pid = os.getpid()
        if spec.lock is None:
            if _MUTEX is None:
                raise RuntimeError(f"queue {spec.name} needs a robust pthread mutex, which this platform lacks")
            self._mutex_ref: Any = ctypes.c_char.from_buffer(self._buf, _Q_MUTEX)  # pins the mapping until close
            self._m: Any = ctypes.byref(self._mutex_ref)
            self._trylock, self._unlock = _MUTEX.trylock, _MUTEX.unlock
        else:
            self._mutex_ref, self._m = None, spec.lock
            self._trylock, self._unlock = sem_trylock, sem_unlock

    # -- lifecycle ---------------------------------------------------------------------------------------
    @classmethod
    def create(cls, capacity: int = 8, slot_bytes: int = 1 << 20, policy: str = "block",
               name: str | None = None) -> RecordQueue:
        if policy not in POLICIES:
            raise ValueError(f"queue policy {policy!r}: choose one of {', '.join(POLICIES)}")
        if capacity < 1 or slot_bytes < 256:
            raise ValueError("a queue needs capacity >= 1 and slot_bytes >= 256")
        mp = get_context("spawn")
        spec = QueueSpec(name or segment_name("q"), int(capacity), int(slot_bytes), policy,
                         None if _MUTEX else mp.Lock(), mp.Lock(), mp.Lock(), mp.Semaphore(0), mp.Semaphore(0))
        size = _Q_HDR + align(8 * (capacity + 1)) + (capacity + 1) * align(slot_bytes)
        q = cls(spec, create_segment(spec.name, size), owner=True)
        if _MUTEX:
            _MUTEX.init(q._m)
        for i in range(capacity + 1):
            q._stamps[i] = _WRITING  # no record yet
        q._h[_Q_MAGIC], q._h[_Q_CAP], q._h[_Q_SLOT] = _Q_MAGIC_V, capacity, slot_bytes  # the rest is zero
        return q

    @classmethod
    def attach(cls, spec: QueueSpec) -> RecordQueue:
        shm = attach_segment(spec.name)
        if np.ndarray((16,), np.int64, buffer=shm.buf)[_Q_MAGIC] != _Q_MAGIC_V:
            release_segment(shm, unlink=False)
            raise ValueError(f"shared memory {spec.name} is not a record queue")
        return cls(spec, shm, owner=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def close(self) -> None:
        """Detach; the owner also unlinks."""
        self._trylock = self._unlock = closed  # the mutex's address is about to be unmapped
        self._mutex_ref = self._m = None
        self._h.release()
        self._stamps.release()
        self._h = self._stamps = None  # type: ignore[assignment]
        self._buf = None
        release_segment(self._shm, unlink=self._owner)
        self._shm = None  # type: ignore[assignment]

    # -- state -------------------------------------------------------------------------------------------
    def qsize(self) -> int:
        """Records a ``get`` would return now (an end-of-stream set aside by a drop included)."""
        return int(self._h[_Q_HEAD] - self._h[_Q_TAIL] + self._h[_Q_ENDS])

    @property
    def drops(self) -> int:
        return int(self._h[_Q_DROPS])

    @property
    def recoveries(self) -> int:
        """Times a process took the inner lock over from a holder that had died in it."""
        return int(self._h[_Q_RECOVERED])


    # -- inner lock --------------------------------------------------------------------------------------
    def _acquire(self) -> None:
        """Take the inner lock; release it with ``self._unlock(self._m)``. Fast path: one trylock, one store."""
        rc = self._trylock(self._m)
        if rc:
            self._acquire_slow(rc)
        self._h[_Q_HOLDER] = self._pid

    def _acquire_slow(self, rc: int) -> None:
        if self.spec.lock is not None:  # no robust mutex here: a lock whose holder died stays held
            if not self._m.acquire(timeout=_LOCK_TIMEOUT):
                raise QueueBroken(f"queue {self.spec.name}: lock held for {_LOCK_TIMEOUT:g} s — a peer process "
                                  "died inside it")
            return
        if rc == errno.EBUSY:
            rc = _MUTEX.lock(self._m, _LOCK_TIMEOUT)  # type: ignore[union-attr]
        if rc == errno.EOWNERDEAD:
            self._recover()
        elif rc:
            holder = int(self._h[_Q_HOLDER])
            why = (f"held for {_LOCK_TIMEOUT:g} s by live process {holder}" if rc == errno.ETIMEDOUT
                   else os.strerror(rc))
            raise QueueBroken(f"queue {self.spec.name}: inner lock {why}")

    def _recover(self) -> None:
        """We hold the lock its last holder died in: make the header consistent, then carry on as its holder.

        Each critical section's last store commits it, except a drop, which journals (tail, drops, ends) first:
        a journal still marked valid is replayed (idempotent). Anything else the dead holder wrote is a wake-up
        flag (a sleeper looks again within ``_SLICE``), a drop count a consumer adds on its own (one store), or a
        record slot nobody can see until head moves past it (and whose stamp tells a reader of the record it held
        before that it is gone).
        """
        _MUTEX.consistent(self._m)  # type: ignore[union-attr]
        h = self._h
        dead = int(h[_Q_HOLDER])
        if h[_Q_JOURNAL]:
            h[_Q_TAIL] = h[_Q_J_TAIL]
            h[_Q_DROPS] = h[_Q_J_DROPS]
            h[_Q_ENDS] = h[_Q_J_ENDS]
            h[_Q_JOURNAL] = 0
        h[_Q_RECOVERED] += 1
        if not 0 <= h[_Q_HEAD] - h[_Q_TAIL] <= self.spec.capacity or h[_Q_ENDS] < 0:  # a bug, not a kill
            self._unlock(self._m)
            raise QueueBroken(f"queue {self.spec.name}: head {h[_Q_HEAD]} / tail {h[_Q_TAIL]} inconsistent")
        log.warning("queue %s: a process died holding its lock (last recorded holder: %d); process %d took it over",
                    self.spec.name, dead, self._pid)

    # -- producer ----------------------------------------------------------------------------------------
    def put(self, record: Faces | End, timeout: float | None = None) -> bool:
        """Enqueue ``record``; False if a ``block`` queue stayed full for ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        h = self._h
        with self._put_lock:
            while True:
                self._acquire()
                try:
                    head, tail = int(h[_Q_HEAD]), int(h[_Q_TAIL])
                    if head - tail < self.spec.capacity:
                        break
                    if self._drop:  # journal, then apply: a holder killed in between is finished by _recover
                        # (one store a line: the crash-point test stops at each). An end-of-stream is never
                        # dropped: set aside, it is the next record get hands out (all older ones are gone)
                        drops, ends = int(h[_Q_DROPS]), int(h[_Q_ENDS])
                        if self._buf[self._data + tail % self._nslots * self._stride + KIND_OFFSET] == END:
                            ends += 1
                        else:
                            drops += 1
                        h[_Q_J_TAIL] = tail + 1
                        h[_Q_J_DROPS] = drops
                        h[_Q_J_ENDS] = ends
                        h[_Q_JOURNAL] = 1
                        h[_Q_TAIL] = tail + 1
                        h[_Q_DROPS] = drops
                        h[_Q_ENDS] = ends
                        h[_Q_JOURNAL] = 0
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        return False
                    h[_Q_PUT_WAIT] = 1
                finally:
                    self._unlock(self._m)
                wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
                if wait <= 0:
                    return False
                self._not_full.acquire(timeout=wait)
            self._encode(record, head)
            self._acquire()
            try:
                h[_Q_HEAD] = head + 1  # commits the record
                wake = h[_Q_GET_WAIT]
                h[_Q_GET_WAIT] = 0
            finally:
                self._unlock(self._m)
            if wake:
                self._not_empty.release()
        return True

    def _encode(self, record: Faces | End, pos: int) -> None:
        """Write ``record`` into the slot of queue position ``pos`` (head is not moved here); in a ``drop_oldest``
        queue, stamp the slot ``_WRITING`` first and ``pos`` last (a ``block`` queue never needs the stamps)."""
        slot = pos % self._nslots
        base = self._data + slot * self._stride
        if self._drop:  # first: a consumer still copying out the slot's previous record sees it go
            self._stamps[slot] = _WRITING
        _record.encode_into(self._buf, base, record, self.spec.slot_bytes, self.spec.name)
        if self._drop:
            self._stamps[slot] = pos  # last: the slot holds record pos, complete

    # -- consumer ----------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Faces | End | None:
        """The oldest record (arrays are private copies), or None after ``timeout`` seconds with nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        h, drop = self._h, self._drop
        lost = 0
        with self._get_lock:
            while True:
                self._acquire()
                try:
                    if lost:  # taken, then overwritten before it was copied out: dropped like any other
                        h[_Q_DROPS] += lost
                        lost = 0
                    if drop and h[_Q_ENDS]:  # an end-of-stream a drop set aside: older than all queued
                        h[_Q_ENDS] -= 1
                        return End()
                    head, tail = int(h[_Q_HEAD]), int(h[_Q_TAIL])
                    if head > tail:
                        slot = tail % self._nslots
                        base = self._data + slot * self._stride
                        # an end is copied out now, while no producer can reach its slot: it must not be lost
                        end = drop and self._buf[base + KIND_OFFSET] == END and self._decode(base)
                        h[_Q_TAIL] = tail + 1  # takes the record: from here it is this process's to lose
                        wake = h[_Q_PUT_WAIT]
                        h[_Q_PUT_WAIT] = 0
                    elif deadline is not None and time.monotonic() >= deadline:
                        return None
                    else:
                        h[_Q_GET_WAIT] = 1
                finally:
                    self._unlock(self._m)
                if head > tail:
                    if wake:
                        self._not_full.release()
                    if not drop:  # a block queue's producers never reach the slot being read
                        return self._decode(base)
                    if end:
                        return end
                    # the stamp still says tail once copied out: no producer has touched the slot since it was
                    # taken (stamps only grow). Otherwise what was read may be anything, even undecodable.
                    try:
                        rec = self._decode(base)
                    except Exception:
                        if self._stamps[slot] == tail:
                            raise
                    else:
                        if self._stamps[slot] == tail:
                            return rec
                    lost += 1  # counted under the lock taken next (for the next record, or to time out)
                    self.overwritten += 1
                    continue
                wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
                if wait <= 0:
                    return None
                self._not_empty.acquire(timeout=wait)

    def _decode(self, base: int) -> Faces | End:
        return _record.decode(self._buf, base)
