"""Assemble the multi-process pipeline from the settings and run it to the end."""

from __future__ import annotations

import logging
import sys

from app.cli.run import output_options
from app.errors import FacestreamError
from app.settings import Settings
from app.stages.capture import VideoSource, parse_source

log = logging.getLogger("facestream.run")

CROP_BYTES = 112 * 112 * 3
EMBED_BYTES = 512 * 4
#: stages the supervisor may restart after a crash: they hold no state that outlives a frame except the tracker
#: (embed+track: tracks re-form, with new ids) and reopen what they own (identify: the gallery).
#: Not capture (it numbers frames: a new one would restart at 0 and collide in the ring; a file would restart
#: from its beginning) nor display (it owns the output video, window and track log, which a restart would
#: truncate or reopen).
RESTARTABLE = ("detect", "align", "embed+track", "identify")


def preflight(settings: Settings) -> None:
    """Fail before any process starts: model files present and intact, the gallery openable."""
    from app.stages.identify import gallery_from_settings
    from engines.fetch import require
    from engines.model_zoo import get_info

    for name, task in ((settings.detector_model, "detector"), (settings.embedder_model, "embedder")):
        require(settings.checkpoint_dir, get_info(name, task).onnx)
    gallery_from_settings(settings).close()


def every_frame_mode(settings: Settings, args, live: bool) -> bool:
    if args.every_frame:
        return True
    if args.live:
        return False
    return {"true": True, "false": False}.get(settings.every_frame, not live)


def build_pipeline(settings: Settings, args):
    from app.runtime import Pipeline
    from app.runtime.stages import (
        AlignStage,
        CaptureStage,
        DetectStage,
        DisplayStage,
        EmbedTrackStage,
        IdentifyStage,
        ring_name,
    )

    specs = [parse_source(s) for s in settings.sources]
    if len(specs) > 1:  # capture, tracking and identities are per stream already; display tiles are not
        raise FacestreamError(f"VIDEO_SOURCE lists {len(specs)} sources, but the display shows one stream for now: "
                              "run one facestream per source")
    probes = []
    for spec in specs:
        src = VideoSource(spec, settings.reconnect_max_delay)
        try:
            probes.append(src.probe())
        finally:
            src.close()
    live = any(s.live for s in specs) or getattr(args, "realtime", False)
    every = every_frame_mode(settings, args, live)
    q = settings.queue_size if every else min(settings.queue_size, 2)  # live: short queues, bounded latency
    n = settings.max_faces
    pipe = Pipeline()
    rings = []
    for i, (w, h, _fps) in enumerate(probes):
        pipe.ring(ring_name(i), slots=5 * q + 8, height=h, width=w)
        rings.append(ring_name(i))
    pipe.queue("frames", capacity=q, slot_bytes=4096, policy="block" if every else "drop_oldest")
    pipe.queue("detections", q, slot_bytes=65536 + n * 64)
    pipe.queue("crops", q, slot_bytes=65536 + n * (CROP_BYTES + 64))
    pipe.queue("tracks", q, slot_bytes=65536 + n * (EMBED_BYTES + 96))
    pipe.queue("named", q, slot_bytes=65536 + n * 160)
    for i, spec in enumerate(specs):
        pipe.stage(f"capture{i}" if len(specs) > 1 else "capture",
                   CaptureStage(settings, spec.raw, i, args.max_frames, getattr(args, "realtime", False)),
                   outputs=["frames"], rings=[ring_name(i)])
    r = dict.fromkeys(RESTARTABLE, settings.stage_restarts)
    pipe.stage("detect", DetectStage(settings), ["frames"], ["detections"], rings, restarts=r["detect"])
    pipe.stage("align", AlignStage(settings), ["detections"], ["crops"], rings, restarts=r["align"])
    pipe.stage("embed+track", EmbedTrackStage(settings, {i: p[2] for i, p in enumerate(probes)}), ["crops"],
               ["tracks"], restarts=r["embed+track"])
    pipe.stage("identify", IdentifyStage(settings), ["tracks"], ["named"], restarts=r["identify"])
    names = {i: spec.display_name for i, spec in enumerate(specs)}
    pipe.stage("display", DisplayStage(settings, output_options(settings, args, probes[0][2]), names), ["named"],
               rings=rings)
    return pipe, every


def run_pipeline(settings: Settings, args, report: dict | None = None) -> int:
    """Run to the end; ``report`` (if given) receives the result and the per-stage stats."""
    preflight(settings)
    pipe, every = build_pipeline(settings, args)
    log.info("running %d stages (%s mode)", len(pipe.stages), "every-frame" if every else "live")
    result = pipe.run()
    if report is not None:
        report.update(result=result, stats=pipe.stage_stats(), every_frame=every)
    stats = {s.name: s for s in pipe.stage_stats()}
    shown = stats.get("display")
    frames = shown.items if shown else 0
    fps = frames / result.seconds if result.seconds else 0.0
    drops = sum(s.drops for s in stats.values())
    print(f"facestream: {result.reason}: {frames} frames in {result.seconds:.1f} s ({fps:.1f} fps), "
          f"{drops} dropped", file=sys.stderr)
    for s in stats.values():
        log.debug("%s: %d items, busy %.0f%%", s.name, s.items, s.busy * 100)
    if not result.ok:
        err = FacestreamError(result.summary())
        err.exit_code = result.exit_code
        raise err
    return 0
