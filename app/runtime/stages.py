"""Process wrappers: each turns one plain stage object into a runtime target (records in, records out).

The stage objects never see shared memory or queues; these wrappers read frames from the ring by
sequence number, drop a frame whose slot was overwritten, and carry only small arrays onward.
Every wrapper is a picklable module-level class built from Settings in the parent and set up in
the child, so models (and CUDA) exist only inside stage processes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from app.redact import setup_logging
from app.runtime.process import StageContext
from app.runtime.shm import Record
from app.settings import Settings
from app.types import Faces, FrameRef

log = logging.getLogger("facestream.stage")


def ring_name(stream: int) -> str:
    return f"frames{stream}"


def faces_record(rec: Record, faces: Faces, **extra: np.ndarray) -> Record:
    return Record(seq=rec.seq, ts=rec.ts, stream=rec.stream, index=rec.index,
                  arrays={**faces.arrays(), **extra}, meta=faces.meta())


def _faces(rec: Record) -> Faces:
    return Faces.from_arrays(rec.arrays, rec.meta)


class _Wrapper:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def setup(self, ctx: StageContext) -> None:
        setup_logging(self.settings.log_level)


@dataclass
class CaptureStage:
    """Reads one source into its ring; in live mode the queue after it drops the oldest frames."""

    settings: Settings
    source: str
    stream: int = 0
    max_frames: int = 0
    realtime: bool = False  # release a file's frames at its frame rate, like a live camera

    def run(self, ctx: StageContext) -> None:
        from app.stages.capture import VideoSource, parse_source

        setup_logging(self.settings.log_level)
        src = VideoSource(parse_source(self.source), self.settings.reconnect_max_delay)
        src.open()
        ring = ctx.rings[ring_name(self.stream)]
        shape = ring.spec.height, ring.spec.width
        index = 0
        start = time.monotonic()
        try:
            while not ctx.stopping and (not self.max_frames or index < self.max_frames):
                if self.realtime:
                    time.sleep(max(0.0, start + index / (src.fps or 30.0) - time.monotonic()))
                frame = src.read()
                if frame is None:
                    if src.ended:
                        break
                    continue
                ts = time.time()
                if frame.shape[:2] != shape:  # a live stream changed resolution: keep the ring's
                    import cv2

                    frame = cv2.resize(frame, (shape[1], shape[0]))
                ring.write(frame, index, ts, stream=self.stream, index=index)  # one ring per stream: seq = index
                ctx.put(Record(seq=index, ts=ts, stream=self.stream, index=index))
                ctx.metrics.tick(ts=ts)
                index += 1
        finally:
            src.close()


class DetectStage(_Wrapper):
    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.stages.detect import Detect, stage_threads

        self.detect = Detect(self.settings, threads=stage_threads(self.settings))
        self.detect.warmup(self.settings.det_size)
        log.info("detector: %s %s", self.settings.detector_model, self.detect.backend.describe())

    def process(self, rec: Record, ctx: StageContext) -> Record | None:
        ring = ctx.rings[ring_name(rec.stream)]
        view = ring.view(rec.seq)
        if view is None:
            ctx.metrics.drop()
            return None
        batch, infos = self.detect.preprocess([view])
        if not ring.still_valid(rec.seq):  # overwritten while we read it: drop, never use torn pixels
            ctx.metrics.drop()
            return None
        dets = self.detect.infer(batch, infos)[0]
        return faces_record(rec, Faces(dets.boxes, dets.scores, dets.landmarks))


class AlignStage(_Wrapper):
    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.stages.align import Align

        self.align = Align()

    def process(self, rec: Record, ctx: StageContext) -> Record | None:
        from engines.types import Detections

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


class EmbedTrackStage(_Wrapper):
    def __init__(self, settings: Settings, fps: dict[int, float]) -> None:
        super().__init__(settings)
        self.fps = fps

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.stages.detect import stage_threads
        from app.stages.embed_track import EmbedTrack

        self.embed = EmbedTrack(self.settings, self.fps, threads=stage_threads(self.settings))
        self.embed.warmup()
        log.info("embedder: %s %s", self.settings.embedder_model, self.embed.backend.describe())

    def process(self, rec: Record, ctx: StageContext) -> Record:
        faces = self.embed(_faces(rec), rec.arrays["crops"], stream=rec.stream, frame_index=rec.index)
        out = faces_record(rec, faces)
        out.meta["removed"] = getattr(faces, "removed", [])
        return out


class IdentifyStage(_Wrapper):
    """Owns the gallery (the embedded Qdrant folder can be open in one process only)."""

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.stages.identify import Identify

        self.identify = Identify(self.settings)

    def process(self, rec: Record, ctx: StageContext) -> Record:
        faces = self.identify(_faces(rec), stream=rec.stream, removed=rec.meta.get("removed"))
        return faces_record(rec, faces)

    def teardown(self) -> None:
        identify = getattr(self, "identify", None)
        if identify is not None:
            identify.close()


class DisplayStage(_Wrapper):
    """Draws on the frame the boxes were computed from (read back from the ring by sequence number)."""

    def __init__(self, settings: Settings, options, names: dict[int, str]) -> None:
        super().__init__(settings)
        self.options = options
        self.names = names

    def setup(self, ctx: StageContext) -> None:
        super().setup(ctx)
        from app.display.present import Present

        self.present = Present(self.options)
        self.latencies: list[float] = []
        self.next_overlay = 0.0
        self.lines: list[str] = []
        self.ok = False

    def _overlay(self, ctx: StageContext):
        from app.display.annotate import Overlay

        now = time.monotonic()
        if now >= self.next_overlay:
            self.next_overlay = now + 0.5
            lat = np.asarray(self.latencies[-300:]) * 1000
            p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (0, 0)
            self.lines = [" | ".join(self.names.values()), *ctx.all_metrics.overlay_lines(),
                          f"capture->display latency p50 {p50:.0f} ms  p99 {p99:.0f} ms"]
        return Overlay(list(self.lines))

    def process(self, rec: Record, ctx: StageContext) -> None:
        ring = ctx.rings[ring_name(rec.stream)]
        frame = ring.copy(rec.seq) if self.present.draws else None
        if frame is None and self.present.draws:
            ctx.metrics.drop()
            return None
        self.latencies.append(time.time() - rec.ts)
        ref = FrameRef(rec.seq, rec.ts, rec.stream, rec.index)
        if not self.present(frame, ref, _faces(rec), self._overlay(ctx)):
            log.info("window closed: stopping")
            ctx.request_stop()
        return None

    def finish(self, ctx: StageContext) -> None:
        self.ok = True
        return None

    def teardown(self) -> None:
        present = getattr(self, "present", None)
        if present is not None:
            present.close(ok=self.ok or present.frames > 0)

