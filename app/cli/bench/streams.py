"""The live-streams sweep: how many live copies of the source one pipeline keeps up with, and what stops it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.cli.bench.analysis import bottleneck, percentiles, steady_fps

if TYPE_CHECKING:
    from app.cli.assemble import RunRequest

#: a live stream keeps up when it shows this share of the frames its source delivered and its p99
#: capture→display latency stays under --max-p99-ms (default: bounded, a quarter of a second)
KEEP_UP_SHOWN = 0.98
KEEP_UP_P99_MS = 250.0


def bench_streams(settings, base: RunRequest, tmp: Path, counts: list[int], frames: int,
                  max_p99_ms: float = KEEP_UP_P99_MS) -> list[dict]:
    """For each count (ascending): that many copies of the source replayed live at their frame rate in one
    pipeline; per stream, the frames shown vs delivered and the capture→display latency. Stops at the first
    count that falls behind."""
    from dataclasses import replace

    from app.cli.pipeline import run_pipeline
    from app.stages.capture import VideoSource, parse_source

    source = settings.sources[0]
    probe = VideoSource(parse_source(source))
    try:
        source_fps = probe.probe()[2]
    finally:
        probe.close()
    rows = []
    for n in counts:
        log = tmp / f"streams{n}.jsonl"
        report: dict = {}
        multi = replace(settings, video_source=",".join([source] * n))
        run_pipeline(multi, replace(base, realtime=True, live=True, max_frames=frames, log_tracks=str(log)), report)
        stats = {s.name: s for s in report["stats"]}
        seconds = report["result"].seconds
        per = []
        logged = [json.loads(line) for line in log.read_text().splitlines()]
        for k in range(n):
            mine = [r for r in logged if r["stream"] == k]
            shown = np.array([r["display_ts"] for r in mine])
            lat = (shown - np.array([r["capture_ts"] for r in mine])) * 1000
            captured = stats[f"capture{k}" if n > 1 else "capture"].items
            per.append({"captured": captured, "shown": len(mine), "fps": steady_fps(shown), **percentiles(lat)})
        busy = {name: round(st.busy, 3) for name, st in stats.items() if not name.startswith("capture")}
        ms_per_frame = {name: round(1000 * st.busy_s / max(1, st.items), 3) for name, st in stats.items()}
        busy["capture (mean)"] = round(float(np.mean([st.busy for name, st in stats.items()
                                                      if name.startswith("capture")])), 3)
        cap_ts = np.array([r["capture_ts"] for r in logged])
        lat_all = (np.array([r["display_ts"] for r in logged]) - cap_ts) * 1000
        sec = (cap_ts - cap_ts.min()).astype(int) if len(cap_ts) else cap_ts.astype(int)
        by_second = [round(float(lat_all[sec == k].max()), 1) if (sec == k).any() else None
                     for k in range(int(sec.max()) + 1 if len(sec) else 0)]  # when the slow frames came
        shown_pct = 100.0 * sum(p["shown"] for p in per) / max(1, sum(p["captured"] for p in per))
        worst = max((p.get("p99_ms", float("inf")) for p in per), default=float("inf"))
        row = {"streams": n, "seconds": round(seconds, 2), "source_fps": round(source_fps, 2),
               "min_fps": min(p["fps"] for p in per), "shown_pct": round(shown_pct, 2), "worst_p99_ms": worst,
               "per_stream": per, "busy": busy, "ms_per_frame": ms_per_frame, "busiest": max(busy, key=busy.get),
               "waiting": {name: round(st.waiting, 3) for name, st in stats.items() if not name.startswith("capture")},
               "bottleneck": bottleneck(stats.values(), captures=False), "max_latency_by_second_ms": by_second}
        row["keeps_up"] = bool(shown_pct >= KEEP_UP_SHOWN * 100 and worst <= max_p99_ms)
        row["keep_up_rule"] = f"shown >= {KEEP_UP_SHOWN:.0%} of captured and worst p99 <= {max_p99_ms:.0f} ms"
        rows.append(row)
        if not row["keeps_up"]:
            break  # more streams will not do better: the last row names the bottleneck
    return rows


