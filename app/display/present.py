"""Display stage: draw a frame's faces and overlay, then hand it to every output that is switched on.

One stream: the window / MJPEG server show its annotated frames at full size. Several streams: each gets
its own video file (``out`` becomes ``name-s<N>.ext``) and the window / server show a mosaic of all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.display.annotate import Overlay, Renderer
from app.display.mosaic import Mosaic, mosaic_size
from app.display.outputs import MjpegServer, TrackLog, VideoFile, Window
from app.types import Faces, FrameRef


@dataclass
class OutputOptions:
    window: bool = False
    out: str = ""  # annotated video file (one per stream when there are several)
    serve_port: int = 0
    serve_host: str = "127.0.0.1"
    log_tracks: str = ""  # JSONL file
    fps: float | dict[int, float] = 30.0  # per stream when a dict
    title: str = "facestream"
    streams: dict[int, str] = field(default_factory=lambda: {0: ""})  # stream → name shown on its tile
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # stream → (width, height) of its frames
    sink: bool = False  # annotate every frame but send it nowhere (benchmarks: the drawing cost without encoding)
    mosaic_hz: float = 30.0  # most mosaic refreshes per second of the window / server


def stream_path(out: str, stream: int, streams: int) -> str:
    """Where stream ``stream``'s annotated video goes: ``out`` itself for a single stream."""
    if streams <= 1:
        return out
    p = Path(out)
    return str(p.with_name(f"{p.stem}-s{stream}{p.suffix}"))


class Present:
    """Owns the window / files / MJPEG server / track log; ``__call__`` returns False when the user quits."""

    def __init__(self, options: OutputOptions) -> None:
        self.options = options
        self.renderer = Renderer()
        n = len(options.streams)
        fps = options.fps if isinstance(options.fps, dict) else dict.fromkeys(options.streams, options.fps)
        self.window = Window(options.title) if options.window else None
        self.videos = ({s: VideoFile(stream_path(options.out, s, n), fps.get(s, 30.0)) for s in options.streams}
                       if options.out else {})
        self.server = MjpegServer(options.serve_port, options.serve_host) if options.serve_port else None
        self.tracks = TrackLog(options.log_tracks) if options.log_tracks else None
        self.mosaic = (Mosaic(options.streams, mosaic_size(options.sizes, len(options.streams)))
                       if n > 1 and (self.window or self.server or options.sink) else None)
        self.frames = 0
        self.torn = 0
        self.last: tuple[np.ndarray, Faces] | None = None  # one stream: the last raw frame, for redraws
        self._next_show = 0.0

    @property
    def video(self) -> VideoFile | None:
        """The single stream's video file (None with several streams or none)."""
        return self.videos.get(0) if len(self.videos) == 1 else None

    @property
    def draws(self) -> bool:
        return bool(self.window or self.videos or self.server or self.options.sink)

    @property
    def shows(self) -> bool:
        return bool(self.window or self.server)

    def __call__(self, frame: np.ndarray | None, ref: FrameRef, faces: Faces, overlay: Overlay | None = None,
                 still_valid: Callable[[], bool] | None = None) -> bool:
        """Write, draw and show one frame; False once the user quits.

        ``frame`` may be the frame's own slot in shared memory, drawn on in place (the display is its last
        reader, so no copy is made): ``still_valid()`` then says whether the slot stayed intact while it was
        used; if not, nothing is written or shown for it and ``torn`` counts it.
        """
        self.frames += 1
        if self.tracks:
            self.tracks.write(ref, faces)
        if frame is None or not self.draws:
            return True
        valid = still_valid or (lambda: True)
        video = self.videos.get(ref.stream)
        if self.mosaic is None:
            if self.shows:
                self.last = (frame.copy(), faces)
            self.renderer.draw(frame, faces, overlay)
            if not valid():
                self.torn += 1
                return self.pump()
            if video:
                video.write(frame)
            return self._show(frame)
        if video:  # full-size drawing for the file, then the annotated frame shrinks into its tile
            self.renderer.draw(frame, faces)
            if valid():
                video.write(frame)
                self.mosaic.put(ref.stream, frame, None)
            else:
                self.torn += 1
        elif not self.mosaic.put(ref.stream, frame, faces, self.renderer, valid):  # shrink, then draw
            self.torn += 1
        now = time.monotonic()
        if not self.shows or now < self._next_show:
            return self.pump()
        self._next_show = now + 1.0 / self.options.mosaic_hz
        return self._show(self.mosaic.compose(self.renderer, overlay))

    def refresh(self, overlay: Overlay) -> bool:
        """Show the latest picture again with a new overlay (a source is down and nothing arrives)."""
        if self.mosaic is not None:
            return self._show(self.mosaic.compose(self.renderer, overlay))
        if self.last is None:
            return self.pump()
        frame, faces = self.last
        return self._show(self.renderer.draw(frame.copy(), faces, overlay))

    def _show(self, frame: np.ndarray) -> bool:
        if self.server:
            self.server.publish(frame)
        if self.window:
            return self.window.show(frame)
        return True

    def pump(self) -> bool:
        return self.window.pump() if self.window else True

    def close(self, ok: bool = True) -> None:
        for out in (self.window, self.server, self.tracks):
            if out:
                out.close()
        for video in self.videos.values():
            video.close(keep=ok)
