"""The compact overlay's text: every stage's rate on one short line, latency (and drops) on a second."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

SHORT = {"capture": "cap", "detect": "det", "align": "aln", "embed+track": "emb", "identify": "id",
         "gallery": "id", "display": "out"}


class Rate(Protocol):
    name: str
    fps: float
    drops: int


@dataclass
class StageRate:
    """A stage's rate where no metrics block exists (the single-process run)."""

    name: str
    fps: float
    drops: int = 0


def short_name(stage: str) -> str:
    """``detect`` -> ``det``; every ``captureN`` of a multi-stream run is ``cap``."""
    return "cap" if stage.startswith("capture") else SHORT.get(stage, stage[:4])


def compact_lines(stats: Iterable[Rate], p50_ms: float, p99_ms: float) -> list[str]:
    """Two short lines: ``det 30 | emb 30 | ... fps`` (captures of several streams added up: the stages after
    them see all their frames) and ``latency 40 ms (p99 80)`` with the drops when there are any."""
    fps: dict[str, float] = {}
    drops = capture_drops = 0
    for s in stats:
        key = short_name(s.name)
        fps[key] = fps.get(key, 0.0) + s.fps
        if key == "cap":  # the captures share one queue and each reports its drops: counted once
            capture_drops = max(capture_drops, s.drops)
        else:
            drops += s.drops
    drops += capture_drops
    rates = " | ".join(f"{k} {v:.0f}" for k, v in fps.items())
    tail = f"  drops {drops}" if drops else ""
    return [f"{rates} fps" if rates else "starting", f"latency {p50_ms:.0f} ms (p99 {p99_ms:.0f}){tail}"]
