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
    bsub = p.add_subparsers(dest="what", metavar="WHAT")
    bsub.required = True
    m = bsub.add_parser("models", help="faces/s per backend and batch; detector ms per frame")
    m.add_argument("--backends", default="onnxruntime,pytorch",
                   help="comma-separated backend specs; the first is the baseline (default onnxruntime,pytorch)")
    m.add_argument("--batches", default="1,32,128")
    m.add_argument("--seconds", type=float, default=2.0, help="time per measurement (after warm-up)")
    m.add_argument("--image", help="photo for the detector timing (default: a shared scene if present)")
    m.add_argument("--json", help="write the results here")
    m.set_defaults(func=cmd_bench_models)


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
    if backend.on_gpu and backend.name == "pytorch":
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
        batch = embedder.preprocess(crops)
        ms = timer.median_ms(lambda batch=batch: embedder.backend.run(batch), seconds)
        rows.append({"model": settings.embedder_model, "backend": embedder.backend.describe(), "batch": b,
                     "ms_per_batch": round(ms, 3), "faces_per_s": round(b / ms * 1000, 1),
                     "peak_gpu_mb": _peak_gpu_mb(embedder.backend)})
    return rows


def bench_detector(settings, spec: BackendSpec, image: np.ndarray, seconds: float) -> list[dict]:
    import cv2

    from app.stages.detect import model_kwargs
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


def cmd_bench_models(args) -> int:
    settings = load_settings(args)
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
    print(f"# {result['machine']}")
    print(f"{'embedder backend':34s} {'batch':>5s} {'ms/batch':>10s} {'faces/s':>10s} {'vs base':>8s}")
    for r in result["embedder"]:
        r["vs_baseline"] = round(r["faces_per_s"] / base[r["batch"]], 2) if r["batch"] in base else None
        print(f"{r['backend']:34s} {r['batch']:5d} {r['ms_per_batch']:10.2f} {r['faces_per_s']:10.1f} "
              f"{r['vs_baseline'] or 0:7.2f}x")
    print(f"{'detector backend':34s} {'frame':>10s} {'ms/frame':>10s} {'faces':>6s}")
    for r in result["detector"]:
        print(f"{r['backend']:34s} {r['frame']:>10s} {r['ms_per_frame']:10.2f} {r['faces']:6d}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
