"""Figures read back from a run: latencies and rates from its track log, per-stage rows, the bottleneck."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def latencies(log: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(capture times from the first, capture→display ms, display times) of every frame in a track log."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    cap = np.array([r["capture_ts"] for r in rows])
    shown = np.array([r["display_ts"] for r in rows])
    return cap - cap[0] if len(cap) else cap, (shown - cap) * 1000, shown


def steady_fps(shown: np.ndarray) -> float:
    """Frames per second between the first and the last frame shown: start-up (model loading, CUDA graph
    capture) is reported separately, not averaged into the rate."""
    return round((len(shown) - 1) / (shown[-1] - shown[0]), 2) if len(shown) > 1 and shown[-1] > shown[0] else 0.0


def stage_row(s, seconds: float) -> dict:
    """One stage's figures: work per item, and time per item spent waiting for input / to hand output on."""
    per = 1000 / max(1, s.items)
    return {"items": s.items, "fps": round(s.items / seconds, 2), "busy": round(s.busy, 3),
            "ms_per_item": round(s.busy_s * per, 3), "wait_in_ms": round(s.get_s * per, 3),
            "wait_out_ms": round(s.put_s * per, 3), "waiting": round(s.waiting, 3), "drops": s.drops}


def bottleneck(stats, captures: bool = True) -> str:
    """The stage that spent the least of its running time waiting in its queues: every stage before it waits
    to hand records on, every stage after it waits for them. A live capture waits for its source's clock,
    not in a queue, so it is left out unless ``captures``."""
    rows = [s for s in stats if s.items and (captures or not s.name.startswith("capture"))]
    return min(rows, key=lambda s: s.waiting).name if rows else ""


def percentiles(lat: np.ndarray) -> dict:
    if not len(lat):
        return {}
    return {f"p{q}_ms": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)}


