"""The control channel's message format: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.

A request is ``{"op": NAME, "args": {...}}``; a reply ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error": KIND, "message": LINE}``. Bytes (photos) travel as ``{"$b64": ...}`` and float32 arrays (embeddings) as
``{"$f32": base64, "shape": [...]}``, so one message needs no second frame. Sizes are bounded on both sides: a
peer announcing more than ``MAX_MESSAGE`` is cut off instead of being read into memory.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
from typing import Any

import numpy as np

MAX_MESSAGE = 64 << 20  # 64 MiB: a few dozen photos at the upload limit, with room for base64
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A malformed or oversized frame, or a peer that hung up mid-message."""


def encode(value: Any) -> Any:
    """``value`` with bytes and numpy arrays made JSON-able (see module doc)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value, np.float32)
        return {"$f32": base64.b64encode(a.tobytes()).decode("ascii"), "shape": list(a.shape)}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def decode(value: Any) -> Any:
    """The inverse of ``encode``."""
    if isinstance(value, dict):
        if "$b64" in value:
            return base64.b64decode(value["$b64"])
        if "$f32" in value:
            return np.frombuffer(base64.b64decode(value["$f32"]), np.float32).reshape(value["shape"]).copy()
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def dumps(message: dict) -> bytes:
    body = json.dumps(encode(message), separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body) >> 20} MiB is over the control channel's "
                            f"{MAX_MESSAGE >> 20} MiB: send fewer or smaller photos at a time")
    return _HEADER.pack(len(body)) + body


def loads(body: bytes) -> dict:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return decode(message)


def send(sock: socket.socket, message: dict) -> None:
    sock.sendall(dumps(message))


def _read(sock: socket.socket, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ProtocolError("the peer closed the connection mid-message")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def recv(sock: socket.socket) -> dict | None:
    """The next message, or None when the peer closed the connection between messages."""
    head = sock.recv(_HEADER.size, socket.MSG_WAITALL)
    if not head:
        return None
    if len(head) < _HEADER.size:
        head += _read(sock, _HEADER.size - len(head))
    (size,) = _HEADER.unpack(head)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"a message of {size} bytes is over the {MAX_MESSAGE} byte limit")
    return loads(_read(sock, size))
