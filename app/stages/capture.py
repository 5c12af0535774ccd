"""Capture: open a file, webcam, RTSP or HTTP MJPEG source; reconnect live sources with capped backoff."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import FacestreamError
from app.protocol import Context, Health, Source
from app.redact import redact
from app.types import Faces, FrameRef

log = logging.getLogger("facestream.capture")

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
#: FFmpeg options for low-latency network streams (TCP for RTSP: no smeared frames from lost UDP packets).
#: No ``fflags nobuffer``: with it FFmpeg discards the packets it read while probing, so every (re)connect
#: waits for the next key frame (+1.1 s on the test clip); the live queues already keep latency bounded.
FFMPEG_LOW_LATENCY = "rtsp_transport;tcp|flags;low_delay|max_delay;500000|stimeout;5000000"


def quiet_video_libraries(debug: bool = False) -> None:
    """Silence OpenCV's and FFmpeg's own log lines (``[ WARN:0@0.270] …``, ``moov atom not found``) unless
    ``debug``: they would precede, and muddle, our one error line, which already names the source and the fix.

    Set in the environment, so stage processes (spawned: they inherit it) are quiet from their first cv2 import.
    OpenCV reads OPENCV_LOG_LEVEL only when cv2 is imported, so a cv2 already imported here is told directly.
    A value the user set is kept."""
    if debug:
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET: read when a capture opens
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    os.environ["OPENCV_LOG_LEVEL"] = "SILENT"
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed VIDEO_SOURCE entry."""

    raw: str
    kind: str  # "file" | "webcam" | "stream"

    @property
    def live(self) -> bool:
        return self.kind != "file"

    @property
    def display_name(self) -> str:
        return redact(self.raw) if self.kind == "stream" else (f"webcam {self.raw}" if self.kind == "webcam"
                                                               else Path(self.raw).name)


def parse_source(raw: str) -> SourceSpec:
    """Classify a source; an impossible one is one clear error now, not a blank window later."""
    raw = raw.strip()
    if not raw:
        raise FacestreamError("VIDEO_SOURCE is empty: set it in .env to a file, a webcam index (0), "
                              "rtsp://… or http://…")
    if raw.isdigit():
        return SourceSpec(raw, "webcam")
    low = raw.lower()
    if low.startswith(LIVE_SCHEMES):
        return SourceSpec(raw, "stream")
    if "://" in raw:
        scheme = raw.split("://", 1)[0]
        raise FacestreamError(f"VIDEO_SOURCE scheme {scheme}:// is not supported: use a file, a webcam index, "
                              "rtsp://, rtmp://, http:// or https://")
    path = Path(raw).expanduser()
    if not path.is_file():
        raise FacestreamError(f"VIDEO_SOURCE file not found: {raw} — check the path in .env")
    return SourceSpec(str(path), "file")


class VideoSource:
    """One source opened with OpenCV/FFmpeg. ``read()`` gives the next BGR frame or None.

    Files end (None, ``ended``); live sources never end on their own: a failed read closes the
    capture and reconnects with exponential backoff (0.5 s doubling, capped), ``status`` saying so.
    """

    def __init__(self, spec: SourceSpec, reconnect_max_delay: float = 30.0, threads: int = 0) -> None:
        self.spec = spec
        self.reconnect_max_delay = reconnect_max_delay
        self.threads = threads
        self.cap = None
        self.status = "connecting"
        self.ended = False
        self.reconnects = 0
        self.frames_read = 0
        self._next_try = 0.0
        self._delay = 0.5
        self.fps = 0.0
        self.size: tuple[int, int] | None = None  # (width, height)

    # -- opening -------------------------------------------------------
    def _open(self):
        import cv2

        if self.spec.kind == "webcam":
            cap = cv2.VideoCapture(int(self.spec.raw))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            return cap
        if self.spec.kind == "stream":
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_LOW_LATENCY)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
        if self.threads:
            params += [cv2.CAP_PROP_N_THREADS, self.threads]
        cap = cv2.VideoCapture(self.spec.raw, cv2.CAP_FFMPEG, params)
        if self.spec.kind == "stream":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def open(self) -> None:
        """Open now, raising one clear error if a file or webcam cannot be used at all."""
        import cv2

        cap = self._open()
        if not cap.isOpened():
            cap.release()
            if self.spec.kind == "file":
                raise FacestreamError(f"VIDEO_SOURCE file {self.spec.raw} cannot be decoded (corrupt, truncated "
                                      "or not a video): check it plays, e.g. with ffprobe")
            if self.spec.kind == "webcam":
                raise FacestreamError(f"webcam {self.spec.raw} cannot be opened (no such device or it is busy): "
                                      "check /dev/video* and VIDEO_SOURCE")
            self.status = "reconnecting"
            self._schedule_retry()
            return
        self.cap = cap
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 1.0 <= self.fps <= 240.0:
            self.fps = 30.0
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w and h:
            self.size = (w, h)
        self.status = "live" if self.spec.live else "playing"
        self._delay = 0.5

    def probe(self) -> tuple[int, int, float]:
        """(width, height, fps) of the source, reading one frame if the container does not say."""
        self.open()
        if self.cap is None:
            raise FacestreamError(f"VIDEO_SOURCE {self.spec.display_name} cannot be reached: check the URL, "
                                  "the network and the credentials")
        if self.size is None:
            ok, frame = self.cap.read()
            if not ok:
                raise FacestreamError(f"VIDEO_SOURCE {self.spec.display_name} gives no frames")
            self.size = (frame.shape[1], frame.shape[0])
        return self.size[0], self.size[1], self.fps

    def describe(self) -> str:
        """One line for the overlay: ``live``, ``playing``, ``ended`` or ``reconnecting (try N, next in X s)``."""
        if self.status != "reconnecting":
            return self.status
        wait = max(0.0, self._next_try - time.monotonic())
        return f"reconnecting (try {self.reconnects + 1}, next in {wait:.1f} s)"

    def _schedule_retry(self) -> None:
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.reconnect_max_delay)

    # -- reading -------------------------------------------------------
    def read(self, into: np.ndarray | None = None) -> np.ndarray | None:
        """The next frame; None at the end of a file or while a live source is reconnecting. With ``into``
        (an array of the source's shape, e.g. a shared-memory slot) the decoder writes there, no copy: the
        frame returned is ``into`` itself unless the source's size changed."""
        if self.ended:
            return None
        if self.cap is None:
            if not self.spec.live:
                self.open()
            elif time.monotonic() >= self._next_try:
                self.reconnects += 1
                log.warning("reconnecting to %s (try %d)", self.spec.display_name, self.reconnects)
                self.open()
            if self.cap is None:
                time.sleep(0.01)
                return None
        ok, frame = self.cap.read(into) if into is not None else self.cap.read()
        if ok and frame is not None:
            self.frames_read += 1
            return frame
        self.cap.release()
        self.cap = None
        if not self.spec.live:
            self.ended = True
            self.status = "ended"
            if self.frames_read == 0:
                raise FacestreamError(f"VIDEO_SOURCE file {self.spec.raw} cannot be decoded (corrupt, truncated "
                                      "or not a video): check it plays, e.g. with ffprobe")
            return None
        log.warning("lost %s; reconnecting with backoff", self.spec.display_name)
        self.status = "reconnecting"
        self._schedule_retry()
        return None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class Capture(Source):
    """Reads one source into its stream's ring (decoded straight into shared memory: no copy of the frame);
    in live mode the queue after it drops the oldest records. Numbers the frames, and compares each with the
    one before for scene cuts here, where every decoded frame passes (none dropped yet)."""

    def __init__(self, source: str, stream: int = 0, reconnect_max_delay: float = 30.0, threads: int = 0,
                 max_frames: int = 0, realtime: bool = False, loops: int = 1) -> None:
        self.source = source
        self.stream = stream
        self.reconnect_max_delay = reconnect_max_delay
        self.threads = threads
        self.max_frames = max_frames
        self.realtime = realtime  # release a file's frames at its frame rate, like a live camera
        self.loops = loops  # play a file this many times (benchmarks: a steady window longer than the clip)
        self.src: VideoSource | None = None

    def _open(self) -> VideoSource:
        src = VideoSource(parse_source(self.source), self.reconnect_max_delay, self.threads)
        src.open()
        return src

    def setup(self, ctx: Context) -> None:
        from app.tracking.scene import SceneCuts

        self.ctx = ctx
        self.src = self._open()
        self.cuts = SceneCuts()
        self.index = self.played = 0
        self.start = time.monotonic()
        self.shown, self.next_status = "live", 0.0  # reported only from the first outage on

    def pace(self) -> None:
        if self.realtime:
            time.sleep(max(0.0, self.start + self.index / (self.src.fps or 30.0) - time.monotonic()))

    def produce(self, ring) -> Faces | None:
        if self.max_frames and self.index >= self.max_frames:
            self.ended = True
            return None
        shape = ring.spec.height, ring.spec.width
        shape3 = (*shape, ring.spec.channels)
        index, src = self.index, self.src
        slot = ring.begin(index, shape3)
        frame = src.read(into=slot)
        self._report(src)
        if frame is None:
            ring.abort(index)
            if src.ended:
                self.played += 1
                if self.played >= self.loops:
                    self.ended = True
                    return None
                src.close()
                self.src = self._open()
            return None
        ts = time.time()
        if frame is slot:
            ring.commit(index, ts, shape3, stream=self.stream, index=index)  # one ring per stream: seq = index
        else:  # the decoder made its own array: a live stream changed resolution; keep the ring's
            import cv2

            ring.abort(index)
            if frame.shape[:2] != shape:
                frame = cv2.resize(frame, (shape[1], shape[0]))
            ring.write(frame, index, ts, stream=self.stream, index=index)
        self.index += 1
        return Faces(frame=FrameRef(index, ts, self.stream, index, self.cuts.update(frame)))

    def _report(self, src: VideoSource) -> None:
        """A live source's state in the health column: the display cannot see a silent source through records."""
        now = time.monotonic()
        if src.spec.live and (now >= self.next_status or (src.status != "reconnecting") != (self.shown == "live")):
            text = src.describe()
            if text != self.shown:
                down = src.status == "reconnecting"
                self.ctx.health(Health.DOWN if down else Health.RECOVERED, f"source {self.ctx.name}: {text}")
                self.shown = text
            self.next_status = now + 0.25

    def teardown(self) -> None:
        if self.src is not None:
            self.src.close()
