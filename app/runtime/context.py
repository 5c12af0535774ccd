"""What a stage sees inside its process: its rings and queues, the stop flag, its metrics row."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from app.protocol import Health
from app.runtime.metrics import Metrics, StageMetrics
from app.runtime.queue import RecordQueue
from app.runtime.record import End
from app.runtime.ring import FrameRing, ring_name
from app.types import Faces, FrameRef

POLL = 0.05  # longest a blocked get/put waits before looking at the stop flag


class StopStage(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a stage by ``ctx.get``/``ctx.put`` when the pipeline is stopping."""


class StageContext:
    """One stage's handle on the pipeline (implements ``app.protocol.Context``, plus the runtime's own calls:
    get, put, end)."""

    def __init__(self, name: str, rings: dict[str, FrameRing], inputs: dict[str, RecordQueue],
                 outputs: dict[str, RecordQueue], stop: Any, metrics: Metrics,
                 producers: dict[str, int] | None = None) -> None:
        self.name = name
        self.rings = rings
        self.inputs = inputs
        self.outputs = outputs
        self.stop_event = stop
        self.all_metrics = metrics
        self.metrics: StageMetrics = metrics.writer(name)
        self._producers = producers or {}
        self._ends = dict.fromkeys(inputs, 0)
        self._open = list(inputs)  # inputs that have not ended yet
        self._rr = 0
        self._ended = False
        self._parent = mp.parent_process()
        self._taken = False  # a record has come in: from here the wait for input is the queue clock's
        self._next_parent_check = 0.0

    # -- what a stage sees (app.protocol.Context) --------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """True once the pipeline is stopping (or the supervisor died): leave your loop."""
        if self.stop_event.is_set():
            return True
        now = time.monotonic()
        if self._parent is not None and now >= self._next_parent_check:
            self._next_parent_check = now + 0.25
            if not self._parent.is_alive():
                self.stop_event.set()
                return True
        return False

    def request_stop(self) -> None:
        """Stop the whole pipeline (e.g. the display window was closed)."""
        self.stop_event.set()

    def drop(self, n: int = 1) -> None:
        self.metrics.drop(n)

    def health(self, state: Health, note: str = "", down_s: float = 0.0) -> None:
        self.metrics.health(state, note, down_s)

    def pending(self) -> int:
        return sum(q.qsize() for q in self.inputs.values())

    def ring_of(self, frame: FrameRef) -> FrameRing:
        return self.rings[ring_name(frame.stream)]

    def view(self, frame: FrameRef) -> np.ndarray | None:
        """Zero-copy pixels of ``frame`` in its ring, or None if they were overwritten."""
        return self.ring_of(frame).view(frame.seq)

    def frame_valid(self, frame: FrameRef) -> bool:
        return self.ring_of(frame).still_valid(frame.seq)

    def frame_memory(self) -> list[np.ndarray]:
        return [ring.memory() for ring in self.rings.values()]

    @property
    def table(self) -> Metrics:
        return self.all_metrics

    # -- input ------------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Faces | End | None:
        """The next record from any input; ``End`` once every producer of every input has ended; None after
        ``timeout``. Raises StopStage when the pipeline stops."""
        if not self._open:
            if self.inputs:
                return End()
            raise ValueError(f"stage {self.name} has no inputs")
        # the queue clock runs from the first record on: before it the stage waits for the others' set-up
        counted, t0 = self._taken, time.perf_counter()
        try:
            rec = self._get(timeout)
        finally:
            if counted:
                self.metrics.waited(get=time.perf_counter() - t0)
        self._taken = self._taken or rec is not None
        return rec

    def _get(self, timeout: float | None) -> Faces | End | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.stopping:
                raise StopStage
            n = len(self._open)
            slice_ = POLL if n == 1 else 0.005
            if deadline is not None:  # never wait past the caller's deadline (0: only what is queued now)
                slice_ = min(slice_, max(0.0, deadline - time.monotonic()))
            for k in range(n):
                qname = self._open[(self._rr + k) % n]
                q = self.inputs[qname]
                rec = q.get(timeout=slice_ if k == n - 1 else 0)
                if rec is None:
                    continue
                self._rr = (self._rr + k + 1) % n
                self.metrics.depth(sum(i.qsize() for i in self.inputs.values()))
                if isinstance(rec, End):
                    self._ends[qname] += 1
                    if self._ends[qname] >= self._producers.get(qname, 1):
                        self._open.remove(qname)
                        if not self._open:
                            return rec
                    break
                return rec
            if deadline is not None and time.monotonic() >= deadline:
                return None

    # -- output -----------------------------------------------------------------------------------------
    def put(self, record: Faces, output: str | None = None) -> None:
        """Send ``record`` to ``output`` (default: every output), waiting on ``block`` queues while not stopping."""
        targets = [self.outputs[output]] if output else list(self.outputs.values())
        t0 = time.perf_counter()
        for q in targets:
            while not q.put(record, timeout=POLL):
                if self.stopping:
                    raise StopStage
        self.metrics.waited(put=time.perf_counter() - t0)
        if any(q.spec.policy == "drop_oldest" for q in targets):
            self.metrics.set_drops(sum(q.drops for q in self.outputs.values()))

    def emit(self, records: Iterable[Faces | None]) -> None:
        for r in records:
            if r is not None:
                self.put(r)

    def end(self) -> None:
        """Send end-of-stream to every output (once)."""
        if not self._ended:
            self._ended = True
            for q in self.outputs.values():
                while not q.put(End(), timeout=POLL):
                    if self.stopping:
                        raise StopStage
            if any(q.spec.policy == "drop_oldest" for q in self.outputs.values()):
                self.metrics.set_drops(sum(q.drops for q in self.outputs.values()))

    def close(self) -> None:
        for seg in [*self.rings.values(), *self.inputs.values(), *self.outputs.values(), self.all_metrics]:
            seg.close()
