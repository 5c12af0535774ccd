"""The batched stage form: up to ``batch_size`` records per call, filled within ``batch_wait``, order kept."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.protocol import Stage
from app.runtime import Pipeline, ring_name
from app.types import Faces
from tests.app.runtime.test_process import Collect, CountSource, leftovers


@dataclass
class BatchMean(Stage):
    """Mean pixel of each frame, computed a batch at a time; the batch sizes seen go to ``sizes``."""

    sizes: str
    batch_size: int = 4
    batch_wait: float = 0.0
    reads_frames = True

    def setup(self, ctx) -> None:
        self.seen: list[int] = []

    def process_batch(self, frames: list, recs: list[Faces]) -> list[Faces]:
        self.seen.append(len(recs))
        return [Faces(track_ids=np.array([int(f.mean())]), frame=r.frame) for f, r in zip(frames, recs)]

    def teardown(self) -> None:
        Path(self.sizes).write_text(json.dumps(self.seen))


def batched(tmp: Path, n: int, interval: float, size: int, wait: float) -> Pipeline:
    p = Pipeline(grace=3.0)
    p.ring(ring_name(0), slots=32, height=24, width=32)
    p.queue("announced", capacity=8, slot_bytes=4096)
    p.queue("means", capacity=8, slot_bytes=4096)
    p.stage("source", CountSource(n, interval), outputs=["announced"], rings=[ring_name(0)])
    p.stage("mean", BatchMean(str(tmp / "sizes.json"), size, wait), ["announced"], ["means"], rings=[ring_name(0)])
    p.stage("sink", Collect(str(tmp / "rows.json")), inputs=["means"])
    return p


@pytest.mark.timeout(60)
def test_a_fast_source_fills_batches_and_every_record_arrives_in_order(tmp_path):
    p = batched(tmp_path, n=200, interval=0.0, size=4, wait=0.05)
    result = p.run(timeout=50)
    assert result.exit_code == 0, result.summary()
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows == [[i, i % 251] for i in range(200)]
    sizes = json.loads((tmp_path / "sizes.json").read_text())
    assert sum(sizes) == 200 and max(sizes) == 4
    assert sizes.count(4) >= len(sizes) // 2, sizes  # the queue is full most of the time: mostly full batches
    assert {s.name: s.items for s in p.stage_stats()}["mean"] == 200
    assert leftovers() == []


@pytest.mark.timeout(60)
def test_a_slow_source_is_not_held_back_waiting_for_a_full_batch(tmp_path):
    """Records 20 ms apart and a 1 ms wait: each goes on alone instead of waiting for three more. (The source
    starts once the batched stage is set up: records that queued during its start-up would make full batches.)"""
    p = batched(tmp_path, n=30, interval=0.02, size=4, wait=0.001)
    assert p.run(timeout=50).exit_code == 0
    sizes = json.loads((tmp_path / "sizes.json").read_text())
    assert sum(sizes) == 30 and sizes.count(1) >= 25, sizes
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r[0] for r in rows] == list(range(30))
    stats = {st.name: st for st in p.stage_stats()}
    # the queues' clocks name the bottleneck: here the source; the batched stage waits for input nearly always
    assert stats["mean"].waiting > 0.8 and stats["mean"].get_s > 0.4, stats["mean"]


@dataclass
class HoldBack(BatchMean):
    """Hands each batch on one call late (as embed+track overlaps a batch's GPU work with the next)."""

    def process_batch(self, frames: list, recs: list[Faces]) -> list[Faces]:
        out, self.held = getattr(self, "held", []), super().process_batch(frames, recs)
        return out

    def finish(self) -> list[Faces]:
        out, self.held = getattr(self, "held", []), []
        return out


@pytest.mark.timeout(60)
def test_a_batched_stage_that_holds_records_back_hands_them_on_at_the_end(tmp_path):
    p = Pipeline(grace=3.0)
    p.ring(ring_name(0), slots=32, height=24, width=32)
    p.queue("announced", capacity=8, slot_bytes=4096)
    p.queue("means", capacity=8, slot_bytes=4096)
    p.stage("source", CountSource(50, 0.0), outputs=["announced"], rings=[ring_name(0)])
    p.stage("mean", HoldBack(str(tmp_path / "sizes.json"), 4, 0.01), ["announced"], ["means"], rings=[ring_name(0)])
    p.stage("sink", Collect(str(tmp_path / "rows.json")), inputs=["means"])
    assert p.run(timeout=50).exit_code == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r[0] for r in rows] == list(range(50))  # the last batch too: the runtime asked for it at the end
    assert leftovers() == []
