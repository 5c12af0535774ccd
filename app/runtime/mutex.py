"""libc's robust, process-shared pthread mutex, bound with ctypes: the record queue's inner lock."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import time
from typing import Any

SLICE = 0.1  # longest single wait: bounds the cost of a wake-up lost to a dead peer

class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class RobustMutex:
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
            until = min(deadline, time.clock_gettime(self._clock) + SLICE)
            ts.tv_sec, ts.tv_nsec = int(until), int(until % 1 * 1e9)
            rc = self._timed(addr, self._clock, ctypes.byref(ts))
            if rc != errno.ETIMEDOUT or until >= deadline:
                return rc


def load_robust_mutex() -> RobustMutex | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return RobustMutex()
    except (OSError, AttributeError):  # no libc symbols: fall back to a multiprocessing lock
        return None


MUTEX = load_robust_mutex()


def sem_trylock(lock: Any) -> int:
    return 0 if lock.acquire(False) else errno.EBUSY


def sem_unlock(lock: Any) -> int:
    lock.release()
    return 0


def closed(_addr: Any) -> int:
    raise ValueError("record queue is closed")

