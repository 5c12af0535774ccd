"""`facestream bench pipeline`: the every-frame file run, a simulated live run and the one-process baseline, in
one command on one machine (and, with --streams, the live-streams sweep)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from app.cli.bench.analysis import bottleneck, latencies, percentiles, stage_row, steady_fps
from app.cli.bench.plots import plot_timeline
from app.cli.bench.streams import bench_streams
from app.cli.common import load_settings


def cmd_bench_pipeline(args) -> int:
    """Every-frame file run, simulated live run and the naive baseline, in one command on one machine."""
    import tempfile
    from dataclasses import replace

    from app.cli.assemble import RunRequest
    from app.cli.pipeline import run_pipeline
    from app.display.present import OutputOptions

    settings = load_settings(args, VIDEO_SOURCE=args.source)
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-"))
    # every frame is annotated (boxes, names, overlay drawn on a copy of it) and then dropped: the display's
    # real work without a video encoder's, which --out adds back
    base = RunRequest(headless=True, sink=True, max_frames=args.max_frames)
    result: dict = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, "
                               f"Python {platform.python_version()}",
                    "source": settings.sources[0], "detector": f"{settings.detector_model}/{settings.detector_backend}",
                    "embedder": f"{settings.embedder_model}/{settings.embedding_backend}"}

    def pipeline(name: str, **kw) -> None:
        log = tmp / f"{name}.jsonl"
        report: dict = {}
        started = time.time()
        run_pipeline(settings, replace(base, **kw, log_tracks=str(log)), report)
        t, lat, shown = latencies(log)
        frames = len(lat)
        seconds = report["result"].seconds
        result[name] = {
            "frames": frames, "seconds": round(seconds, 2), "processed_fps": steady_fps(shown),
            "wall_fps": round(frames / seconds, 2), "startup_s": round(shown[0] - started, 2) if frames else None,
            "latency": percentiles(lat), "every_frame": report["every_frame"],
            "stages": {s.name: stage_row(s, seconds) for s in report["stats"]},
        }
        result[name]["bottleneck"] = bottleneck(report["stats"], captures=kw.get("every_frame", False))
        result[name]["timeline"] = {"t": t.round(3).tolist(), "latency_ms": lat.round(1).tolist()}

    if not args.skip_every_frame:
        pipeline("every_frame", every_frame=True, out=args.out, loops=max(1, args.loops))
        result["processed_fps"] = result["every_frame"]["processed_fps"]
    if not args.skip_live:
        pipeline("live", realtime=True, live=True)
    if not args.skip_baseline:
        log = tmp / "baseline.jsonl"
        t0 = time.perf_counter()
        run_pipeline(settings, replace(base, log_tracks=str(log), single_process=True), {},
                     options=OutputOptions(log_tracks=str(log)))
        seconds = time.perf_counter() - t0
        _, _, shown = latencies(log)
        frames = len(shown)
        result["baseline"] = {"frames": frames, "seconds": round(seconds, 2), "processed_fps": steady_fps(shown),
                              "wall_fps": round(frames / seconds, 2),
                              "what": "naive loop: one process, one frame at a time, same models and gallery"}
        if "processed_fps" in result:
            result["speedup_vs_baseline"] = round(result["processed_fps"] / result["baseline"]["processed_fps"], 2)
    if args.streams:
        result["streams"] = bench_streams(settings, base, tmp, [int(n) for n in args.streams.split(",")],
                                          args.stream_frames, args.max_p99_ms)
        keeping = [r["streams"] for r in result["streams"] if r["keeps_up"]]
        result["max_streams"] = max(keeping) if keeping else 0
    print(f"# {result['machine']}; {result['detector']}, {result['embedder']}")
    for name in ("every_frame", "live", "baseline"):
        if name in result:
            r = result[name]
            lat = r.get("latency", {})
            lat_s = f"  latency p50/p95/p99 {lat['p50_ms']}/{lat['p95_ms']}/{lat['p99_ms']} ms" if lat else ""
            print(f"{name:12s} {r['frames']:5d} frames {r['seconds']:7.2f} s {r['processed_fps']:8.2f} fps "
                  f"(wall {r['wall_fps']:.2f}){lat_s}")
            if "stages" in r:
                print("             busy ms per frame: " + ", ".join(
                    f"{k} {v['ms_per_item']:.2f}" for k, v in r["stages"].items()))
                print("             waiting in queues: " + ", ".join(
                    f"{k} {v['waiting'] * 100:.0f}%" for k, v in r["stages"].items())
                      + f" -> bottleneck: {r['bottleneck']}")
    if "speedup_vs_baseline" in result:
        print(f"pipeline vs naive loop: {result['speedup_vs_baseline']}x")
    for r in result.get("streams", []):
        print(f"{r['streams']:3d} live streams: slowest {r['min_fps']:.1f} fps (source {r['source_fps']:.0f}), "
              f"shown {r['shown_pct']:.1f} %, worst p99 {r['worst_p99_ms']:.0f} ms, bottleneck {r['bottleneck']} "
              f"(waits {r['waiting'].get(r['bottleneck'], 0.0) * 100:.0f} %) -> "
              f"{'keeps up' if r['keeps_up'] else 'falls behind'}")
        print("     busy ms per frame: " + ", ".join(f"{k} {v:.2f}" for k, v in r["ms_per_frame"].items()))
        print("     waiting in queues: " + ", ".join(f"{k} {v * 100:.0f}%" for k, v in r["waiting"].items()))
        print("     worst latency each second (ms): " + " ".join(f"{v:.0f}" for v in r["max_latency_by_second_ms"]
                                                                if v is not None))
    if "max_streams" in result:
        print(f"most live streams that keep up: {result['max_streams']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot_timeline(result, args.plot)
    return 0


