"""Assemble the multi-process pipeline from the settings and run it to the end."""

from __future__ import annotations

import logging
import math
import os
import sys
import time

from app.cli.run import output_options
from app.cli.summary import end_line, time_to_name_line, written_files
from app.errors import FacestreamError, Stopped
from app.gallery.outage import blind_seconds
from app.observe.server import serve_metrics
from app.observe.time_to_name import Collector
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
    """Fail before any process starts: model files present and intact, the gallery openable, reachable (a server
    gets QDRANT_WAIT_S seconds to answer) and filled by EMBEDDER_MODEL."""
    from engines.fetch import require
    from engines.model_zoo import get_info

    for name, task in ((settings.detector_model, "detector"), (settings.embedder_model, "embedder")):
        require(settings.checkpoint_dir, get_info(name, task).onnx)
    wait_for_gallery(settings)


def wait_for_gallery(settings: Settings, poll: float = 1.0) -> None:
    """Open the gallery; a server that does not answer is retried until QDRANT_WAIT_S, then one clear error."""
    import time

    from app.gallery import GalleryUnavailable
    from app.redact import redact
    from app.stages.identify import gallery_from_settings

    deadline = time.monotonic() + settings.qdrant_wait_s
    while True:
        gallery = gallery_from_settings(settings, connect=False)
        try:
            connect = getattr(gallery, "connect", None)
            if connect is not None:
                connect()
            return
        except GalleryUnavailable:
            left = deadline - time.monotonic()
            if left <= 0:
                err = GalleryUnavailable(
                    f"the Qdrant server at {redact(settings.qdrant_url)} did not answer within QDRANT_WAIT_S="
                    f"{settings.qdrant_wait_s:g} s: start it or fix QDRANT_URL (or raise QDRANT_WAIT_S for a server "
                    "that is still starting)")
                raise err from None
            log.debug("waiting for the Qdrant server at %s", redact(settings.qdrant_url))
        finally:
            gallery.close()
        time.sleep(min(poll, left))


def check_shared_memory(needed: int, streams: int, every: bool, folder: str = "/dev/shm") -> None:
    """Frames live in /dev/shm: a ring bigger than its free space would crash a stage with SIGBUS mid-run
    (a container's default /dev/shm is 64 MB), so say so before anything starts."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return  # not Linux: the platform decides where shared memory lives
    free = st.f_bavail * st.f_frsize
    if needed > free * 0.9:
        hint = "lower QUEUE_SIZE" if every else "use fewer streams"
        raise FacestreamError(f"the frame rings and queues of {streams} stream(s) need {needed / 2**20:.0f} MiB of "
                              f"{folder} but only {free / 2**20:.0f} MiB is free: give the container more "
                              f"(docker: shm_size) or {hint}")


def every_frame_mode(settings: Settings, args, live: bool) -> bool:
    if args.every_frame:
        return True
    if args.live:
        return False
    return {"true": True, "false": False}.get(settings.every_frame, not live)


def build_pipeline(settings: Settings, args):
    from app.events.wiring import add_publisher, events_link
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
    probes = []
    for spec in specs:
        src = VideoSource(spec, settings.reconnect_max_delay)
        try:
            probes.append(src.probe())
        finally:
            src.close()
    live = any(s.live for s in specs) or getattr(args, "realtime", False)
    every = every_frame_mode(settings, args, live)
    streams = len(specs)
    # live: short queues, two frames per stream, bound the latency (streams started together deliver bursts of
    # one frame each: a queue shorter than two bursts drops frames the next stage had time for). Every-frame:
    # the ring holds every frame that can be in flight (all 5 queues full, a batch in hand in detect and two in
    # embed+track, one in each other stage), so none is ever overwritten. Live: a stream's ring holds about
    # twice its share, and a frame older than that is dropped as stale (not worth 6 MB per 1080p slot).
    q = settings.queue_size if every else min(2 * streams, 64)
    in_hand = 3 * settings.detect_batch + 4  # a batch in detect, two in embed+track (one held while the next runs)
    slots = 5 * q + in_hand + 4 if every else min(5 * q + 8, max(16, 2 * math.ceil(5 * q / streams) + 8))
    n = settings.max_faces
    # a PyTorch detector that lands on a GPU also aligns the faces there (DetectStage): its records carry the crops
    align_on_gpu = settings.detector_backend == "pytorch" and settings.device != "cpu"
    queues = {"detections": 65536 + n * ((CROP_BYTES if align_on_gpu else 0) + 64),
              "crops": 65536 + n * (CROP_BYTES + 64), "tracks": 65536 + n * (EMBED_BYTES + 96),
              "named": 65536 + n * 160}  # slot bytes: room for MAX_FACES faces
    check_shared_memory(sum(slots * w * h * 3 for w, h, _ in probes) + q * (4096 + sum(queues.values())),
                        streams, every)
    pipe = Pipeline()
    rings = []
    for i, (w, h, _fps) in enumerate(probes):
        pipe.ring(ring_name(i), slots=slots, height=h, width=w)
        rings.append(ring_name(i))
    pipe.queue("frames", capacity=q, slot_bytes=4096, policy="block" if every else "drop_oldest")
    for name, slot_bytes in queues.items():
        pipe.queue(name, q, slot_bytes=slot_bytes)
    for i, spec in enumerate(specs):
        pipe.stage(f"capture{i}" if streams > 1 else "capture",
                   CaptureStage(settings, spec.raw, i, args.max_frames, getattr(args, "realtime", False),
                                getattr(args, "loops", 1)),
                   outputs=["frames"], rings=[ring_name(i)])
    r = dict.fromkeys(RESTARTABLE, settings.stage_restarts)
    sizes = [(h, w) for w, h, _ in probes]
    pipe.stage("detect", DetectStage(settings, sizes, align_on_gpu), ["frames"], ["detections"], rings,
               restarts=r["detect"])
    pipe.stage("align", AlignStage(settings), ["detections"], ["crops"], rings, restarts=r["align"])
    fps = {i: p[2] for i, p in enumerate(probes)}
    pipe.stage("embed+track", EmbedTrackStage(settings, fps), ["crops"], ["tracks"], restarts=r["embed+track"])
    link = events_link(settings, getattr(args, "run_id", None))
    pipe.events_link = link  # run_pipeline reads the time-to-name marks from it
    pipe.stage("identify", IdentifyStage(settings, link), ["tracks"], ["named"], rings, restarts=r["identify"])
    add_publisher(pipe, settings, link)
    names = {i: spec.display_name for i, spec in enumerate(specs)}
    options = output_options(settings, args, fps, names, sizes={i: (w, h) for i, (w, h, _) in enumerate(probes)})
    pipe.stage("display", DisplayStage(settings, options, names), ["named"], rings=rings)
    return pipe, every


def total_drops(stats) -> int:
    """Drops over all stages. Several captures share one frames queue and each reports its drop count, so
    those are counted once (the largest)."""
    stats = list(stats)
    captures = [s.drops for s in stats if s.name.startswith("capture")]
    return sum(s.drops for s in stats if not s.name.startswith("capture")) + max(captures, default=0)


def run_pipeline(settings: Settings, args, report: dict | None = None) -> int:
    """Run to the end; ``report`` (if given) receives the result and the per-stage stats. Ends with one line
    (how it ended, the files written); a stage failure is then raised as the run's one error line."""
    started = time.time()
    preflight(settings)
    from app.gallery.sightings_feed import policy_warning

    if policy_warning(settings):
        log.warning(policy_warning(settings))
    pipe, every = build_pipeline(settings, args)
    log.info("running %d stages (%s mode)", len(pipe.stages), "every-frame" if every else "live")
    server = serve_metrics(settings, lambda: pipe.metrics.spec if pipe.metrics is not None else None)
    marks = Collector(pipe.events_link.marks)
    try:
        result = pipe.run()
    finally:
        ttn = marks.close()
        if server is not None:
            server.close()
    if report is not None:
        report.update(result=result, stats=pipe.stage_stats(), every_frame=every, time_to_name=ttn)
    stats = {s.name: s for s in pipe.stage_stats()}
    shown = stats.get("display")
    frames = shown.items if shown else 0
    files = written_files(output_options(settings, args, 30.0, dict.fromkeys(range(len(settings.sources)), "")),
                          started)
    blind = blind_seconds(stats["identify"].error) if "identify" in stats else 0.0
    ttn_line = time_to_name_line(ttn) if not every else None  # live mode only: capture times are real time
    if ttn_line:
        print(ttn_line, file=sys.stderr)
    print(end_line(result.reason, frames, result.seconds, total_drops(stats.values()), files, blind), file=sys.stderr)
    for s in stats.values():
        log.debug("%s: %d items, busy %.0f%%", s.name, s.items, s.busy * 100)
    if result.reason == "failed":
        err = FacestreamError(result.summary())
        err.exit_code = result.exit_code
        raise err
    if not result.ok:  # Ctrl-C (130) or SIGTERM (143): a stop the user asked for, said above, not an error
        raise Stopped(result.exit_code)
    return 0
