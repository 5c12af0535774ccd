"""Process wrappers: each turns one plain stage object into a runtime target (records in, records out).

The stage objects never see shared memory or queues; these wrappers read frames from the ring by
sequence number, drop a frame whose slot was overwritten, and carry only small arrays onward.
Every wrapper is a picklable module-level class built from Settings in the parent and set up in
the child, so models (and CUDA) exist only inside stage processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from dataclasses import dataclass

import numpy as np

from app.redact import setup_logging
from app.runtime.metrics import RUNNING
from app.runtime.process import StageContext
from app.runtime.shm import Record
from app.settings import Settings
from app.types import Faces, FrameRef
from engines.types import Detections

log = logging.getLogger("facestream.stage")


def ring_name(stream: int) -> str:
    return f"frames{stream}"


def faces_record(rec: Record, faces: Faces, **extra: np.ndarray) -> Record:
    """The record after ``rec``: its frame header, these faces; capture's scene counter travels on whatever
    the stage in between made of the faces (detect builds them anew)."""
    arrays = {**faces.arrays(), **extra}
    if "scene" in rec.arrays and "scene" not in arrays:
        arrays["scene"] = rec.arrays["scene"]
    return Record(seq=rec.seq, ts=rec.ts, stream=rec.stream, index=rec.index, arrays=arrays, meta=faces.meta())


def _faces(rec: Record) -> Faces:
    return Faces.from_arrays(rec.arrays, rec.meta)


SOURCE_PREFIX = "source: "  # capture's status text in its metrics row, read by the display's overlay


def name_process(stage: str) -> None:
    """Name this process ``fs-<stage>`` in /proc/PID/comm so ps, top and the fault tests can find a stage."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: names are a convenience only
        ctypes.CDLL(None, use_errno=True).prctl(15, f"fs-{stage}"[:15].encode(), 0, 0, 0)  # PR_SET_NAME


def free_orphaned_locks(ctx: StageContext, wait: float = 1.0) -> list[str]:
    """After a restart, free the queue locks our killed predecessor died holding.

    In this pipeline a restartable stage is the only consumer of its inputs and the only producer of its
    outputs, so the get-lock of an input (put-lock of an output) can only be held by the previous instance of
    this very stage: if it stays taken for ``wait`` seconds, that process is dead inside it and the lock is
    released here, instead of the new instance blocking on it forever. Returns what was freed.
    """
    freed = []
    for kind, queues, attr in (("get", ctx.inputs, "get_lock"), ("put", ctx.outputs, "put_lock")):
        for name, q in queues.items():
            lock = getattr(q.spec, attr)
            if lock.acquire(timeout=wait):
                lock.release()
            else:
                lock.release()
                freed.append(f"{name}.{kind}")
    if freed:
        log.warning("%s: freed queue locks left by its killed predecessor: %s", ctx.name, ", ".join(freed))
    return freed


class _Wrapper:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def setup(self, ctx: StageContext) -> None:
        setup_logging(self.settings.log_level)
        name_process(ctx.name)
        restarted = any(s.restarts for s in ctx.all_metrics.snapshot() if s.name == ctx.name)
        if restarted:
            free_orphaned_locks(ctx)


@dataclass
class CaptureStage:
    """Reads one source into its ring; in live mode the queue after it drops the oldest frames."""

    settings: Settings
    source: str
    stream: int = 0
    max_frames: int = 0
    realtime: bool = False  # release a file's frames at its frame rate, like a live camera
    loops: int = 1  # play a file this many times (benchmarks: a steady window longer than the clip)

    def run(self, ctx: StageContext) -> None:
        from app.stages.capture import VideoSource, parse_source
        from app.tracking.scene import SceneCuts

        setup_logging(self.settings.log_level)
        name_process(ctx.name)
        threads = self.settings.decoder_threads()
        src = VideoSource(parse_source(self.source), self.settings.reconnect_max_delay, threads)
        # wait for the other stages' setup (models, CUDA graphs): frames read before would only queue up
        # (files) or be dropped (live), and a replayed file would be half over before the first detection
        deadline = time.monotonic() + 300
        while not ctx.stopping and not ctx.all_metrics.all_running(except_=ctx.name) and time.monotonic() < deadline:
            time.sleep(0.02)
        src.open()
        ring = ctx.rings[ring_name(self.stream)]
        shape = ring.spec.height, ring.spec.width
        shape3 = (*shape, ring.spec.channels)
        index = played = 0
        cuts = SceneCuts()  # compared frame to frame here, where every decoded frame passes (none dropped yet)
        start = time.monotonic()
        shown, next_status = "live", 0.0  # written only from the first outage on: a row error stays empty until then
        try:
            while not ctx.stopping and (not self.max_frames or index < self.max_frames):
                if self.realtime:
                    time.sleep(max(0.0, start + index / (src.fps or 30.0) - time.monotonic()))
                t0 = time.perf_counter()
                slot = ring.begin(index, shape3)  # decode straight into shared memory: no copy of the frame
                frame = src.read(into=slot)
                now = time.monotonic()
                if src.spec.live and (now >= next_status or (src.status != "reconnecting") != (shown == "live")):
                    text = src.describe()  # the display cannot see a silent source through records: tell it here
                    if text != shown:
                        ctx.metrics.status(RUNNING, SOURCE_PREFIX + text)
                        shown = text
                    next_status = now + 0.25
                if frame is None:
                    ring.abort(index)
                    if src.ended:
                        played += 1
                        if played >= self.loops:
                            break
                        src.close()
                        src = VideoSource(parse_source(self.source), self.settings.reconnect_max_delay, threads)
                        src.open()
                    continue
                ts = time.time()
                if frame is slot:
                    ring.commit(index, ts, shape3, stream=self.stream, index=index)  # one ring per stream: seq = index
                else:  # the decoder made its own array: a live stream changed resolution; keep the ring's
                    import cv2

                    ring.abort(index)
                    if frame.shape[:2] != shape:
                        frame = cv2.resize(frame, (shape[1], shape[0]))
                    ring.write(frame, index, ts, stream=self.stream, index=index)
                scene = np.array([cuts.update(frame)], np.int64)
                busy = time.perf_counter() - t0  # decode, the status and the cut check: capture's cost per frame
                ctx.put(Record(seq=index, ts=ts, stream=self.stream, index=index, arrays={"scene": scene}))
                ctx.metrics.tick(busy=busy, ts=ts)
                index += 1
        finally:
            src.close()


class _Batched(_Wrapper):
    """A stage fed up to ``batch_size`` records at once (any streams), waiting at most BATCH_WAIT_MS for them."""

    def __init__(self, settings: Settings, batch_size: int) -> None:
        super().__init__(settings)
        self.batch_size = batch_size
        self.batch_wait = settings.batch_wait_ms / 1000.0


class DetectStage(_Batched):
    """Detection; on the GPU also the alignment (``align_on_gpu``: crops cut from the uploaded frame, which the
    align stage then passes on), when the queue after it was sized for crops."""

    def __init__(self, settings: Settings, ring_sizes: list[tuple[int, int]] | None = None,
                 align_on_gpu: bool = False) -> None:
        super().__init__(settings, settings.detect_batch)
        self.ring_sizes = ring_sizes or []
        self.align_on_gpu = align_on_gpu
        self.align_here = False

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.stages.detect import Detect, stage_threads

        self.detect = Detect(self.settings, threads=stage_threads(self.settings))
        pinned = sum(self.detect.register_frames(ring.memory()) for ring in ctx.rings.values())
        self.align_here = self.align_on_gpu and self.detect.aligns
        for h, w in dict.fromkeys(self.ring_sizes or [(ctx.ring.spec.height, ctx.ring.spec.width)]):
            self.detect.warmup(h, w, self.batch_size)
        log.info("detector: %s %s%s%s", self.settings.detector_model, self.detect.backend.describe(),
                 f"; {pinned} frame ring(s) page-locked for direct uploads" if pinned else "",
                 "; faces aligned on the GPU" if self.align_here else "")

    def teardown(self) -> None:
        detect = getattr(self, "detect", None)
        if detect is not None:
            detect.close()  # unlock the rings' pages before the runtime unmaps them

    def process_batch(self, recs: list[Record], ctx: StageContext) -> list[Record]:
        views, kept = [], []
        for rec in recs:
            view = ctx.rings[ring_name(rec.stream)].view(rec.seq)
            if view is None:
                ctx.metrics.drop()
                continue
            views.append(view)
            kept.append(rec)
        if not kept:
            return []
        crops: list[np.ndarray] | None = [] if self.align_here else None
        found = self.detect.detect_checked(
            views, lambda: [ctx.rings[ring_name(r.stream)].still_valid(r.seq) for r in kept], crops)
        out = []
        for k, (rec, dets) in enumerate(zip(kept, found)):
            if dets is None:  # overwritten while we read it: drop, never use torn pixels
                ctx.metrics.drop()
                continue
            extra = {"crops": crops[k]} if crops else {}
            out.append(faces_record(rec, Faces(dets.boxes, dets.scores, dets.landmarks), **extra))
        return out


class AlignStage(_Wrapper):
    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        import cv2

        from app.stages.align import Align

        # one thread: a 112x112 warp is too small to share out, and OpenCV's pool (a thread per core) spun
        # 4.5 of the H100 machine's 16 cores for 1 ms of work per frame, cores the video decoder needed
        cv2.setNumThreads(1)

        self.align = Align()

    def process(self, rec: Record, ctx: StageContext) -> Record | None:
        if "crops" in rec.arrays:  # aligned on the GPU by detect: nothing to warp
            return rec
        faces = _faces(rec)
        ring = ctx.rings[ring_name(rec.stream)]
        view = ring.view(rec.seq)
        if view is None:
            ctx.metrics.drop()
            return None
        crops = self.align(view, Detections(faces.boxes, faces.scores, faces.landmarks))
        if not ring.still_valid(rec.seq):
            ctx.metrics.drop()
            return None
        return faces_record(rec, faces, crops=crops)


class EmbedTrackStage(_Batched):
    def __init__(self, settings: Settings, fps: dict[int, float]) -> None:
        super().__init__(settings, settings.detect_batch)  # frames per batch; their faces go in EMBED_BATCH chunks
        self.fps = fps
        self.held: tuple | None = None  # (records, pending embedding) of the batch handed on after the next

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.stages.detect import stage_threads
        from app.stages.embed_track import EmbedTrack

        self.embed = EmbedTrack(self.settings, self.fps, threads=stage_threads(self.settings))
        self.embed.warmup()
        every = "frame" if self.embed.interval == 1 else f"{self.embed.interval} frames"
        log.info("embedder: %s %s; each track embedded every %s", self.settings.embedder_model,
                 self.embed.backend.describe(), every)

    def process_batch(self, recs: list[Record], ctx: StageContext) -> list[Record]:
        """Track this batch and start its embedding; hand on the batch before it. When nothing else is queued
        (live: no frame waits for one that may not come) or the embedder cannot run in the background (CPU),
        this batch is finished at once too."""
        pending = self.embed.submit([(_faces(r), r.arrays["crops"], r.stream, r.index) for r in recs])
        out = self.finish(ctx)
        if self.embed.overlaps and any(q.qsize() for q in ctx.inputs.values()):  # overlap the GPU with the next
            self.held = (recs, pending)
        else:
            out += self._records(recs, pending)
        return out

    def finish(self, ctx: StageContext | None = None) -> list[Record]:
        """The batch held back, finished (also at the end of the stream)."""
        held, self.held = self.held, None
        return self._records(*held) if held else []

    def _records(self, recs: list[Record], pending) -> list[Record]:
        out = []
        for rec, f in zip(recs, self.embed.collect(pending)):
            o = faces_record(rec, f)
            o.meta["removed"] = getattr(f, "removed", [])
            out.append(o)
        return out


class IdentifyStage(_Wrapper):
    """Owns the gallery (the embedded Qdrant folder can be open in one process only). Its events tap
    (app/events/tap.py) turns each labelled frame into events for the publisher."""

    def __init__(self, settings: Settings, link=None) -> None:
        super().__init__(settings)
        self.link = link  # app.events.tap.EventsLink: run id, events and time-to-name queues

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.events.tap import EventsLink, EventTap
        from app.stages.identify import Identify

        self.identify = Identify(self.settings)
        self.tap = EventTap(self.settings, self.link or EventsLink(run="-"), ctx.metrics)
        from app.gallery.sightings_feed import SightingRecorder

        self.sightings = SightingRecorder(self.settings, self.tap.link.run, self.settings.sources)

    def process(self, rec: Record, ctx: StageContext) -> Record:
        from app.display.blur import hide_faces
        from app.events.tap import intact_copy

        faces = self.identify(_faces(rec), stream=rec.stream, removed=rec.meta.get("removed"))
        want = len(faces) and (self.tap.wants_frame or self.sightings.wants_image(rec.stream, faces))
        image = intact_copy(ctx.rings[ring_name(rec.stream)], rec.seq) if want else None
        if image is not None:  # snapshots (events, sightings) hide what the screen hides
            hide_faces(image, faces, self.settings.privacy_blur)
        self.tap.frame(rec.stream, rec.index, rec.ts, faces, rec.meta.get("removed"), image)
        self.sightings.frame(rec.stream, rec.index, rec.ts, faces, rec.meta.get("removed"), image)
        self.tap.gallery_size(lambda: len(self.identify.gallery.people()))
        # the display needs no embeddings: after a scene cut every face is queried at once, and 64 faces' worth
        # (128 KB) would not fit the queue's slot (sized for names and boxes)
        faces.embeddings = faces.query = None
        self._gallery_status(ctx)
        return faces_record(rec, faces)

    def _gallery_status(self, ctx: StageContext) -> None:
        """A gallery server's outage in the status text (the display's red line, the summary's blind time)."""
        from app.gallery.outage import status_text

        text = status_text(getattr(self.identify.gallery, "outage", None))
        if text != getattr(self, "_shown_gallery", ""):
            ctx.metrics.status(RUNNING, text)
            self._shown_gallery = text

    def finish(self, ctx: StageContext) -> list[Record]:
        """The end of the stream: tracks still open get their ``person.left``."""
        self.tap.finish()
        self.sightings.finish()
        return []

    def teardown(self) -> None:
        sightings = getattr(self, "sightings", None)
        if sightings is not None:
            sightings.close()
        identify = getattr(self, "identify", None)
        if identify is not None:
            identify.close()


class DisplayStage(_Wrapper):
    """Draws on the frame the boxes were computed from (read back from the ring by sequence number).

    It owns its loop (``run``) rather than being fed records, so that while a live source is down and
    nothing flows it can still redraw the last frame with a red "reconnecting" line (window and MJPEG
    server; the video file and the track log get real frames only).
    """

    IDLE_REDRAW = 0.5  # seconds without a record before the last frame is redrawn with the source status

    def __init__(self, settings: Settings, options, names: dict[int, str]) -> None:
        super().__init__(settings)
        self.options = options
        self.names = names

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.display.present import Present

        self.present = Present(self.options)
        self.present.stopping = lambda: ctx.stopping  # a paced or paused window never holds up a stop
        self.latencies: list[float] = []
        self.next_overlay = 0.0
        self.lines: list[str] = []
        self.compact: list[str] = []
        self.warn = False
        self.ok = False

    def _source_status(self, ctx: StageContext) -> tuple[str, bool]:
        """The capture stages' source status and the gallery server's ("" when all is well), and whether any is
        down (a source reconnecting, the gallery unreachable)."""
        from app.gallery.outage import is_unreachable

        texts = []
        for stage in ctx.all_metrics.spec.stages:
            _, text = ctx.all_metrics.status(stage)
            if stage.startswith("capture") and text.startswith(SOURCE_PREFIX) and "reconnecting" in text:
                texts.append(f"source {stage}: {text[len(SOURCE_PREFIX):]}")
            elif stage == "identify" and is_unreachable(text):
                texts.append(text)
        return "; ".join(texts), bool(texts)

    def _overlay(self, ctx: StageContext, force: bool = False):
        from app.display.annotate import Overlay
        from app.display.stats_text import compact_lines

        now = time.monotonic()
        if force or now >= self.next_overlay:
            self.next_overlay = now + 0.5
            lat = np.asarray(self.latencies[-300:]) * 1000
            p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (0, 0)
            source, self.warn = self._source_status(ctx)
            stats = ctx.all_metrics.snapshot()
            self.lines = [source if self.warn else " | ".join(self.names.values()),
                          *ctx.all_metrics.overlay_lines(stats),
                          f"capture->display latency p50 {p50:.0f} ms  p99 {p99:.0f} ms"]
            compact = compact_lines(stats, p50, p99)
            self.compact = [source, compact[0]] if self.warn else compact
        return Overlay(list(self.lines), warn=self.warn, compact=list(self.compact))

    def show(self, rec: Record, ctx: StageContext) -> None:
        ring = ctx.rings[ring_name(rec.stream)]
        frame = None
        ref = FrameRef(rec.seq, rec.ts, rec.stream, rec.index)
        if not self.present.wait_turn(ref):  # a file in a window: its frame's time comes first (then the frame)
            log.info("window closed: stopping")
            ctx.request_stop()
            return None
        if self.present.draws:  # drawn on in place: the display is the frame's last reader
            frame = ring.view(rec.seq)
            if frame is None:
                ctx.metrics.drop()
                return None
        self.latencies.append(time.time() - rec.ts)
        torn = self.present.torn
        keep = self.present(frame, ref, _faces(rec), self._overlay(ctx), lambda: ring.still_valid(rec.seq))
        if self.present.torn != torn:
            ctx.metrics.drop()
        if not keep:
            log.info("window closed: stopping")
            ctx.request_stop()
        return None

    def idle(self, ctx: StageContext) -> None:
        """Nothing arrived for a while: keep the window responsive; if a source is reconnecting, say so on
        the last picture."""
        overlay = self._overlay(ctx, force=True)
        ok = self.present.refresh(overlay) if overlay.warn else self.present.pump()
        if not ok:
            log.info("window closed: stopping")
            ctx.request_stop()

    def run(self, ctx: StageContext) -> None:
        while True:
            rec = ctx.get(timeout=self.IDLE_REDRAW)
            if rec is None:
                self.idle(ctx)
                continue
            if rec.is_end:
                break
            t0, waited = time.perf_counter(), self.present.waited
            self.show(rec, ctx)
            # pacing a file to its frame rate, or a pause, is not work: the overlay's busy share stays honest
            ctx.metrics.tick(busy=time.perf_counter() - t0 - (self.present.waited - waited), ts=rec.ts)
        self.ok = True

    def teardown(self) -> None:
        present = getattr(self, "present", None)
        if present is not None:
            present.close(ok=self.ok or present.frames > 0)
