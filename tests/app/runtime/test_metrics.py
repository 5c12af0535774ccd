"""Per-stage counters: what a writer records is what any reader of the shared block sees."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from app.protocol import Health, Source, Stage
from app.runtime.metrics import FAILED, LATENCIES, RUNNING, Metrics
from app.types import Faces
from tests.app.runtime.helpers import rec


def test_counters_rates_and_latency_percentiles_are_shared():
    owner = Metrics.create(["detect", "embed"])
    reader = Metrics.attach(owner.spec)
    try:
        w = owner.writer("embed")
        w.status(RUNNING)
        now = time.time()
        lat = np.linspace(0.010, 0.110, 101)  # 10..110 ms
        for x in lat:
            w.tick(busy=0.001, ts=now - x)
        slack = time.time() - now + 1e-4  # each latency is measured late by at most this
        w.drop(3)
        w.depth(5)
        first = {s.name: s for s in reader.snapshot()}
        e = first["embed"]
        assert (e.items, e.drops, e.depth, e.status, e.pid > 0) == (101, 3, 5, "running", True)
        for got, q in ((e.latency_p50, 50), (e.latency_p99, 99)):
            assert np.percentile(lat, q) - 1e-4 <= got <= np.percentile(lat, q) + slack
        assert first["detect"].items == 0 and first["detect"].status == "idle"
        time.sleep(0.1)
        for _ in range(50):
            w.tick(busy=0.001)
        second = {s.name: s for s in reader.snapshot()}["embed"]
        assert 50 / 0.5 < second.fps < 50 / 0.05  # rate over the interval between the two snapshots
        assert second.items == 151
        assert len(reader.overlay_lines()) == 2 and reader.overlay_lines()[1].startswith("embed:")
    finally:
        reader.close()
        owner.close()


def test_latency_ring_keeps_only_the_most_recent_values():
    m = Metrics.create(["gallery"])
    try:
        w = m.writer("gallery")
        now = time.time()
        for _ in range(LATENCIES):
            w.tick(ts=now - 5.0)  # old, slow period
        for _ in range(LATENCIES):
            w.tick(ts=time.time() - 0.02)
        s = m.snapshot()[0]
        assert s.latency_p99 < 1.0 and s.latency == pytest.approx(0.02, abs=0.01)
    finally:
        m.close()


def test_error_line_is_one_truncated_line():
    m = Metrics.create(["align"])
    try:
        m.writer("align").status(FAILED, "ValueError: " + "x" * 400 + "\nmore")
        status, error = m.status("align")
        assert status == FAILED and error.startswith("ValueError: xxx") and "\n" not in error and len(error) <= 256
    finally:
        m.close()


def test_health_is_a_typed_column_apart_from_the_status_and_error():
    """A source's or the gallery's state reaches every reader as (state, note, seconds down), whatever the
    stage's own status and error line say."""
    owner = Metrics.create(["capture", "identify"])
    try:
        reader = Metrics.attach(owner.spec)
        assert reader.health("capture") == (Health.OK, "", 0.0)
        owner.writer("capture").status(RUNNING)
        owner.writer("capture").health(Health.DOWN, "source capture: reconnecting (try 2, next in 1.0 s)")
        owner.writer("identify").health(Health.RECOVERED, "gallery: reconnected", down_s=3.5)
        assert reader.health("capture") == (Health.DOWN, "source capture: reconnecting (try 2, next in 1.0 s)", 0.0)
        assert reader.status("capture") == (RUNNING, "")
        stats = {s.name: s for s in reader.snapshot()}
        assert (stats["identify"].health, stats["identify"].down_s) == (Health.RECOVERED, 3.5)
        reader.close()
    finally:
        owner.close()


# -- queue clocks: which stage is the bottleneck -------------------------------------------------------------

@dataclass
class _Source(Source):
    """Announces ``n`` records as fast as it can (once every other stage is set up, as every source does)."""

    n: int

    def setup(self, ctx) -> None:
        self.i = 0

    def produce(self, ring) -> Faces | None:
        self.ended = self.i + 1 >= self.n
        self.i += 1
        return rec(seq=self.i - 1, ts=time.time())


@dataclass
class _Work(Stage):
    """``cost`` seconds per record, after ``setup_s`` seconds of set-up (a model load)."""

    cost: float
    setup_s: float = 0.0

    def setup(self, ctx) -> None:
        time.sleep(self.setup_s)

    def process(self, frame, r: Faces) -> Faces:
        time.sleep(self.cost)
        return r


@pytest.mark.timeout(60)
def test_queue_clocks_name_the_slow_stage_not_the_one_that_loaded_longest():
    """A slow stage with no set-up before a fast one with a long set-up: the clocks start at each stage's first
    record, so the early stage's wait for the other's set-up is not taken for starvation."""
    from app.cli.bench.analysis import bottleneck
    from app.runtime import Pipeline, ring_name

    p = Pipeline(grace=3.0)
    for name in ("a", "b", "c"):
        p.queue(name, capacity=4, slot_bytes=4096)
    p.ring(ring_name(0), slots=2, height=2, width=2)
    p.stage("source", _Source(120), outputs=["a"], rings=[ring_name(0)])
    p.stage("slow", _Work(0.005), ["a"], ["b"])
    p.stage("loads_long", _Work(0.0005, setup_s=1.5), ["b"], ["c"])
    p.stage("sink", _Work(0.0), ["c"])
    assert p.run(timeout=50).exit_code == 0
    stats = {s.name: s for s in p.stage_stats()}
    assert bottleneck(stats.values()) == "slow", {k: round(s.waiting, 2) for k, s in stats.items()}
    assert stats["slow"].waiting < 0.3 and stats["loads_long"].waiting > 0.6 and stats["source"].waiting > 0.6
    assert 0.5 < stats["slow"].run_s < 1.5  # 120 records x 5 ms: the set-up is not in it
