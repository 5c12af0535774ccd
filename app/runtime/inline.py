"""The pipeline list in this one process, one frame at a time (``--single-process``: debugging, a baseline).

The same steps as on processes, driven by the same per-record code (``loops.process_batch``): a frame is
produced into its ring, then passed through every stage in turn; no queues, no batching, no overlap.
"""

from __future__ import annotations

import threading
import time

from app.protocol import Source
from app.runtime.chain import Layout, Step, sources_of
from app.runtime.context import StageContext
from app.runtime.loops import checked, process_batch
from app.runtime.metrics import FINISHED, RUNNING, Metrics
from app.runtime.ring import FrameRing, ring_name
from app.types import Faces


class Inline:
    """Run ``steps`` here. ``stats()`` reads the stages' counters (also after the run)."""

    def __init__(self, steps: list[Step], layout: Layout) -> None:
        self.sources, self.stages = sources_of(steps)
        if len(self.sources) != 1:
            raise ValueError("one process runs one source")
        self.layout = layout
        self.stop = threading.Event()
        self.final_stats: list = []

    def run(self, max_frames: int = 0) -> int:
        """Until the source ends, a stage asks to stop, or ``max_frames``; returns the frames produced.
        KeyboardInterrupt goes through (after every stage is torn down)."""
        names = [s.name for s in (*self.sources, *self.stages)]
        metrics = Metrics.create(names)
        rings = {ring_name(i): FrameRing.create(2, h, w) for i, (h, w) in self.layout.frames.items()}
        ctxs = {name: StageContext(name, rings, {}, {}, self.stop, metrics) for name in names}
        source: Source = self.sources[0].stage  # type: ignore[assignment]
        started = []
        frames = 0
        try:
            for step in self.stages:
                started.append(step.stage)
                step.stage.setup(ctxs[step.name])
                ctxs[step.name].metrics.status(RUNNING)
            src_ctx = ctxs[self.sources[0].name]
            src_ctx.metrics.status(RUNNING)
            started.append(source)
            source.setup(src_ctx)
            ring = rings[ring_name(source.stream)]
            while not self.stop.is_set() and not source.ended and (not max_frames or frames < max_frames):
                source.pace()
                t0 = time.perf_counter()
                rec = source.produce(ring)
                if rec is None:
                    continue
                src_ctx.metrics.tick(busy=time.perf_counter() - t0, ts=rec.frame.ts)
                frames += 1
                self._through([rec], 0, ctxs)
            for k, step in enumerate(self.stages):  # end of stream: what each stage held back goes on
                self._through(checked(step.stage, ctxs[step.name], step.stage.finish()), k + 1, ctxs)
            for ctx in ctxs.values():
                ctx.metrics.status(FINISHED)
        finally:
            self.final_stats = metrics.snapshot()
            for stage in reversed(started):
                stage.teardown()
            for ring in rings.values():
                ring.close()
            metrics.close()
        return frames

    def _through(self, recs: list[Faces], first: int, ctxs: dict[str, StageContext]) -> None:
        for step in self.stages[first:]:
            out = []
            for rec in recs:
                out += process_batch(step.stage, ctxs[step.name], [rec])
            recs = out
            if not recs:
                return
