"""The per-record work the runtime does once for every stage: ring lookup, torn-frame check, drops, idle, finish;
and the same list run in one process (``Inline``)."""

from __future__ import annotations

import threading

import numpy as np

from app.protocol import Source, Stage
from app.runtime import Inline, Layout, Metrics, RecordQueue, StageContext, Step, ring_name
from app.runtime.loops import next_batch, process_batch
from app.runtime.ring import FrameRing
from app.types import Faces
from tests.app.runtime.helpers import end, rec


class Means(Stage):
    """Reads each record's frame; ``overwrite`` rewrites the ring slot of the given seq while it reads."""

    reads_frames = True

    def __init__(self, ring: FrameRing | None = None, overwrite: int = -1) -> None:
        self.ring, self.overwrite, self.seen = ring, overwrite, []

    def process(self, frame, r: Faces) -> Faces:
        self.seen.append(r.frame.seq)
        if r.frame.seq == self.overwrite:  # the writer laps the ring while we read
            self.ring.write(np.zeros_like(frame), r.frame.seq + self.ring.spec.slots, 0.0)
        return Faces(track_ids=np.array([int(frame.mean())]), frame=r.frame)


class Blind(Means):
    reads_frames = False

    def process(self, frame, r: Faces) -> Faces:
        assert frame is None
        return r


def context(name: str, rings: dict, inputs: dict | None = None) -> tuple[StageContext, Metrics]:
    metrics = Metrics.create([name])
    return StageContext(name, rings, inputs or {}, {}, threading.Event(), metrics), metrics


def test_frames_are_looked_up_once_and_an_overwritten_one_is_dropped_before_or_after_the_stage():
    with FrameRing.create(slots=4, height=2, width=2) as ring:
        for seq in range(6):  # frames 0 and 1 are gone (slots reused by 4 and 5)
            ring.write(np.full((2, 2, 3), seq, np.uint8), seq, 0.0)
        ctx, metrics = context("means", {ring_name(0): ring})
        try:
            stage = Means(ring, overwrite=3)
            out = process_batch(stage, ctx, [rec(seq=s) for s in (1, 2, 3, 4)])
            assert stage.seen == [2, 3, 4]  # frame 1 was dropped before the stage saw it
            assert [(r.frame.seq, int(r.track_ids[0])) for r in out] == [(2, 2), (4, 4)]  # 3: torn while read
            (stats,) = metrics.snapshot()
            assert stats.drops == 2 and stats.items == 4
            blind = process_batch(Blind(), ctx, [rec(seq=s) for s in (0, 3)])  # reads no pixels: nothing to tear
            assert [r.frame.seq for r in blind] == [0, 3]
        finally:
            metrics.close()


class Idler(Stage):
    idle_after = 0.01

    def __init__(self, q: RecordQueue) -> None:
        self.q, self.idles = q, 0

    def idle(self) -> None:
        self.idles += 1
        if self.idles == 3:
            self.q.put(rec(seq=7))


def test_idle_is_called_while_no_record_comes_and_the_batch_ends_at_end_of_stream():
    with RecordQueue.create(capacity=4, slot_bytes=1024) as q:
        ctx, metrics = context("idler", {}, {"in": q})
        try:
            stage = Idler(q)
            batch, ended = next_batch(ctx, 4, 0.0, stage.idle_after, stage.idle)
            assert stage.idles == 3 and [r.frame.seq for r in batch] == [7] and not ended
            q.put(rec(seq=8))
            q.put(end())
            batch, ended = next_batch(ctx, 4, 0.5, stage.idle_after, stage.idle)
            assert [r.frame.seq for r in batch] == [8] and ended
        finally:
            metrics.close()


class Frames(Source):
    def __init__(self, n: int) -> None:
        self.n = n

    def setup(self, ctx) -> None:
        self.i = 0

    def produce(self, ring) -> Faces | None:
        ring.write(np.full((2, 2, 3), self.i, np.uint8), self.i, 0.0)
        self.i += 1
        self.ended = self.i >= self.n
        return rec(seq=self.i - 1)


class HoldLast(Means):
    """Hands each record on one call late; the last at ``finish``."""

    def process_batch(self, frames, recs):
        out, self.held = getattr(self, "held", []), super().process_batch(frames, recs)
        return out

    def finish(self):
        return self.held


class Sink(Blind):
    def setup(self, ctx) -> None:
        self.got = []

    def process(self, frame, r: Faces) -> None:
        self.got.append((r.frame.seq, int(r.track_ids[0])))


def test_the_list_runs_in_one_process_with_the_same_stages_and_their_end_of_stream():
    sink = Sink()
    steps = [Step("capture", Frames(5), "frames"), Step("mean", HoldLast(), "means"), Step("sink", sink)]
    runner = Inline(steps, Layout({0: (2, 2)}, slots=2, capacity=1, live=False))
    assert runner.run() == 5
    assert sink.got == [(i, i) for i in range(5)]  # the held-back last record came out at the end
    stats = {s.name: s for s in runner.final_stats}
    assert stats["capture"].items == 5 and stats["sink"].items == 5 and stats["mean"].status == "finished"
