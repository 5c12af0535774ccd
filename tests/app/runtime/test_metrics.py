"""Per-stage counters: what a writer records is what any reader of the shared block sees."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from app.runtime.metrics import FAILED, LATENCIES, RUNNING, Metrics


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


# -- queue clocks: which stage is the bottleneck -------------------------------------------------------------

@dataclass
class _WaitingSource:
    """Like capture: waits for every other stage's set-up, then announces ``n`` records as fast as it can."""

    n: int

    def run(self, ctx) -> None:
        from app.runtime import Record

        while not ctx.all_metrics.all_running(except_=ctx.name):
            time.sleep(0.01)
        for i in range(self.n):
            t0 = time.perf_counter()
            ctx.put(Record(seq=i, ts=time.time()))
            ctx.metrics.tick(busy=time.perf_counter() - t0)


@dataclass
class _Work:
    """``cost`` seconds per record, after ``setup_s`` seconds of set-up (a model load)."""

    cost: float
    setup_s: float = 0.0

    def setup(self, ctx) -> None:
        time.sleep(self.setup_s)

    def process(self, rec, ctx):
        time.sleep(self.cost)
        return rec


@pytest.mark.timeout(60)
def test_queue_clocks_name_the_slow_stage_not_the_one_that_loaded_longest():
    """A slow stage with no set-up before a fast one with a long set-up: the clocks start at each stage's first
    record, so the early stage's wait for the other's set-up is not taken for starvation."""
    from app.cli.bench import _bottleneck
    from app.runtime import Pipeline

    p = Pipeline(grace=3.0)
    for name in ("a", "b", "c"):
        p.queue(name, capacity=4, slot_bytes=4096)
    p.stage("source", _WaitingSource(120), outputs=["a"])
    p.stage("slow", _Work(0.005), ["a"], ["b"])
    p.stage("loads_long", _Work(0.0005, setup_s=1.5), ["b"], ["c"])
    p.stage("sink", _Work(0.0), ["c"])
    assert p.run(timeout=50).exit_code == 0
    stats = {s.name: s for s in p.stage_stats()}
    assert _bottleneck(stats.values()) == "slow", {k: round(s.waiting, 2) for k, s in stats.items()}
    assert stats["slow"].waiting < 0.3 and stats["loads_long"].waiting > 0.6 and stats["source"].waiting > 0.6
    assert 0.5 < stats["slow"].run_s < 1.5  # 120 records x 5 ms: the set-up is not in it
