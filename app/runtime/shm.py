"""Shared-memory transport between stage processes: a seqlocked ring of frames and a bounded record queue.

Frames are written once into a fixed slot of a ``FrameRing`` and found again by their sequence number
(slot = seq % slots); everything else travels as a ``Record`` — a small header plus named numpy arrays,
serialised as raw bytes (never pickled) into a fixed-size slot of a ``RecordQueue``.

Segments are named ``fs_<creator pid>_<token>_<tag>`` so a leftover in /dev/shm is easy to recognise.
The creating process owns a segment and unlinks it; other processes attach by name without telling
Python's resource tracker (which would otherwise unlink or warn about segments it does not own).
Timestamps are ``time.time()`` seconds: comparable across processes, the same clock as ``app.types.FrameRef``.
"""

from __future__ import annotations

import contextlib
import json
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
    def size(self) -> int:
        return 4096 + self.slots * self.stride  # page 0: ring + slot headers (up to 63 slots), then page-aligned data


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
        self._data = [np.ndarray((spec.slot_bytes,), np.uint8, buffer=buf, offset=4096 + i * spec.stride)
                      for i in range(spec.slots)]

    # -- lifecycle ---------------------------------------------------------------------------------------
    @classmethod
    def create(cls, slots: int, height: int, width: int, channels: int = 3, name: str | None = None) -> FrameRing:
        if not 1 <= slots <= (4096 - _RING_HDR) // _SLOT_HDR:
            raise ValueError(f"a frame ring holds 1..63 slots, not {slots}")
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


@dataclass
class QueueSpec:
    """What a process needs to attach a queue. Holds multiprocessing locks: pass it to a child as a Process
    argument (it pickles only while spawning), not through another queue."""

    name: str
    capacity: int
    slot_bytes: int
    policy: str
    lock: Any
    put_lock: Any
    get_lock: Any
    not_empty: Any
    not_full: Any


_Q_HEAD, _Q_TAIL, _Q_DROPS, _Q_GET_WAIT, _Q_PUT_WAIT, _Q_MAGIC, _Q_CAP, _Q_SLOT = range(8)
_Q_HDR = 128
_Q_MAGIC_V = 0x66735F7175657531  # "fs_queu1"
POLICIES = ("block", "drop_oldest")
_SLICE = 0.1  # longest single wait: bounds the cost of a wake-up lost to a dead peer
_LOCK_TIMEOUT = 5.0


class QueueBroken(RuntimeError):
    """A peer died while holding the queue's lock."""


class RecordQueue:
    """Bounded queue of ``Record`` in shared memory: ``capacity`` records of at most ``slot_bytes`` bytes each.

    ``block``: put waits for room, nothing is lost (files, every frame). ``drop_oldest``: put never waits;
    when full the oldest queued record is discarded and ``drops`` counts it (live sources).
    Several producers and several consumers are safe (each side is serialised by its own lock); payloads are
    copied outside the short critical section that moves head/tail. One physical slot more than ``capacity``
    keeps the slot a consumer is reading out of the producer's way.
    """

    def __init__(self, spec: QueueSpec, shm: SharedMemory, owner: bool) -> None:
        self.spec = spec
        self._shm = shm
        self._owner = owner
        self._buf = shm.buf
        self._h = self._buf[:_Q_HDR].cast("q")  # int64 words; memoryview indexing is ~3x cheaper than numpy's
        self._nslots = spec.capacity + 1
        self._stride = _align(spec.slot_bytes)
        self._drop = spec.policy == "drop_oldest"
        self._lock, self._put_lock, self._get_lock = spec.lock, spec.put_lock, spec.get_lock
        self._not_empty, self._not_full = spec.not_empty, spec.not_full

    # -- lifecycle ---------------------------------------------------------------------------------------
    @classmethod
    def create(cls, capacity: int = 8, slot_bytes: int = 1 << 20, policy: str = "block",
               name: str | None = None) -> RecordQueue:
        if policy not in POLICIES:
            raise ValueError(f"queue policy {policy!r}: choose one of {', '.join(POLICIES)}")
        if capacity < 1 or slot_bytes < 256:
            raise ValueError("a queue needs capacity >= 1 and slot_bytes >= 256")
        mp = get_context("spawn")
        spec = QueueSpec(name or segment_name("q"), int(capacity), int(slot_bytes), policy, mp.Lock(), mp.Lock(),
                         mp.Lock(), mp.Semaphore(0), mp.Semaphore(0))
        size = _Q_HDR + (capacity + 1) * _align(slot_bytes)
        q = cls(spec, create_segment(spec.name, size), owner=True)
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
        self._h.release()
        self._h = None  # type: ignore[assignment]
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
        return int(self._h[_Q_HEAD] - self._h[_Q_TAIL])

    @property
    def drops(self) -> int:
        return int(self._h[_Q_DROPS])

    @property
    def capacity(self) -> int:
        return self.spec.capacity

    def _acquire(self) -> None:
        if not self._lock.acquire(timeout=_LOCK_TIMEOUT):
            raise QueueBroken(f"queue {self.spec.name}: lock held for {_LOCK_TIMEOUT:.0f} s — a peer process died "
                              "inside it")

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
                    if self._drop:
                        h[_Q_TAIL] = tail + 1
                        h[_Q_DROPS] += 1
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        return False
                    h[_Q_PUT_WAIT] = 1
                finally:
                    self._lock.release()
                wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
                if wait <= 0:
                    return False
                self._not_full.acquire(timeout=wait)
            self._encode(record, (head % self._nslots) * self._stride + _Q_HDR)
            self._acquire()
            try:
                h[_Q_HEAD] = head + 1
                wake = h[_Q_GET_WAIT]
                h[_Q_GET_WAIT] = 0
            finally:
                self._lock.release()
            if wake:
                self._not_empty.release()
        return True

    def put_end(self, timeout: float | None = None) -> bool:
        """Tell the consumer this producer is done."""
        return self.put(Record.end(), timeout)

    def _encode(self, record: Record, base: int) -> None:
        desc, meta, values, offsets, total = _layout(record)
        if total > self.spec.slot_bytes:
            raise ValueError(f"record of {total} bytes does not fit queue {self.spec.name} (slot_bytes="
                             f"{self.spec.slot_bytes}): raise slot_bytes")
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

    # -- consumer ----------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Record | None:
        """The oldest record (arrays are private copies), or None after ``timeout`` seconds with nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        h = self._h
        with self._get_lock:
            while True:
                self._acquire()
                try:
                    head, tail = int(h[_Q_HEAD]), int(h[_Q_TAIL])
                    if head > tail:
                        h[_Q_TAIL] = tail + 1
                        wake = h[_Q_PUT_WAIT]
                        h[_Q_PUT_WAIT] = 0
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
                    h[_Q_GET_WAIT] = 1
                finally:
                    self._lock.release()
                wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
                if wait <= 0:
                    return None
                self._not_empty.acquire(timeout=wait)
            if wake:
                self._not_full.release()
            return self._decode((tail % self._nslots) * self._stride + _Q_HDR)

    def _decode(self, base: int) -> Record:
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
                a = np.empty(shape, dtype)
                if a.size:
                    np.copyto(a, np.ndarray(shape, dtype, buffer=buf, offset=base + off))
                arrays[name] = a
                off = (off + a.nbytes + 15) & ~15
        meta = json.loads(bytes(buf[p + desc_len:p + desc_len + meta_len])) if meta_len else {}
        return Record(seq, ts, stream, index, arrays, meta, kind)
