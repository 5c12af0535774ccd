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

from app.cli.bench.plots import plot_embedder
from app.cli.common import BackendSpec, load_settings, read_image


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
