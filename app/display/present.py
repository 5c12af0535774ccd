"""Display stage: draw a frame's faces and overlay, then hand it to every output that is switched on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.display.annotate import Overlay, Renderer
from app.display.outputs import MjpegServer, TrackLog, VideoFile, Window
from app.types import Faces, FrameRef


@dataclass
class OutputOptions:
    window: bool = False
    out: str = ""  # annotated video file
    serve_port: int = 0
    serve_host: str = "127.0.0.1"
    log_tracks: str = ""  # JSONL file
    fps: float = 30.0
    title: str = "facestream"


class Present:
    """Owns the window / file / MJPEG server / track log; ``__call__`` returns False when the user quits."""

    def __init__(self, options: OutputOptions) -> None:
        self.renderer = Renderer()
        self.window = Window(options.title) if options.window else None
        self.video = VideoFile(options.out, options.fps) if options.out else None
        self.server = MjpegServer(options.serve_port, options.serve_host) if options.serve_port else None
        self.tracks = TrackLog(options.log_tracks) if options.log_tracks else None
        self.frames = 0

    @property
    def draws(self) -> bool:
        return bool(self.window or self.video or self.server)

    def __call__(self, frame: np.ndarray | None, ref: FrameRef, faces: Faces, overlay: Overlay | None = None) -> bool:
        self.frames += 1
        if self.tracks:
            self.tracks.write(ref, faces)
        if frame is None or not self.draws:
            return True
        self.renderer.draw(frame, faces, overlay)
        if self.video:
            self.video.write(frame)
        if self.server:
            self.server.publish(frame)
        if self.window:
            return self.window.show(frame)
        return True

    def close(self, ok: bool = True) -> None:
        for out in (self.window, self.server, self.tracks):
            if out:
                out.close()
        if self.video:
            self.video.close(keep=ok)
