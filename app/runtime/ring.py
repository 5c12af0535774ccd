"""The frame ring: frames written once into fixed slots of one shared segment, found again by sequence number.

Timestamps are ``time.time()`` seconds: comparable across processes, the same clock as ``FrameRef.ts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from app.runtime.segments import Attached, align, attach_segment, create_segment, release_segment, segment_name

# Per-slot header, int64 words: version (odd while being written), seq, ts (float64 bits), stream, index, h, w, c
_H_VER, _H_SEQ, _H_TS, _H_STREAM, _H_INDEX, _H_H, _H_W, _H_C = range(8)
_SLOT_HDR = 64
_RING_HDR = 64  # int64 words: magic, slots, height, width, channels
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
        return align(self.slot_bytes, 4096)

    @property
    def header_bytes(self) -> int:
        """Ring header + slot headers, rounded up to whole pages (one page up to 63 slots)."""
        return align(_RING_HDR + self.slots * _SLOT_HDR, 4096)

    @property
    def size(self) -> int:
        return self.header_bytes + self.slots * self.stride  # headers, then page-aligned frames


class FrameRing(Attached):
    """``slots`` fixed frames of at most height×width×channels uint8 in one shared segment.

    One writer per ring. A frame lives in slot ``seq % slots`` until the writer wraps round to it; each
    slot has a seqlock (version odd while it is being written), so a reader either gets the frame it asked
    for or None — never torn pixels. ``view`` is zero-copy and must be re-checked with ``still_valid`` after
    use.
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
        ring._ring[:5] = (_RING_MAGIC, slots, height, width, channels)
        ring._hdr[:] = 0
        ring._hdr[:, _H_SEQ] = -1
        return ring

    @classmethod
    def attach(cls, spec: RingSpec | str) -> FrameRing:
        """Attach by spec, or by bare name (geometry then read from the segment's header)."""
        shm = attach_segment(spec if isinstance(spec, str) else spec.name)
        head = np.ndarray((5,), np.int64, buffer=shm.buf).copy()
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
        return slot

    def abort(self, seq: int) -> None:
        """Give up an in-place write: the slot holds no frame (a reader of its old frame sees it is gone)."""
        hdr = self._hdr[seq % self.spec.slots]
        hdr[_H_SEQ] = -1
        hdr[_H_VER] = int(hdr[_H_VER]) + 1

    # -- readers -----------------------------------------------------------------------------------------
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


def ring_name(stream: int) -> str:
    """The ring of one stream's frames (one writer: that stream's capture)."""
    return f"frames{stream}"
