"""The byte form of the pipeline's one record (``Faces`` with its ``FrameRef`` header) and of end-of-stream.

The only place a record becomes bytes and back: a fixed binary header (kind, the frame header), a text
descriptor of the arrays (``name:dtype:d0,d1;…``, parsed back with C-level string splits, much cheaper in
Python than a field-by-field binary header), the text fields as JSON, then each array 16-byte aligned.
Arrays are raw bytes, never pickled.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

from app.types import ARRAY_FIELDS, TEXT_FIELDS, Faces, FrameRef

DATA = 0
END = 1  # end of stream: no more records from this producer

# total length, kind, n arrays, descriptor length, seq, ts, stream, index, scene, text length
_HEAD = struct.Struct("<IBBHqdqqqI")
KIND_OFFSET = 4  # of the kind byte in an encoded record
_DTYPES: dict[str, np.dtype] = {}


@dataclass
class End:
    """End of stream from one producer (or, from ``StageContext.get``, from all of them)."""

    frame: FrameRef = field(default_factory=FrameRef)


def _arrays(rec: Faces) -> dict[str, np.ndarray]:
    out = {name: getattr(rec, name) for name in ARRAY_FIELDS if getattr(rec, name) is not None}
    if rec.removed:
        out["removed"] = np.asarray(rec.removed, np.int64)
    return out


def layout(rec: Faces | End) -> tuple[bytes, bytes, list[np.ndarray], list[int], int]:
    """(descriptor, text, arrays, data offsets, total bytes) of a record in a slot."""
    parts, values = [], []
    if isinstance(rec, Faces):
        for name, value in _arrays(rec).items():
            a = value if isinstance(value, np.ndarray) else np.asarray(value)
            if a.dtype.hasobject:
                raise TypeError(f"record field {name!r} has dtype object: only plain numeric arrays travel")
            parts.append(f"{name}:{a.dtype.str}:{','.join(map(str, a.shape))}")
            values.append(a)
        texts = {name: getattr(rec, name) for name in TEXT_FIELDS if getattr(rec, name)}
    else:
        texts = {}
    desc = ";".join(parts).encode()
    text = json.dumps(texts).encode() if texts else b""
    off = (_HEAD.size + len(desc) + len(text) + 15) & ~15
    offsets = []
    for a in values:
        offsets.append(off)
        off = (off + a.nbytes + 15) & ~15
    return desc, text, values, offsets, off


def encoded_size(rec: Faces | End) -> int:
    """Bytes ``rec`` takes in a queue slot (to size ``slot_bytes``)."""
    return layout(rec)[4]


def encode_into(buf: memoryview, base: int, rec: Faces | End, room: int, where: str) -> None:
    """Write ``rec`` at ``buf[base:]``; ``room`` bytes are there (``where`` names the queue in the error)."""
    desc, text, values, offsets, total = layout(rec)
    if total > room:
        raise ValueError(f"record of {total} bytes does not fit queue {where} (slot_bytes={room}): raise slot_bytes")
    f = rec.frame
    _HEAD.pack_into(buf, base, total, END if isinstance(rec, End) else DATA, len(values), len(desc), f.seq, f.ts,
                    f.stream, f.index, f.scene, len(text))
    p = base + _HEAD.size
    buf[p:p + len(desc)] = desc
    if text:
        buf[p + len(desc):p + len(desc) + len(text)] = text
    for a, o in zip(values, offsets):
        if a.size:
            np.copyto(np.ndarray(a.shape, a.dtype, buffer=buf, offset=base + o), a)


def decode(buf: memoryview, base: int) -> Faces | End:
    """The record at ``buf[base:]`` (arrays are private copies). Reads only inside ``buf`` whatever is there: a
    torn record makes it raise or return nonsense, never allocate without bound."""
    _total, kind, narr, desc_len, seq, ts, stream, index, scene, text_len = _HEAD.unpack_from(buf, base)
    frame = FrameRef(seq, ts, stream, index, scene)
    if kind == END:
        return End(frame)
    p = base + _HEAD.size
    rec = Faces(frame=frame)
    if narr:
        off = (_HEAD.size + desc_len + text_len + 15) & ~15
        for part in bytes(buf[p:p + desc_len]).decode().split(";"):
            name, dt, dims = part.split(":")
            dtype = _DTYPES.get(dt)
            if dtype is None:
                dtype = _DTYPES[dt] = np.dtype(dt)
            shape = tuple(map(int, dims.split(","))) if dims else ()
            a = np.ndarray(shape, dtype, buffer=buf, offset=base + off).copy()  # the view checks the bounds
            off = (off + a.nbytes + 15) & ~15
            if name == "removed":
                rec.removed = a.tolist()
            elif name in ARRAY_FIELDS:
                setattr(rec, name, a)
    if text_len:
        for name, value in json.loads(bytes(buf[p + desc_len:p + desc_len + text_len])).items():
            if name in TEXT_FIELDS:
                setattr(rec, name, list(value))
    return rec
