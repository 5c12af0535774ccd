"""`facestream bench models`: faces/s and ms per batch for every backend present, against a baseline
measured in the same command (the first backend listed, ONNX Runtime FP32 by default)."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from app.cli.common import BackendSpec, load_settings, read_image


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="measure the models (bench models) or the whole pipeline (bench pipeline)")
    bsub = p.add_subparsers(dest="what", metavar="WHAT", help="models or pipeline")
    bsub.required = True
    m = bsub.add_parser("models", help="faces/s per backend and batch; detector ms per frame")
    m.add_argument("--backends", default="onnxruntime,pytorch",
                   help="comma-separated backend specs; the first is the baseline (default onnxruntime,pytorch)")
    m.add_argument("--batches", default="1,32,128", help="comma-separated batch sizes of faces to time")
    m.add_argument("--seconds", type=float, default=2.0, help="time per measurement (after warm-up)")
    m.add_argument("--image", help="photo for the detector timing (default: a shared scene if present)")
    m.add_argument("--json", help="write the results here (default: print only)")
    m.add_argument("--plot", help="write a PNG chart of faces/s per backend and batch here")
    m.add_argument("--engine-build", action="store_true",
                   help="also time a fresh TensorRT engine build (FP32 and FP16) of both models, if TensorRT is here")
    m.set_defaults(func=cmd_bench_models)

    pl = bsub.add_parser("pipeline", help="the real multi-process pipeline vs the naive one-frame-at-a-time loop")
    pl.add_argument("--source", help="a video file (default VIDEO_SOURCE)")
    pl.add_argument("--json", help="write the results here (default: print only)")
    pl.add_argument("--plot", help="write a PNG timeline of capture→display latency here")
    pl.add_argument("--max-frames", type=int, default=0, help="frames of the source per run (default 0: all)")
    pl.add_argument("--loops", type=int, default=1,
                    help="play the file this many times in the every-frame run (a longer steady window)")
    pl.add_argument("--skip-baseline", action="store_true", help="skip the naive one-frame-at-a-time baseline run")
    pl.add_argument("--skip-live", action="store_true", help="skip the simulated live (real-time replay) run")
    pl.add_argument("--skip-every-frame", action="store_true", help="skip the every-frame file run (with --streams)")
    pl.add_argument("--out", help="also write the every-frame run's annotated video here (costs the encoding)")
    pl.add_argument("--streams", default="",
                    help="comma-separated stream counts (e.g. 1,4,8,16): run that many live copies of the source "
                         "at its frame rate and find the most that keep up (default: none)")
    pl.add_argument("--stream-frames", type=int, default=300, help="frames per stream in each --streams run")
    pl.add_argument("--max-p99-ms", type=float, default=250.0,
                    help="a --streams run keeps up while every stream's p99 latency stays under this")
    pl.set_defaults(func=cmd_bench_pipeline)


class Timer:
    """Median milliseconds of a callable; CUDA work is synchronised so the figure is device time too."""

    def __init__(self, sync=None) -> None:
        self.sync = sync or (lambda: None)

    def median_ms(self, fn, seconds: float, warmup: int = 3, min_runs: int = 5) -> float:
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < min_runs:
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)


def _sync_for(backend):
    if backend.on_gpu:
        import torch

        return torch.cuda.synchronize
    return None


def _peak_gpu_mb(backend) -> float | None:
    if backend.on_gpu and backend.name.startswith("pytorch"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return None


def bench_embedder(settings, spec: BackendSpec, batches: list[int], seconds: float) -> list[dict]:
    from app.cli.tools import _embedder

    embedder = _embedder(settings, spec)
    timer = Timer(_sync_for(embedder.backend))
    rng = np.random.default_rng(0)
    rows = []
    for b in batches:
        crops = rng.integers(0, 255, (b, 112, 112, 3), dtype=np.uint8)
        # uint8 crops in, normalised embeddings out: preprocessing and transfers are part of the figure
        ms = timer.median_ms(lambda crops=crops: embedder.embed(crops), seconds)
        rows.append({"model": settings.embedder_model, "backend": embedder.backend.describe(), "batch": b,
                     "ms_per_batch": round(ms, 3), "faces_per_s": round(b / ms * 1000, 1),
                     "peak_gpu_mb": _peak_gpu_mb(embedder.backend)})
    return rows


def bench_detector(settings, spec: BackendSpec, image: np.ndarray, seconds: float) -> list[dict]:
    import cv2

    from app.stages.models import model_kwargs
    from engines.model_zoo import load_detector

    kw = model_kwargs(settings)
    kw.update(device=spec.device, precision=spec.precision)
    detector = load_detector(settings.detector_model, spec.backend, **kw, input_size=(settings.det_size,) * 2,
                             score_threshold=settings.det_threshold, nms_threshold=settings.nms_threshold)
    timer = Timer(_sync_for(detector.backend))
    rows = []
    for label, frame in (("640x640", cv2.resize(image, (640, 640))), ("1920x1080", cv2.resize(image, (1920, 1080)))):
        ms = timer.median_ms(lambda frame=frame: detector.detect(frame), seconds)
        rows.append({"model": settings.detector_model, "backend": detector.backend.describe(), "frame": label,
                     "ms_per_frame": round(ms, 3), "faces": len(detector.detect(frame))})
    return rows


def bench_engine_build(settings) -> list[dict]:
    """Seconds for a fresh build of each shipped model's engine, FP32 and FP16, into a throw-away folder."""
    import tempfile

    from engines.errors import EngineError
    from engines.fetch import require
    from engines.model_zoo import get_info
    from engines.tensorrt.cache import build_engines

    models = [(name, require(settings.checkpoint_dir, get_info(name, kind).onnx), kind)
              for name, kind in ((settings.detector_model, "detector"), (settings.embedder_model, "embedder"))]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            records = build_engines(models, tmp, precisions=("fp32", "fp16"), max_batch=128, opt_batch=32,
                                    det_size=(settings.det_size,) * 2, store=False)
    except EngineError as exc:
        print(f"bench: engine build skipped ({exc})", file=sys.stderr)
        return []
    return [{"engine": r.path.name, "seconds": round(r.build_seconds, 2), "mb": round(r.size_bytes / 2**20, 1)}
            for r in records]


def cmd_bench_models(args) -> int:
    from dataclasses import replace

    settings = replace(load_settings(args), strict_gpu=False)  # the backends to measure are named explicitly
    specs = [BackendSpec.parse(s) for s in args.backends.split(",") if s]
    batches = [int(b) for b in args.batches.split(",")]
    shared = Path(__file__).resolve().parents[2].parent / "shared/media/scenes/six_people.jpg"
    image = read_image(args.image or shared)
    result = {"machine": f"{platform.processor() or platform.machine()} ({platform.node()}), "
                         f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
              "embedder": [], "detector": []}
    for spec in specs:
        try:
            result["embedder"] += bench_embedder(settings, spec, batches, args.seconds)
            result["detector"] += bench_detector(settings, spec, image, args.seconds)
        except Exception as exc:  # one backend failing must not hide the others' figures
            print(f"bench: {spec}: skipped ({exc})", file=sys.stderr)
    first = result["embedder"][0]["backend"] if result["embedder"] else None
    base = {r["batch"]: r["faces_per_s"] for r in result["embedder"] if r["backend"] == first}
    if args.engine_build:
        result["engine_build"] = bench_engine_build(settings)
    print(f"# {result['machine']}")
    print(f"{'embedder backend':34s} {'batch':>5s} {'ms/batch':>10s} {'faces/s':>10s} {'vs base':>8s}")
    for r in result["embedder"]:
        r["vs_baseline"] = round(r["faces_per_s"] / base[r["batch"]], 2) if r["batch"] in base else None
        print(f"{r['backend']:34s} {r['batch']:5d} {r['ms_per_batch']:10.2f} {r['faces_per_s']:10.1f} "
              f"{r['vs_baseline'] or 0:7.2f}x")
    print(f"{'detector backend':34s} {'frame':>10s} {'ms/frame':>10s} {'faces':>6s}")
    for r in result["detector"]:
        print(f"{r['backend']:34s} {r['frame']:>10s} {r['ms_per_frame']:10.2f} {r['faces']:6d}")
    for r in result.get("engine_build", []):
        print(f"engine build {r['engine']:52s} {r['seconds']:6.2f} s {r['mb']:6.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.plot:
        plot_embedder(result, args.plot)
    return 0


def plot_embedder(result: dict, path: str) -> None:
    """Grouped bars: faces/s per backend at each batch size (log scale: CPU and GPU differ by 100x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(r["backend"] for r in result["embedder"]))
    batches = sorted({r["batch"] for r in result["embedder"]})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(backends), 1)
    for k, b in enumerate(backends):
        vals = [next((r["faces_per_s"] for r in result["embedder"] if r["backend"] == b and r["batch"] == n), 0)
                for n in batches]
        ax.bar([i + k * width for i in range(len(batches))], vals, width, label=b)
    ax.set_xticks([i + width * (len(backends) - 1) / 2 for i in range(len(batches))], [f"batch {n}" for n in batches])
    ax.set_yscale("log")
    ax.set_ylabel("faces/s")
    ax.set_title(f"ArcFace embedder throughput — {result['machine']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _latencies(log: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(capture times from the first, capture→display ms, display times) of every frame in a track log."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    cap = np.array([r["capture_ts"] for r in rows])
    shown = np.array([r["display_ts"] for r in rows])
    return cap - cap[0] if len(cap) else cap, (shown - cap) * 1000, shown


def _steady_fps(shown: np.ndarray) -> float:
    """Frames per second between the first and the last frame shown: start-up (model loading, CUDA graph
    capture) is reported separately, not averaged into the rate."""
    return round((len(shown) - 1) / (shown[-1] - shown[0]), 2) if len(shown) > 1 and shown[-1] > shown[0] else 0.0


def _stage_row(s, seconds: float) -> dict:
    """One stage's figures: work per item, and time per item spent waiting for input / to hand output on."""
    per = 1000 / max(1, s.items)
    return {"items": s.items, "fps": round(s.items / seconds, 2), "busy": round(s.busy, 3),
            "ms_per_item": round(s.busy_s * per, 3), "wait_in_ms": round(s.get_s * per, 3),
            "wait_out_ms": round(s.put_s * per, 3), "waiting": round(s.waiting, 3), "drops": s.drops}


def _bottleneck(stats, captures: bool = True) -> str:
    """The stage that spent the least of its running time waiting in its queues: every stage before it waits
    to hand records on, every stage after it waits for them. A live capture waits for its source's clock,
    not in a queue, so it is left out unless ``captures``."""
    rows = [s for s in stats if s.items and (captures or not s.name.startswith("capture"))]
    return min(rows, key=lambda s: s.waiting).name if rows else ""


def _pct(lat: np.ndarray) -> dict:
    if not len(lat):
        return {}
    return {f"p{q}_ms": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)}


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
        t, lat, shown = _latencies(log)
        frames = len(lat)
        seconds = report["result"].seconds
        result[name] = {
            "frames": frames, "seconds": round(seconds, 2), "processed_fps": _steady_fps(shown),
            "wall_fps": round(frames / seconds, 2), "startup_s": round(shown[0] - started, 2) if frames else None,
            "latency": _pct(lat), "every_frame": report["every_frame"],
            "stages": {s.name: _stage_row(s, seconds) for s in report["stats"]},
        }
        result[name]["bottleneck"] = _bottleneck(report["stats"], captures=kw.get("every_frame", False))
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
        _, _, shown = _latencies(log)
        frames = len(shown)
        result["baseline"] = {"frames": frames, "seconds": round(seconds, 2), "processed_fps": _steady_fps(shown),
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
        _plot_timeline(result, args.plot)
    return 0


#: a live stream keeps up when it shows this share of the frames its source delivered and its p99
#: capture→display latency stays under --max-p99-ms (default: bounded, a quarter of a second)
KEEP_UP_SHOWN = 0.98
KEEP_UP_P99_MS = 250.0


def bench_streams(settings, base, tmp: Path, counts: list[int], frames: int,
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
            per.append({"captured": captured, "shown": len(mine), "fps": _steady_fps(shown), **_pct(lat)})
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
               "bottleneck": _bottleneck(stats.values(), captures=False), "max_latency_by_second_ms": by_second}
        row["keeps_up"] = bool(shown_pct >= KEEP_UP_SHOWN * 100 and worst <= max_p99_ms)
        row["keep_up_rule"] = f"shown >= {KEEP_UP_SHOWN:.0%} of captured and worst p99 <= {max_p99_ms:.0f} ms"
        rows.append(row)
        if not row["keeps_up"]:
            break  # more streams will not do better: the last row names the bottleneck
    return rows


def _plot_timeline(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name in ("every_frame", "live"):
        if name in result:
            tl = result[name]["timeline"]
            ax.plot(tl["t"], tl["latency_ms"], lw=1, label=f"{name} ({result[name]['processed_fps']} fps)")
    ax.set_xlabel("capture time (s)")
    ax.set_ylabel("capture→display (ms)")
    ax.set_title(f"pipeline latency — {result['machine']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
