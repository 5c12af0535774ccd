"""Per-stage counters: what a writer records is what any reader of the shared block sees."""

from __future__ import annotations

import time

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
