"""`facestream run`: read the settings, assemble the stages, run them, report how it went."""

from __future__ import annotations

import logging
import sys

from app.cli.common import load_settings, without_gpu
from app.display.present import KEYS, OutputOptions
from app.errors import FacestreamError
from app.settings import OVERLAY_MODES, Settings
from app.stages.capture import VideoSource, parse_source

log = logging.getLogger("facestream.run")


def add_parsers(sub) -> None:
    p = sub.add_parser("run", help="recognise faces in VIDEO_SOURCE and show the annotated video",
                       description="Recognise faces in VIDEO_SOURCE and show the annotated video in a window (or, "
                       "--headless, write it to --out and/or serve it with --serve). A file in the window plays "
                       "at its own frame rate, every frame processed.",
                       epilog=f"window keys: {window_keys()}")
    p.add_argument("--source", help="file, webcam index, rtsp:// or http:// MJPEG URL (default: VIDEO_SOURCE)")
    p.add_argument("--headless", action="store_true", help="no window: write --out and/or serve --serve")
    p.add_argument("--out", help="write the annotated video to this file (default: OUTPUT when headless)")
    p.add_argument("--serve", type=serve_arg, metavar="[HOST:]PORT",
                   help="serve the web app (live view, face library, REST API) on HOST:PORT (HOST default: "
                        "SERVE_HOST, 127.0.0.1; any other address needs API_TOKEN; PORT default: SERVE_PORT)")
    p.add_argument("--log-tracks", metavar="FILE", help="one JSON line per processed frame (default: none)")
    p.add_argument("--overlay", choices=OVERLAY_MODES,
                   help="stats overlay: compact, full or off (default: OVERLAY, compact); the o key cycles it")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--every-frame", action="store_true",
                      help="process every frame (default for files): what --out and --log-tracks get; a window "
                           "shows a file at its own frame rate, the stages waiting for it, none dropped")
    mode.add_argument("--live", action="store_true", help="drop stale frames to bound latency (default for streams)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (default 0: no limit)")
    p.add_argument("--realtime", action="store_true",
                   help="replay a file at its frame rate, as a live camera would deliver it (implies --live)")
    p.add_argument("--loop", action="store_true",
                   help="replay a file forever (with --realtime it behaves like a camera)")
    p.add_argument("--validate-on-start", action="store_true",
                   help="before running, compare the embedding backend with ONNX Runtime FP32 on faces of the "
                        "source's first frames; stop if they drift apart")
    p.add_argument("--max-drift", type=float, default=0.001, help="drift bound for --validate-on-start")
    p.add_argument("--single-process", action="store_true",
                   help="run every stage in this process, one frame at a time (debugging, baseline)")
    p.set_defaults(func=cmd_run)


def serve_arg(value: str) -> tuple[str | None, int]:
    """``--serve [HOST:]PORT`` for argparse (its error names the option and the expected form)."""
    import argparse

    from app.web.server import parse_serve

    try:
        return parse_serve(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--serve {value!r}: ")) from None


def window_keys() -> str:
    """The window's keys in one line, for `run --help`."""
    return "; ".join(f"{key}: {what}" for key, what in KEYS)


def output_options(settings: Settings, args, fps: float | dict[int, float],
                   streams: dict[int, str] | None = None,
                   sizes: dict[int, tuple[int, int]] | None = None) -> OutputOptions:
    headless = args.headless or settings.display != "window"
    serve = (None, args.serve) if isinstance(args.serve, int) else args.serve  # a port alone, or --serve's (host, port)
    files = bool(settings.sources) and not any(parse_source(s).live for s in settings.sources)
    return OutputOptions(
        window=not headless,
        out=args.out or (settings.output if headless else ""),
        serve_port=serve[1] if serve is not None else settings.serve_port,
        serve_host=(serve[0] if serve is not None else None) or settings.serve_host,
        log_tracks=args.log_tracks or "",
        fps=fps,
        streams=streams or {0: ""},
        sizes=sizes or {},
        sink=getattr(args, "sink", False),
        overlay=getattr(args, "overlay", None) or settings.overlay,
        pace=not headless and files,  # a file in a window plays at its frame rate; files written get every frame
        settings=settings,
        privacy_blur=settings.privacy_blur,
    )


#: settings other than the window, --out, --serve and --log-tracks through which a run keeps or sends what it
#: saw (getattr: a later output, e.g. events, adds its field's name here and counts without more code)
OTHER_OUTPUTS = ("mqtt_url", "webhook_url")


def check_outputs(settings: Settings, args) -> None:
    """A headless run must keep or send something: otherwise it would decode and recognise the whole source
    (hours, on a stream) and leave nothing behind. DISPLAY_MODE=none is the way to ask for that on purpose
    (benchmarks, profiling)."""
    if settings.display == "none" and not args.headless:
        return
    options = output_options(settings, args, 30.0)
    if options.window or options.out or options.serve_port or options.log_tracks or options.sink:
        return
    if any(getattr(settings, name, None) for name in OTHER_OUTPUTS):
        return
    mode = "--headless" if args.headless else f"DISPLAY_MODE={settings.display}"
    raise FacestreamError(f"{mode} with no output would run and keep nothing: add --out FILE.mp4, --serve PORT "
                          "or --log-tracks FILE (or OUTPUT / SERVE_PORT in .env; DISPLAY_MODE=none to run with no "
                          "output on purpose)")


def check_serve(settings: Settings, args) -> None:
    """Beyond loopback only with API_TOKEN: refused here, before anything starts (one line, exit 2)."""
    from app.web.bind import check_bind

    options = output_options(settings, args, 30.0)
    if options.serve_port:
        check_bind(options.serve_host, options.serve_port, settings.api_token)


def check_loop(settings: Settings, args) -> None:
    """``--loop`` replays files: a live source has no end to start again from."""
    args.loops = getattr(args, "loops", 1)
    if not getattr(args, "loop", False):
        return
    live = [s for s in settings.sources if parse_source(s).live]
    if live:
        raise FacestreamError(f"--loop replays files, but {parse_source(live[0]).display_name} is a live source: "
                              "drop --loop")
    args.loops = sys.maxsize


def cmd_run(args) -> int:
    settings = load_settings(args, VIDEO_SOURCE=args.source)
    if not settings.sources:
        raise FacestreamError("VIDEO_SOURCE is empty: set it in .env (a file, 0 for a webcam, rtsp://… or "
                              "http://…) or pass --source")
    for source in settings.sources:  # what to read first (a missing file is the likelier slip), then where to write
        parse_source(source)
    check_outputs(settings, args)
    check_serve(settings, args)
    check_loop(settings, args)
    settings = without_gpu(settings)
    if args.validate_on_start:
        validate_on_start(settings, args.max_drift)
    from app.cli.assemble import RunRequest
    from app.cli.pipeline import run_pipeline

    return run_pipeline(settings, RunRequest.from_args(args))


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
