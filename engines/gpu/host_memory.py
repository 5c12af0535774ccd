"""Host memory a GPU model uploads from: pinned staging buffers, and memory page-locked where it lies.

Frames decoded into a pinned buffer, or living in a shared-memory ring that CUDA has registered, reach the
device by DMA with no extra host copy; anything else is first copied into a pinned buffer (over a few threads
when large: one thread copies ~7 GB/s, a 1080p frame is 6 MB).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

#: host copies larger than this are split over threads
PARALLEL_COPY_BYTES = 1 << 20
_COPY_POOL: ThreadPoolExecutor | None = None


def parallel_copy(dst: np.ndarray, src: np.ndarray, workers: int = 4) -> None:
    """``dst[...] = src`` split into row blocks over a few threads (numpy releases the GIL while copying)."""
    global _COPY_POOL
    if src.nbytes < PARALLEL_COPY_BYTES:
        np.copyto(dst, src)
        return
    if _COPY_POOL is None:
        _COPY_POOL = ThreadPoolExecutor(workers, thread_name_prefix="frame-copy")
    d, s = dst.reshape(-1, *dst.shape[2:]), src.reshape(-1, *src.shape[2:])  # frames x rows as one axis
    step = -(-len(d) // workers)
    list(_COPY_POOL.map(lambda i: np.copyto(d[i:i + step], s[i:i + step]), range(0, len(d), step)))


class HostMemory:
    """Pinned uint8 buffers by shape, and the host ranges registered with CUDA, for uploads to ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pinned: dict[tuple[int, ...], torch.Tensor] = {}
        self._registered: list[tuple[int, int]] = []  # [start, end) of host memory page-locked for us

    def buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The pinned (page-locked on CUDA) uint8 tensor of ``shape``, made once per shape."""
        buf = self._pinned.get(shape)
        if buf is None:
            buf = self._pinned[shape] = torch.empty(shape, dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        return buf

    def staged(self, frames: np.ndarray) -> torch.Tensor:
        """``frames`` in a pinned buffer: as they are if they already live in that shape's buffer, else copied."""
        pinned = self._pinned.get(frames.shape)
        if pinned is None or pinned.data_ptr() != frames.ctypes.data:
            pinned = self.buffer(frames.shape)
            parallel_copy(pinned.numpy(), frames)
        return pinned

    def register(self, memory: np.ndarray) -> bool:
        """Page-lock ``memory`` in CUDA where it lies; False, and nothing changes, where CUDA refuses."""
        if self.device.type != "cuda" or memory.nbytes == 0:
            return False
        start = memory.ctypes.data
        try:
            torch.cuda.check_error(torch.cuda.cudart().cudaHostRegister(start, memory.nbytes, 0))
        except Exception:  # noqa: BLE001 - e.g. a locked-memory limit: the staging path still works
            return False
        self._registered.append((start, start + memory.nbytes))
        return True

    def unregister(self) -> None:
        """Undo every ``register`` (before the memory is unmapped)."""
        for start, _ in self._registered:
            with contextlib.suppress(Exception):  # best effort at teardown
                torch.cuda.cudart().cudaHostUnregister(start)
        self._registered.clear()

    def is_registered(self, frame: np.ndarray) -> bool:
        """True if ``frame`` lies whole inside registered memory (so it can be DMA'd from where it is)."""
        start = frame.ctypes.data
        return frame.flags.c_contiguous and any(a <= start and start + frame.nbytes <= b for a, b in self._registered)

    def clear(self) -> None:
        self.unregister()
        self._pinned.clear()
