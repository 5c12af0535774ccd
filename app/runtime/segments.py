"""Named shared-memory segments: created (and unlinked) by one owner, attached by name elsewhere.

Segments are named ``fs_<creator pid>_<token>_<tag>`` so a leftover in /dev/shm is easy to recognise.
The creating process owns a segment and unlinks it; other processes attach by name without telling
Python's resource tracker (which would otherwise unlink or warn about segments it does not own).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

PREFIX = "fs"
_ALIGN = 64


def align(n: int, to: int = _ALIGN) -> int:
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



class Attached:
    """A view of a shared-memory segment (``_shm``) that ``close()`` detaches; usable in ``with``, and closed before
    SharedMemory's own ``__del__`` would unmap pages our numpy views still point into."""

    _shm: SharedMemory | None = None

    def close(self) -> None:
        raise NotImplementedError

    def __del__(self) -> None:
        if getattr(self, "_shm", None) is not None:
            with contextlib.suppress(Exception):
                self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
