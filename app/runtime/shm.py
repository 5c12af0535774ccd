"""Shared-memory transport between stage processes: a seqlocked ring of frames and a bounded record queue.

Frames are written once into a fixed slot of a ``FrameRing`` and found again by their sequence number
(slot = seq % slots); everything else travels as a ``Record`` — a small header plus named numpy arrays,
serialised as raw bytes (never pickled) into a fixed-size slot of a ``RecordQueue``.

Segments are named ``fs_<creator pid>_<token>_<tag>`` so a leftover in /dev/shm is easy to recognise.
The creating process owns a segment and unlinks it; other processes attach by name without telling
Python's resource tracker (which would otherwise unlink or warn about segments it does not own).
Timestamps are ``time.time()`` seconds: comparable across processes, the same clock as ``app.types.FrameRef``.

A record queue's inner lock (the few stores that move head/tail) is a robust, process-shared pthread mutex
in the segment's header: when a process is killed while holding it, the kernel marks it "owner died" and the
next process to take it repairs the header and carries on, instead of its peers failing (see ``RecordQueue``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import secrets
import struct
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import get_context, resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

PREFIX = "fs"
_ALIGN = 64

log = logging.getLogger("facestream.runtime")


def _align(n: int, to: int = _ALIGN) -> int:
    return (n + to - 1) // to * to


def segment_name(tag: str) -> str:
    """A fresh segment name carrying the creator's pid, e.g. ``fs_4242_a1b2c3_ring``."""
    return f"{PREFIX}_{os.getpid()}_{secrets.token_hex(3)}_{tag}"


def create_segment(name: str, size: int) -> SharedMemory:
    """Create (and own) a segment; registered with the resource tracker so it is unlinked even if we are killed."""
    return SharedMemory(name=name, create=True, size=max(size, 1))


def attach_segment(name: str) -> SharedMemory:
    """Map an existing segment without registering it with this process's resource tracker."""
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    register = resource_tracker.register
    resource_tracker.register = lambda *_args, **_kw: None  # 3.10–3.12 register every attach unconditionally
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def release_segment(shm: SharedMemory | None, unlink: bool) -> None:
    """Unmap (if no numpy view still points into it) and, for the owner, unlink. Never raises for a gone segment."""
    if shm is None:
        return
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()
    # BufferError: a caller still holds a view; the mapping goes away with the process, the name is gone already
    with contextlib.suppress(BufferError):
        shm.close()


# ----------------------------------------------------------------------------------------------------------
# Frame ring
# ----------------------------------------------------------------------------------------------------------

# Per-slot header, int64 words: version (odd while being written), seq, ts (float64 bits), stream, index, h, w, c
_H_VER, _H_SEQ, _H_TS, _H_STREAM, _H_INDEX, _H_H, _H_W, _H_C = range(8)
_SLOT_HDR = 64
_RING_HDR = 64  # int64 words: magic, slots, height, width, channels, last seq
_RING_MAGIC = 0x66735F72696E6731  # "fs_ring1"
MAX_RING_SLOTS = 1024


@dataclass(frozen=True)
class RingSpec:
    """What a process needs to attach a ring: picklable, tiny."""

    name: str
    slots: int
    height: int
    width: int
    channels: int = 3

    @property
    def slot_bytes(self) -> int:
        return self.height * self.width * self.channels

    @property
    def stride(self) -> int:
        return _align(self.slot_bytes, 4096)

    @property
    def header_bytes(self) -> int:
        """Ring header + slot headers, rounded up to whole pages (one page up to 63 slots)."""
        return _align(_RING_HDR + self.slots * _SLOT_HDR, 4096)

    @property
    def size(self) -> int:
        return self.header_bytes + self.slots * self.stride  # headers, then page-aligned frames


@dataclass(frozen=True)
class FrameInfo:
    """Header of a frame in the ring."""

    seq: int
    ts: float
    stream: int
    index: int
    shape: tuple[int, int, int]


class FrameRing:
    """``slots`` fixed frames of at most height×width×channels uint8 in one shared segment.

    One writer per ring. A frame lives in slot ``seq % slots`` until the writer wraps round to it; each
    slot has a seqlock (version odd while it is being written), so a reader either gets the frame it asked
    for or None — never torn pixels. ``view`` is zero-copy and must be re-checked with ``still_valid`` after
    use; ``copy`` does that check itself.
    """

    def __init__(self, spec: RingSpec, shm: SharedMemory, owner: bool) -> None:
        self.spec = spec
        self._shm = shm
        self._owner = owner
        buf = shm.buf
        self._ring = np.ndarray((8,), np.int64, buffer=buf, offset=0)
        self._hdr = np.ndarray((spec.slots, 8), np.int64, buffer=buf, offset=_RING_HDR)
        self._ts = self._hdr.view(np.float64)  # column _H_TS read as float64
        self._data = [np.ndarray((spec.slot_bytes,), np.uint8, buffer=buf, offset=spec.header_bytes + i * spec.stride)
                      for i in range(spec.slots)]

    # -- lifecycle ---------------------------------------------------------------------------------------
    @classmethod
    def create(cls, slots: int, height: int, width: int, channels: int = 3, name: str | None = None) -> FrameRing:
        if not 1 <= slots <= MAX_RING_SLOTS:
            raise ValueError(f"a frame ring holds 1..{MAX_RING_SLOTS} slots, not {slots}")
        spec = RingSpec(name or segment_name("ring"), int(slots), int(height), int(width), int(channels))
        ring = cls(spec, create_segment(spec.name, spec.size), owner=True)
        ring._ring[:6] = (_RING_MAGIC, slots, height, width, channels, -1)
        ring._hdr[:] = 0
        ring._hdr[:, _H_SEQ] = -1
        return ring

    @classmethod
    def attach(cls, spec: RingSpec | str) -> FrameRing:
        """Attach by spec, or by bare name (geometry then read from the segment's header)."""
        shm = attach_segment(spec if isinstance(spec, str) else spec.name)
        head = np.ndarray((6,), np.int64, buffer=shm.buf).copy()
        if head[0] != _RING_MAGIC:
            release_segment(shm, unlink=False)
            raise ValueError(f"shared memory {shm.name} is not a frame ring")
        if isinstance(spec, str):
            spec = RingSpec(spec, int(head[1]), int(head[2]), int(head[3]), int(head[4]))
        return cls(spec, shm, owner=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def memory(self) -> np.ndarray:
        """The frames' bytes as one array (every slot), e.g. to page-lock them for direct GPU uploads."""
        return np.ndarray((self.spec.slots * self.spec.stride,), np.uint8, buffer=self._shm.buf,
                          offset=self.spec.header_bytes)

    def close(self) -> None:
        """Detach; the owner also unlinks. Views handed out earlier must not be used afterwards."""
        self._ring = self._hdr = self._ts = None  # type: ignore[assignment]
        self._data = []
        release_segment(self._shm, unlink=self._owner)
        self._shm = None  # type: ignore[assignment]

    def __del__(self) -> None:  # release our views before SharedMemory's own __del__ tries to unmap
        if getattr(self, "_shm", None) is not None:
            with contextlib.suppress(Exception):
                self.close()

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writer ------------------------------------------------------------------------------------------
    def write(self, frame: np.ndarray, seq: int, ts: float, stream: int = 0, index: int = 0) -> int:
        """Copy ``frame`` (h, w, c) uint8 into slot ``seq % slots`` (one memcpy when contiguous); return the slot."""
        if frame.dtype != np.uint8 or frame.ndim != 3:
            raise ValueError(f"frames are (h, w, c) uint8, got {frame.shape} {frame.dtype}")
        h, w, c = frame.shape
        if h * w * c > self.spec.slot_bytes:
            raise ValueError(f"frame {w}x{h}x{c} does not fit a ring slot of "
                             f"{self.spec.width}x{self.spec.height}x{self.spec.channels}")
        if seq < 0:
            raise ValueError("sequence numbers are >= 0")
        slot = seq % self.spec.slots
        hdr = self._hdr[slot]
        version = int(hdr[_H_VER])
        hdr[_H_VER] = version + 1  # odd: being written
        np.copyto(self._data[slot][: h * w * c].reshape(h, w, c), frame)
        hdr[_H_STREAM], hdr[_H_INDEX], hdr[_H_H], hdr[_H_W], hdr[_H_C] = stream, index, h, w, c
        self._ts[slot, _H_TS] = ts
        hdr[_H_SEQ] = seq
        hdr[_H_VER] = version + 2  # even: stable
        self._ring[5] = seq
        return slot

    def begin(self, seq: int, shape: tuple[int, int, int]) -> np.ndarray:
        """Start writing frame ``seq`` in place (e.g. a decoder writing straight into shared memory, no copy):
        the slot is marked as being written and its pixels returned; finish with ``commit`` or ``abort``."""
        h, w, c = shape
        if h * w * c > self.spec.slot_bytes or seq < 0:
            raise ValueError(f"frame {w}x{h}x{c} (seq {seq}) does not fit this ring")
        slot = seq % self.spec.slots
        hdr = self._hdr[slot]
        version = int(hdr[_H_VER])
        if not version & 1:
            hdr[_H_VER] = version + 1  # odd: being written
        return self._data[slot][: h * w * c].reshape(h, w, c)

    def commit(self, seq: int, ts: float, shape: tuple[int, int, int], stream: int = 0, index: int = 0) -> int:
        """Publish the frame written in place since ``begin(seq, shape)``; return the slot."""
        slot = seq % self.spec.slots
        hdr = self._hdr[slot]
        hdr[_H_STREAM], hdr[_H_INDEX], (hdr[_H_H], hdr[_H_W], hdr[_H_C]) = stream, index, shape
        self._ts[slot, _H_TS] = ts
        hdr[_H_SEQ] = seq
        hdr[_H_VER] = int(hdr[_H_VER]) + 1  # even: stable
        self._ring[5] = seq
        return slot

    def abort(self, seq: int) -> None:
        """Give up an in-place write: the slot holds no frame (a reader of its old frame sees it is gone)."""
        hdr = self._hdr[seq % self.spec.slots]
        hdr[_H_SEQ] = -1
        hdr[_H_VER] = int(hdr[_H_VER]) + 1

    # -- readers -----------------------------------------------------------------------------------------
    def latest_seq(self) -> int:
        """Sequence number of the last frame written (-1: none yet)."""
        return int(self._ring[5])

    def info(self, seq: int) -> FrameInfo | None:
        """Header of frame ``seq`` if it is still in the ring."""
        slot = seq % self.spec.slots
        hdr = self._hdr[slot]
        version = int(hdr[_H_VER])
        if version & 1 or hdr[_H_SEQ] != seq:
            return None
        info = FrameInfo(seq, float(self._ts[slot, _H_TS]), int(hdr[_H_STREAM]), int(hdr[_H_INDEX]),
                         (int(hdr[_H_H]), int(hdr[_H_W]), int(hdr[_H_C])))
        return info if hdr[_H_VER] == version else None

    def view(self, seq: int) -> np.ndarray | None:
        """Zero-copy view of frame ``seq``, or None if it was overwritten. Call ``still_valid(seq)`` after use:
        if it says False the pixels may have been overwritten while you read them — drop the result."""
        slot = seq % self.spec.slots
        hdr = self._hdr[slot]
        version = int(hdr[_H_VER])
        if version & 1 or hdr[_H_SEQ] != seq:
            return None
        h, w, c = int(hdr[_H_H]), int(hdr[_H_W]), int(hdr[_H_C])
        if hdr[_H_VER] != version:
            return None
        return self._data[slot][: h * w * c].reshape(h, w, c)

    def still_valid(self, seq: int) -> bool:
        """True if frame ``seq`` has not been (and is not being) overwritten since it was viewed."""
        hdr = self._hdr[seq % self.spec.slots]
        return not int(hdr[_H_VER]) & 1 and int(hdr[_H_SEQ]) == seq  # version first, then seq: see write()

    def copy(self, seq: int, out: np.ndarray | None = None) -> np.ndarray | None:
        """A private copy of frame ``seq`` (into ``out`` if given and of the right shape), or None if overwritten."""
        view = self.view(seq)
        if view is None:
            return None
        if out is None or out.shape != view.shape:
            out = np.empty_like(view)
        np.copyto(out, view)
        return out if self.still_valid(seq) else None


# ----------------------------------------------------------------------------------------------------------
# Records and the record queue
# ----------------------------------------------------------------------------------------------------------

DATA = 0
END = 1  # end of stream: no more records from this producer

_REC = struct.Struct("<IBBHqdqqI")  # total length, kind, n arrays, descriptor length, seq, ts, stream, index,
#                                      meta length
_REC_FIELDS = _REC.size
_REC_KIND = 4  # offset of the kind byte in an encoded record


@dataclass
class Record:
    """One message between stages: which frame (seq, capture ts, stream, index), named arrays, a JSON-able meta.

    ``queue`` is filled in on receipt with the name of the input it came from (not transmitted).
    """

    seq: int = -1
    ts: float = 0.0
    stream: int = 0
    index: int = 0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    kind: int = DATA
    queue: str = ""

    @classmethod
    def end(cls, seq: int = -1, ts: float = 0.0, stream: int = 0) -> Record:
        return cls(seq=seq, ts=ts, stream=stream, kind=END)

    @property
    def is_end(self) -> bool:
        return self.kind == END

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


_DTYPES: dict[str, np.dtype] = {}


def _layout(record: Record) -> tuple[bytes, bytes, list[np.ndarray], list[int], int]:
    """(descriptor, meta, arrays, data offsets, total bytes) of a record in a slot.

    The descriptor is text ``name:dtype:d0,d1;…`` — parsed back with C-level string splits, much cheaper in
    Python than a field-by-field binary header. Array data follow, each 16-byte aligned.
    """
    parts = []
    values = []
    for name, value in record.arrays.items():
        a = value if isinstance(value, np.ndarray) else np.asarray(value)
        if a.dtype.hasobject:
            raise TypeError(f"record array {name!r} has dtype object: only plain numeric/bytes arrays travel")
        if ":" in name or ";" in name:
            raise ValueError(f"record array name {name!r} must not contain ':' or ';'")
        parts.append(f"{name}:{a.dtype.str}:{','.join(map(str, a.shape))}")
        values.append(a)
    desc = ";".join(parts).encode()
    meta = json.dumps(record.meta).encode() if record.meta else b""
    off = (_REC_FIELDS + len(desc) + len(meta) + 15) & ~15
    offsets = []
    for a in values:
        offsets.append(off)
        off = (off + a.nbytes + 15) & ~15
    return desc, meta, values, offsets, off


def encoded_size(record: Record) -> int:
    """Bytes ``record`` takes in a queue slot (to size ``slot_bytes``)."""
    return _layout(record)[4]


# -- the queue's inner lock ----------------------------------------------------------------------------------

class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _RobustMutex:
    """libc's robust, process-shared pthread mutex, used in place at an address inside a shared segment.

    Robust: when the thread holding it dies (SIGKILL included), the kernel marks the mutex "owner died" and
    the next ``lock`` returns EOWNERDEAD with the mutex taken (a waiter is woken at once). Unlike recording the
    holder's pid next to a semaphore there is no window between taking the lock and recording who took it, no
    pid-reuse question, no race between two waiters that both saw the holder die: exactly one gets the mutex
    with EOWNERDEAD and recovers it; a recoverer killed in turn is recovered the same way. Calls that
    cannot block keep the GIL (``PyDLL``: cheaper); the waiting one drops it (``CDLL``), in short slices so
    signals (Ctrl-C, SIGTERM) are still handled while a process waits.
    """

    SIZE = 64  # bytes reserved in a header: sizeof(pthread_mutex_t) is 40 (x86-64 glibc/musl) or 48 (aarch64)

    def __init__(self) -> None:
        fast, slow = ctypes.PyDLL(None), ctypes.CDLL(None)  # the process's libc (and libpthread before glibc 2.34)
        raw = ctypes.PyDLL(None)  # the hot two without argtypes, called with a ready-made byref(): cheaper
        self.trylock, self.unlock = raw.pthread_mutex_trylock, raw.pthread_mutex_unlock
        self.consistent = self._fn(fast, "pthread_mutex_consistent", ctypes.c_void_p)
        self._setpshared, self._setrobust = (self._fn(fast, name, ctypes.c_void_p, ctypes.c_int) for name in (
            "pthread_mutexattr_setpshared", "pthread_mutexattr_setrobust"))
        self._attr_init, self._attr_destroy = (self._fn(fast, name, ctypes.c_void_p) for name in (
            "pthread_mutexattr_init", "pthread_mutexattr_destroy"))
        self._init = self._fn(fast, "pthread_mutex_init", ctypes.c_void_p, ctypes.c_void_p)
        timespec = ctypes.POINTER(_Timespec)
        if hasattr(slow, "pthread_mutex_clocklock"):  # glibc >= 2.30: a deadline on the monotonic clock
            self._clock = time.CLOCK_MONOTONIC
            self._timed = self._fn(slow, "pthread_mutex_clocklock", ctypes.c_void_p, ctypes.c_int, timespec)
        else:
            self._clock = time.CLOCK_REALTIME
            timed = self._fn(slow, "pthread_mutex_timedlock", ctypes.c_void_p, timespec)
            self._timed = lambda addr, _clock, ts: timed(addr, ts)

    @staticmethod
    def _fn(lib: ctypes.CDLL, name: str, *argtypes: Any) -> Any:
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = list(argtypes), ctypes.c_int
        return fn

    def init(self, addr: Any) -> None:
        """Initialise the mutex at ``addr`` (once, by the segment's creator, before anyone attaches)."""
        attr = ctypes.create_string_buffer(64)  # sizeof(pthread_mutexattr_t) is 4 or 8
        rc = self._attr_init(attr)
        if not rc:
            # 1, 1: PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST
            rc = self._setpshared(attr, 1) or self._setrobust(attr, 1) or self._init(addr, attr)
            self._attr_destroy(attr)
        if rc:
            raise OSError(rc, f"initialising a robust mutex: {os.strerror(rc)}")

    def lock(self, addr: Any, timeout: float) -> int:
        """Wait up to ``timeout`` s (without the GIL): 0, EOWNERDEAD (taken: its holder died), ETIMEDOUT or EDEADLK."""
        deadline = time.clock_gettime(self._clock) + timeout
        ts = _Timespec()
        while True:
            until = min(deadline, time.clock_gettime(self._clock) + _SLICE)
            ts.tv_sec, ts.tv_nsec = int(until), int(until % 1 * 1e9)
            rc = self._timed(addr, self._clock, ctypes.byref(ts))
            if rc != errno.ETIMEDOUT or until >= deadline:
                return rc


def _load_robust_mutex() -> _RobustMutex | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _RobustMutex()
    except (OSError, AttributeError):  # no libc symbols: fall back to a multiprocessing lock
        return None


_MUTEX = _load_robust_mutex()


def _sem_trylock(lock: Any) -> int:
    return 0 if lock.acquire(False) else errno.EBUSY


def _sem_unlock(lock: Any) -> int:
    lock.release()
    return 0


def _closed(_addr: Any) -> int:
    raise ValueError("record queue is closed")


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
_Q_HDR = _Q_MUTEX + _RobustMutex.SIZE
_Q_MAGIC_V = 0x66735F7175657533  # "fs_queu3"
_WRITING = -1  # a slot's stamp while a producer writes into it (otherwise: the queue position of its record)
POLICIES = ("block", "drop_oldest")
_SLICE = 0.1  # longest single wait: bounds the cost of a wake-up lost to a dead peer
_LOCK_TIMEOUT = 5.0  # a live process holding the inner lock this long is stuck: QueueBroken


class QueueBroken(RuntimeError):
    """The queue's inner lock stayed held by a live process for ``_LOCK_TIMEOUT`` seconds (or, without a robust
    mutex, by a process that may have died in it), or its header is inconsistent."""


class RecordQueue:
    """Bounded queue of ``Record`` in shared memory: ``capacity`` records of at most ``slot_bytes`` bytes each.

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
    sets it aside (``_Q_ENDS``; delivered by the next ``get`` as a plain ``Record.end()``) instead.

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
        self._stride = _align(spec.slot_bytes)
        self._stamps = self._buf[_Q_HDR:_Q_HDR + 8 * self._nslots].cast("q")
        self._data = _Q_HDR + _align(8 * self._nslots)  # offset of slot 0
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
            self._trylock, self._unlock = _sem_trylock, _sem_unlock

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
        size = _Q_HDR + _align(8 * (capacity + 1)) + (capacity + 1) * _align(slot_bytes)
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
        self._trylock = self._unlock = _closed  # the mutex's address is about to be unmapped
        self._mutex_ref = self._m = None
        self._h.release()
        self._stamps.release()
        self._h = self._stamps = None  # type: ignore[assignment]
        self._buf = None
        release_segment(self._shm, unlink=self._owner)
        self._shm = None  # type: ignore[assignment]

    def __del__(self) -> None:  # release our views before SharedMemory's own __del__ tries to unmap
        if getattr(self, "_shm", None) is not None:
            with contextlib.suppress(Exception):
                self.close()

    def __enter__(self) -> RecordQueue:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

    @property
    def capacity(self) -> int:
        return self.spec.capacity

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
    def put(self, record: Record, timeout: float | None = None) -> bool:
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
                        if self._buf[self._data + tail % self._nslots * self._stride + _REC_KIND] == END:
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

    def put_end(self, timeout: float | None = None) -> bool:
        """Tell the consumer this producer is done."""
        return self.put(Record.end(), timeout)

    def _encode(self, record: Record, pos: int) -> None:
        """Write ``record`` into the slot of queue position ``pos`` (head is not moved here); in a ``drop_oldest``
        queue, stamp the slot ``_WRITING`` first and ``pos`` last (a ``block`` queue never needs the stamps)."""
        desc, meta, values, offsets, total = _layout(record)
        if total > self.spec.slot_bytes:
            raise ValueError(f"record of {total} bytes does not fit queue {self.spec.name} (slot_bytes="
                             f"{self.spec.slot_bytes}): raise slot_bytes")
        slot = pos % self._nslots
        base = self._data + slot * self._stride
        if self._drop:  # first: a consumer still copying out the slot's previous record sees it go
            self._stamps[slot] = _WRITING
        buf = self._buf
        _REC.pack_into(buf, base, total, record.kind, len(values), len(desc), record.seq, record.ts, record.stream,
                       record.index, len(meta))
        p = base + _REC_FIELDS
        buf[p:p + len(desc)] = desc
        if meta:
            buf[p + len(desc):p + len(desc) + len(meta)] = meta
        for a, o in zip(values, offsets):
            if a.size:
                np.copyto(np.ndarray(a.shape, a.dtype, buffer=buf, offset=base + o), a)
        if self._drop:
            self._stamps[slot] = pos  # last: the slot holds record pos, complete

    # -- consumer ----------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Record | None:
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
                        return Record.end()
                    head, tail = int(h[_Q_HEAD]), int(h[_Q_TAIL])
                    if head > tail:
                        slot = tail % self._nslots
                        base = self._data + slot * self._stride
                        # an end is copied out now, while no producer can reach its slot: it must not be lost
                        end = drop and self._buf[base + _REC_KIND] == END and self._decode(base)
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

    def _decode(self, base: int) -> Record:
        """The record in the slot at ``base``. Reads only inside the segment whatever the slot holds: a torn
        record makes it raise or return nonsense, never allocate without bound (``get`` checks the stamp)."""
        buf = self._buf
        _total, kind, narr, desc_len, seq, ts, stream, index, meta_len = _REC.unpack_from(buf, base)
        p = base + _REC_FIELDS
        arrays = {}
        if narr:
            off = (_REC_FIELDS + desc_len + meta_len + 15) & ~15
            for part in bytes(buf[p:p + desc_len]).decode().split(";"):
                name, dt, dims = part.split(":")
                dtype = _DTYPES.get(dt)
                if dtype is None:
                    dtype = _DTYPES[dt] = np.dtype(dt)
                shape = tuple(map(int, dims.split(","))) if dims else ()
                a = np.ndarray(shape, dtype, buffer=buf, offset=base + off).copy()  # the view checks the bounds
                arrays[name] = a
                off = (off + a.nbytes + 15) & ~15
        meta = json.loads(bytes(buf[p + desc_len:p + desc_len + meta_len])) if meta_len else {}
        return Record(seq, ts, stream, index, arrays, meta, kind)
