"""Soak: run the whole pipeline on a looping live source for M minutes and watch for slow leaks.

Every ``--every`` seconds it records, per stage process, RSS (/proc/PID/status) and open fds (/proc/PID/fd), the
number of /dev/shm/fs_* segments and the capture→display latency p50/p99 of the frames shown since the last
sample (from the track log). It writes ``soak.csv``, ``soak.json`` (samples + verdict) and ``soak.png`` to
``--out``. Verdict per series: a least-squares slope over the second half of the run (the first half includes
warm-up: allocator arenas, tracker history), "growing" if it would add more than ``--rss-tolerance`` MiB of RSS
(or one fd / one segment) per hour.

    python bench/soak.py --minutes 10 --out docs/results/soak --env .env

The source is an MJPEG server on 127.0.0.1 looping ``--video`` at ``--fps`` (``bench/live.py``, shared with the
fault tests).
Needs a .env with CHECKPOINT_DIR and a gallery (``facestream enrol …``).
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.live import (  # noqa: E402 - the repo root must be importable first
    MjpegSource,
    encode_video,
    fault_env,
    latencies_ms,
    lines,
    live_run,
    open_fds,
    rss_kib,
    shm_segments,
    stage_pids,
    stderr_of,
    wait_for,
)


def run_segments(pid: int) -> set[str]:
    """This run's /dev/shm segments (named after the supervisor's pid): other runs on the machine don't count."""
    return {n for n in shm_segments() if n.startswith(f"fs_{pid}_")}


def slope_per_hour(t: list[float], y: list[float]) -> float:
    """Least-squares slope of the second half of the series, per hour."""
    half = len(t) // 2
    tt, yy = np.asarray(t[half:]), np.asarray(y[half:], float)
    if len(tt) < 3 or np.ptp(tt) == 0:
        return 0.0
    return float(np.polyfit(tt, yy, 1)[0] * 3600)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--env", type=Path, default=REPO / ".env", help=".env with CHECKPOINT_DIR and the gallery")
    ap.add_argument("--video", type=Path, default=REPO.parent / "shared/media/video/short_hamilton_clip.mp4")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--rss-tolerance", type=float, default=16.0, help="MiB per hour of RSS growth still 'flat'")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    env = fault_env(a.env.resolve(), a.out, RECONNECT_MAX_DELAY=1)
    log = a.out / "tracks.jsonl"
    log.unlink(missing_ok=True)  # a log left by an earlier run in --out would pass the wait for the first frames
    src = MjpegSource(encode_video(a.video), fps=a.fps).start()
    samples: list[dict] = []
    with live_run(env, src, "--headless", "--live", "--log-tracks", str(log)) as proc:
        wait_for(lambda: lines(log) >= 20, 120, "the first frames", proc)
        pids = stage_pids(proc.pid)
        t0, seen = time.monotonic(), lines(log)
        while time.monotonic() - t0 < a.minutes * 60:
            time.sleep(a.every)
            if proc.poll() is not None:
                raise SystemExit(f"the run ended early (exit {proc.returncode}):\n{stderr_of(env)}")
            now = lines(log)
            lat = latencies_ms(log, skip=seen)[: now - seen]
            row = {"t": round(time.monotonic() - t0, 1), "frames": now - seen,
                   "shm_segments": len(run_segments(proc.pid)),
                   "lat_p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                   "lat_p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None}
            for name, pid in stage_pids(proc.pid).items():
                row[f"rss_mib:{name}"] = round(rss_kib(pid) / 1024, 2)
                row[f"fds:{name}"] = open_fds(pid)
                row[f"restarted:{name}"] = int(pid != pids.get(name))
            seen = now
            samples.append(row)
            print(json.dumps(row), flush=True)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    t = [s["t"] for s in samples]
    verdict = {}
    for key in [k for k in samples[0] if k.startswith(("rss_mib:", "fds:")) or k == "shm_segments"]:
        slope = slope_per_hour(t, [s.get(key, np.nan) for s in samples])
        limit = a.rss_tolerance if key.startswith("rss") else 1.0
        verdict[key] = {"slope_per_hour": round(slope, 2), "flat": bool(slope <= limit)}
    summary = {
        "minutes": a.minutes, "source_fps": a.fps, "exit_code": code,
        "shm_left_after_exit": len(run_segments(proc.pid)),
        "summary_line": [s for s in stderr_of(env).splitlines() if s.startswith("facestream:")],
        "verdict": "flat" if all(v["flat"] for v in verdict.values()) else "growing",
        "series": verdict, "samples": samples,
    }
    (a.out / "soak.json").write_text(json.dumps(summary, indent=1))
    with open(a.out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(samples[0]))
        w.writeheader()
        w.writerows(samples)
    plot(samples, a.out / "soak.png", summary["verdict"])
    print(f"soak: {summary['verdict']} over {a.minutes:g} min; exit {code}; {summary['summary_line']}")
    return 0 if summary["verdict"] == "flat" and code == 130 and not summary["shm_left_after_exit"] else 1


def plot(samples: list[dict], path: Path, verdict: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for key in [k for k in samples[0] if k.startswith("rss_mib:")]:
        ax[0].plot(t, [s.get(key) for s in samples], label=key.split(":", 1)[1])
    ax[0].set_ylabel("RSS (MiB)")
    ax[0].legend(fontsize=7, ncol=3)
    ax[0].set_title(f"facestream soak: {verdict}")
    for key in [k for k in samples[0] if k.startswith("fds:")]:
        ax[1].plot(t, [s.get(key) for s in samples], label=key.split(":", 1)[1])
    ax[1].plot(t, [s["shm_segments"] for s in samples], "k--", label="/dev/shm fs_* segments")
    ax[1].set_ylabel("open fds / segments")
    ax[1].legend(fontsize=7, ncol=4)
    ax[2].plot(t, [s["lat_p50_ms"] for s in samples], label="p50")
    ax[2].plot(t, [s["lat_p99_ms"] for s in samples], label="p99")
    ax[2].set_ylabel("capture→display (ms)")
    ax[2].set_xlabel("minutes")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
