"""`facestream run`: read the settings, assemble the stages, run them, report how it went."""

from __future__ import annotations

import logging
import time

import numpy as np

from app.cli.common import load_settings
from app.display.annotate import Overlay
from app.display.present import OutputOptions, Present
from app.errors import FacestreamError
from app.settings import Settings
from app.stages.capture import VideoSource, parse_source
from app.types import Faces, FrameRef

log = logging.getLogger("facestream.run")


def add_parsers(sub) -> None:
    p = sub.add_parser("run", help="recognise faces in VIDEO_SOURCE and show the annotated video")
    p.add_argument("--source", help="override VIDEO_SOURCE")
    p.add_argument("--headless", action="store_true", help="no window: write --out and/or serve --serve")
    p.add_argument("--out", help="write the annotated video to this file")
    p.add_argument("--serve", type=int, metavar="PORT", help="serve the annotated video as MJPEG on 127.0.0.1:PORT")
    p.add_argument("--log-tracks", metavar="FILE", help="one JSON line per processed frame")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--every-frame", action="store_true", help="process every frame (default for files)")
    mode.add_argument("--live", action="store_true", help="drop stale frames to bound latency (default for streams)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    p.add_argument("--realtime", action="store_true",
                   help="replay a file at its frame rate, as a live camera would deliver it (implies --live)")
    p.add_argument("--validate-on-start", action="store_true",
                   help="before running, compare the embedding backend with ONNX Runtime FP32 on faces of the "
                        "source's first frames; stop if they drift apart")
    p.add_argument("--max-drift", type=float, default=0.001, help="drift bound for --validate-on-start")
    p.add_argument("--single-process", action="store_true",
                   help="run every stage in this process, one frame at a time (debugging, baseline)")
    p.set_defaults(func=cmd_run)


def output_options(settings: Settings, args, fps: float | dict[int, float],
                   streams: dict[int, str] | None = None,
                   sizes: dict[int, tuple[int, int]] | None = None) -> OutputOptions:
    headless = args.headless or settings.display != "window"
    return OutputOptions(
        window=not headless,
        out=args.out or (settings.output if headless else ""),
        serve_port=args.serve if args.serve is not None else settings.serve_port,
        serve_host=settings.serve_host,
        log_tracks=args.log_tracks or "",
        fps=fps,
        streams=streams or {0: ""},
        sizes=sizes or {},
        sink=getattr(args, "sink", False),
    )


def cmd_run(args) -> int:
    settings = load_settings(args, VIDEO_SOURCE=args.source)
    if not settings.sources:
        raise FacestreamError("VIDEO_SOURCE is empty: set it in .env (a file, 0 for a webcam, rtsp://… or "
                              "http://…) or pass --source")
    if args.validate_on_start:
        validate_on_start(settings, args.max_drift)
    if args.single_process:
        return run_local(settings, args)
    from app.cli.pipeline import run_pipeline

    return run_pipeline(settings, args)


def _validate(settings: Settings, frames: list) -> dict | None:
    from app.cli.common import BackendSpec
    from app.cli.tools import compare_backends

    spec = BackendSpec(settings.embedding_backend, settings.device, settings.gpu_precision)
    ref = BackendSpec("onnxruntime", "cpu", "fp32")
    try:
        return compare_backends(settings, frames, spec, ref)
    except FacestreamError:
        return None  # no face in those frames


def validate_on_start(settings: Settings, max_drift: float, frames: int = 30) -> None:
    """`compare` of the configured embedding backend against ONNX Runtime FP32, in a spawned process so
    no CUDA context is ever made in the parent."""
    import multiprocessing as mp

    source = VideoSource(parse_source(settings.sources[0]), settings.reconnect_max_delay)
    grabbed = []
    try:
        source.open()
        while len(grabbed) < frames and (frame := source.read()) is not None:
            grabbed.append((f"frame {len(grabbed)}", frame))
    finally:
        source.close()
    with mp.get_context("spawn").Pool(1) as pool:
        r = pool.apply(_validate, (settings, grabbed[::3]))
    if r is None:
        log.warning("validate-on-start: no face in the first %d frames; nothing to compare", frames)
        return
    log.info("validate-on-start: %s vs %s on %d faces: cosine mean %.6f min %.6f", r["a"], r["b"], r["faces"],
             r["cos_mean"], r["cos_min"])
    if 1.0 - r["cos_min"] > max_drift:
        raise FacestreamError(f"{r['a']} drifts from {r['b']} by {1 - r['cos_min']:.6f} (> {max_drift}) on "
                              f"{r['worst_face']}: use another backend or precision, or raise --max-drift")


class Stopwatch:
    """Busy time and count per named step, for the single-process loop's overlay and the bench baseline."""

    def __init__(self) -> None:
        self.busy: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def time(self, name: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.busy[name] = self.busy.get(name, 0.0) + t1 - t0
        self.count[name] = self.count.get(name, 0) + 1
        return t1

    def fps(self, name: str) -> float:
        return self.count.get(name, 0) / self.busy[name] if self.busy.get(name) else 0.0


def run_local(settings: Settings, args, present: Present | None = None, stages=None) -> int:
    """All stages in one process, one frame at a time: no batching, no shared memory."""
    from app.stages.align import Align
    from app.stages.detect import Detect
    from app.stages.embed_track import EmbedTrack
    from app.stages.identify import Identify
    from app.tracking.scene import SceneCuts

    spec = parse_source(settings.sources[0])
    source = VideoSource(spec, settings.reconnect_max_delay)
    _, _, fps = source.probe()
    detect, align, embed, identify = stages or (Detect(settings), Align(), EmbedTrack(settings, fps),
                                                Identify(settings))
    present = present or Present(output_options(settings, args, fps))
    watch = Stopwatch()
    latencies: list[float] = []
    index = 0
    cuts = SceneCuts()
    ok = False
    try:
        while not args.max_frames or index < args.max_frames:
            frame = source.read()
            if frame is None:
                if source.ended:
                    break
                continue
            ref = FrameRef(seq=index, ts=time.time(), index=index)
            t = time.perf_counter()
            dets = detect([frame])[0]
            t = watch.time("detect", t)
            crops = align(frame, dets)
            t = watch.time("align", t)
            faces = Faces(dets.boxes, dets.scores, dets.landmarks, scene=cuts.update(frame))
            faces = embed(faces, crops, frame_index=index)
            t = watch.time("embed+track", t)
            faces = identify(faces, removed=getattr(faces, "removed", None))
            watch.time("gallery", t)
            latencies.append(time.time() - ref.ts)
            overlay = Overlay([f"{spec.display_name}  frame {index}  single process"]
                              + [f"{k}: {watch.fps(k):.1f} fps" for k in watch.busy]
                              + [f"latency p50 {np.percentile(latencies[-300:], 50) * 1000:.0f} ms"])
            if not present(frame, ref, faces, overlay):
                break
            index += 1
        ok = True
    finally:
        present.close(ok=ok)
        source.close()
        identify.close()
    log.info("processed %d frames in one process; ms per frame: %s", index,
             ", ".join(f"{k} {watch.busy[k] / max(watch.count[k], 1) * 1000:.2f}" for k in watch.busy))
    return 0
