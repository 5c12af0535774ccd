"""The one place the pipeline list is built: from the settings and what the run asked for, the steps (which
stage, with what config, writing which queue) and the shared memory they run over. The multi-process run and
``--single-process`` run this same list (``app.runtime.build_pipeline`` / ``app.runtime.Inline``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from app.cli.run import output_options
from app.display.present import OutputOptions
from app.errors import FacestreamError
from app.events.tap import EventsLink
from app.events.wiring import events_link, publisher_step
from app.runtime import Layout, Step
from app.settings import Settings
from app.stages.align import AlignStage
from app.stages.capture import Capture, VideoSource, parse_source
from app.stages.detect import DetectStage
from app.stages.display import DisplayStage
from app.stages.embed_track import EmbedTrackStage
from app.stages.identify import IdentifyStage

CROP_BYTES = 112 * 112 * 3
EMBED_BYTES = 512 * 4
#: stages the supervisor may restart after a crash: they hold no state that outlives a frame except the tracker
#: (embed+track: tracks re-form, with new ids) and reopen what they own (identify: the gallery).
#: Not capture (it numbers frames: a new one would restart at 0 and collide in the ring; a file would restart
#: from its beginning) nor display (it owns the output video, window and track log, which a restart would
#: truncate or reopen).
RESTARTABLE = ("detect", "align", "embed+track", "identify")


@dataclass
class RunRequest:
    """What a run asked for beyond the settings (the CLI's flags; the benchmarks build one directly)."""

    headless: bool = False
    out: str | None = None
    serve: int | None = None
    log_tracks: str | None = None
    overlay: str | None = None
    sink: bool = False  # annotate every frame but send it nowhere (benchmarks)
    every_frame: bool = False
    live: bool = False
    realtime: bool = False  # replay a file at its frame rate, as a live camera would deliver it
    max_frames: int = 0
    loops: int = 1  # play a file this many times
    single_process: bool = False
    run_id: str | None = None  # events' run id (default: a new one)

    @classmethod
    def from_args(cls, args) -> RunRequest:
        return cls(**{k: getattr(args, k) for k in cls.__dataclass_fields__ if hasattr(args, k)})


@dataclass
class Plan:
    steps: list[Step]
    layout: Layout
    every: bool  # every frame processed (files), or live (stale frames dropped)
    options: OutputOptions
    link: EventsLink | None = None  # the run id and where events and time-to-name marks go


def every_frame_mode(settings: Settings, request: RunRequest, live: bool) -> bool:
    if request.every_frame:
        return True
    if request.live:
        return False
    return {"true": True, "false": False}.get(settings.every_frame, not live)


def detect_aligns(settings: Settings) -> bool:
    """A PyTorch detector on a GPU cuts the aligned crops itself: the list then has no align stage."""
    return settings.detector_backend == "pytorch" and settings.device != "cpu"


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


def probe(sources: list[str], reconnect_max_delay: float) -> list[tuple[int, int, float]]:
    """(width, height, fps) of every source."""
    probes = []
    for raw in sources:
        src = VideoSource(parse_source(raw), reconnect_max_delay)
        try:
            probes.append(src.probe())
        finally:
            src.close()
    return probes


def assemble(settings: Settings, request: RunRequest, options: OutputOptions | None = None,
             marks: str | None = None) -> Plan:
    """The pipeline list for ``settings`` and ``request`` (``options``: the display's outputs, if not the
    ones the settings and request give; ``marks``: a folder for time-to-name marks, None: not kept)."""
    specs = [parse_source(s) for s in settings.sources]
    probes = probe(settings.sources, settings.reconnect_max_delay)
    live = any(s.live for s in specs) or request.realtime
    every = every_frame_mode(settings, request, live)
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
    aligns = detect_aligns(settings)
    sizes = [(h, w) for w, h, _ in probes]
    fps = {i: p[2] for i, p in enumerate(probes)}
    names = {i: spec.display_name for i, spec in enumerate(specs)}
    options = options or output_options(settings, request, fps, names,
                                        sizes={i: (w, h) for i, (w, h, _) in enumerate(probes)})
    threads = settings.decoder_threads()
    steps = [Step(f"capture{i}" if streams > 1 else "capture",
                  Capture(spec.raw, i, settings.reconnect_max_delay, threads, request.max_frames, request.realtime,
                          request.loops), "frames", 4096)
             for i, spec in enumerate(specs)]
    steps.append(Step("detect", DetectStage(settings, sizes, aligns), "detections",
                      65536 + n * ((CROP_BYTES if aligns else 0) + 64)))
    if not aligns:
        steps.append(Step("align", AlignStage(), "crops", 65536 + n * (CROP_BYTES + 64)))
    link = events_link(settings, marks, request.run_id)
    steps += [Step("embed+track", EmbedTrackStage(settings, fps), "tracks", 65536 + n * (EMBED_BYTES + 96)),
              Step("identify", IdentifyStage(settings, link), "named", 65536 + n * 160)]
    steps += [s for s in [publisher_step(settings, link, 65536 + n * 160)] if s]  # events: only with a sink
    steps.append(Step("display", DisplayStage(options, names)))
    for step in steps:
        step.restarts = settings.stage_restarts if step.name in RESTARTABLE else 0
    queued = 4096 + sum(s.out_bytes for s in steps[streams:-1])  # a record of each queue, the frames' included
    check_shared_memory(sum(slots * w * h * 3 for w, h, _ in probes) + q * queued, streams, every)
    return Plan(steps, Layout({i: hw for i, hw in enumerate(sizes)}, slots, q, live=not every), every, options,
                link)
