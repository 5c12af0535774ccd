"""Display stage: draw a frame's faces and overlay, then hand it to every output that is switched on.

One stream: the window / web app show its annotated frames at full size. Several streams: each gets
its own video file (``out`` becomes ``name-s<N>.ext``) and the window / server show a mosaic of all of them.
A file shown in a window plays at its own frame rate: the display waits for each frame's time, and the
stages before it wait for the display (back-pressure), so every frame is still processed and none dropped.
The window's keys (KEYS) switch the overlay, pause a file and show a help panel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.display.annotate import Overlay, Renderer, next_mode
from app.display.mosaic import Mosaic, mosaic_size
from app.display.outputs import TrackLog, Window
from app.display.video import VideoFile
from app.types import Faces, FrameRef
from app.web.live import GRID

#: the window's keys, as the help panel and `run --help` name them
KEYS = (("o", "overlay compact / full / off"), ("space", "pause / resume (files)"), ("h or ?", "show / hide this help"),
        ("q or Esc", "quit"))


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
    overlay: str = "compact"  # stats overlay: compact, full or off (the window's o key cycles it)
    pace: bool = False  # the sources are files: the window shows them at their frame rate and can pause them
    privacy_blur: str = "none"  # PRIVACY_BLUR: faces pixelated in every drawn output (app/display/blur.py)
    settings: object | None = None  # the run's Settings: the web app (serve_port) needs the token and the gallery


def web_server(options: OutputOptions):
    """The web app (live view, face library, REST API) in a thread of this process: it has the drawn frames."""
    from app.settings import Settings
    from app.web.server import WebServer

    settings = options.settings if isinstance(options.settings, Settings) else Settings()
    return WebServer(settings, options.serve_port, options.serve_host, options.streams)


def stream_path(out: str, stream: int, streams: int) -> str:
    """Where stream ``stream``'s annotated video goes: ``out`` itself for a single stream."""
    if streams <= 1:
        return out
    p = Path(out)
    return str(p.with_name(f"{p.stem}-s{stream}{p.suffix}"))


class Present:
    """Owns the window / files / web app / track log; ``__call__`` returns False when the user quits."""

    def __init__(self, options: OutputOptions) -> None:
        self.options = options
        self.renderer = Renderer(overlay=options.overlay, blur=options.privacy_blur)
        n = len(options.streams)
        fps = options.fps if isinstance(options.fps, dict) else dict.fromkeys(options.streams, options.fps)
        self.fps = fps
        self.window = Window(options.title) if options.window else None
        self.videos = ({s: VideoFile(stream_path(options.out, s, n), fps.get(s, 30.0)) for s in options.streams}
                       if options.out else {})
        self.server = web_server(options) if options.serve_port else None
        self.tracks = TrackLog(options.log_tracks) if options.log_tracks else None
        self.mosaic = (Mosaic(options.streams, mosaic_size(options.sizes, len(options.streams)))
                       if n > 1 and (self.window or self.server or options.sink) else None)
        self.frames = 0
        self.torn = 0
        self.last: tuple[np.ndarray, Faces] | None = None  # one stream: the last raw frame, for redraws
        self._next_show = 0.0
        self.overlay: Overlay | None = None  # the last one drawn, for redraws after a key
        self.help = False
        self.paused = False
        self.waited = 0.0  # seconds spent waiting for frames' times or paused: not drawing work
        self.stopping: Callable[[], bool] = lambda: False  # the pipeline is stopping: never wait then
        self._clocks: dict[int, tuple[float, int]] = {}  # stream -> (when, frame index) its playback started
        self._paced: tuple[int, int] | None = None

    @property
    def paces(self) -> bool:
        return bool(self.options.pace and self.window)

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
        if not self.wait_turn(ref):
            return False
        self.overlay = overlay
        if self.tracks:
            self.tracks.write(ref, faces)
        if self.server:  # recent faces: crops cut from the raw frame, before anything is drawn on it
            self.server.live.recent.observe(ref, frame, faces, still_valid)
        if frame is None or not self.draws:
            return True
        valid = still_valid or (lambda: True)
        video = self.videos.get(ref.stream)
        if self.mosaic is None:
            if self.shows:
                self.last = (frame.copy(), faces)
            # the web page shows the stats as HTML: its picture gets the boxes, the overlay only for the others
            self.renderer.draw(frame, faces, None if self.server else overlay)
            if not valid():
                self.torn += 1
                return self.pump()
            if self.server:
                self._publish(ref.stream, frame, overlay)
                if overlay is not None and (video or self.window):
                    self.renderer.draw_overlay(frame, overlay, max(0.4, min(1.0, frame.shape[0] / 900)))
            if video:
                video.write(frame)
            return self._show(frame)
        if video or self.server:  # full-size drawing for the file / the stream's page, then shrunk into its tile
            self.renderer.draw(frame, faces)
            if valid():
                if video:
                    video.write(frame)
                if self.server:
                    self._publish(ref.stream, frame, overlay)
                self.mosaic.put(ref.stream, frame, None)
            else:
                self.torn += 1
        elif not self.mosaic.put(ref.stream, frame, faces, self.renderer, valid):  # shrink, then draw
            self.torn += 1
        now = time.monotonic()
        if not self.shows or now < self._next_show:
            return self.pump()
        self._next_show = now + 1.0 / self.options.mosaic_hz
        if self.server:
            self._publish(GRID, lambda: self.mosaic.compose(self.renderer, None), overlay)
        return self._show(self.mosaic.compose(self.renderer, overlay)) if self.window else True

    def _publish(self, key, frame, overlay: Overlay | None) -> None:
        """Hand the web app a picture: boxes only; a source outage's red line is the one overlay it keeps (a bare
        MJPEG client has no page to say so)."""
        if not self.server.live.wants(key):
            return

        def picture() -> np.ndarray:
            img = frame() if callable(frame) else frame
            if overlay is not None and overlay.warn and overlay.lines:
                img = img.copy()
                line = (overlay.compact or overlay.lines)[:1]
                self.renderer.draw_panel(img, "web-warn", line, max(0.4, min(1.0, img.shape[0] / 900)) * 0.8,
                                         "bottom-left", warn=True)
            return img

        self.server.live.publish(key, picture)

    def wait_turn(self, ref: FrameRef) -> bool:
        """Paced (a file in a window): wait until ``ref``'s time in its stream's playback, and while paused,
        keeping the window responsive. Once per frame (the display stage calls it before reading the frame from
        shared memory, ``__call__`` again). False once the user quits."""
        if not self.paces or self._paced == (ref.stream, ref.index):
            return True
        self._paced = (ref.stream, ref.index)
        now = time.monotonic()
        clock = self._clocks.get(ref.stream)
        due = now
        if clock is not None:
            due = clock[0] + (ref.index - clock[1]) / (self.fps.get(ref.stream) or 30.0)
        if clock is None or due <= now:  # first frame, or late (processing fell behind): shown now, and the next
            self._clocks[ref.stream] = (now, ref.index)  # one a frame's time after it: never a catch-up burst
            due = now
        return self._wait(due)

    def _wait(self, due: float) -> bool:
        """Pump the window until ``due`` (monotonic) and for as long as it is paused; the playback clocks move
        on by the time spent paused."""
        start = time.monotonic()
        try:
            while not self.stopping():
                now = time.monotonic()
                if not self.paused and now >= due:
                    return True
                paused = self.paused
                if not self.pump(30 if paused else max(1, int(min(due - now, 0.03) * 1000))):
                    return False
                if paused:
                    dt = time.monotonic() - now
                    due += dt
                    self._clocks = {s: (t + dt, i) for s, (t, i) in self._clocks.items()}
            return True
        finally:
            self.waited += time.monotonic() - start

    def refresh(self, overlay: Overlay | None = None) -> bool:
        """Show the latest picture again with a new overlay (a source is down and nothing arrives, or a key
        changed what is drawn)."""
        overlay = overlay if overlay is not None else self.overlay
        if self.mosaic is not None:
            if self.server:
                self._publish(GRID, lambda: self.mosaic.compose(self.renderer, None), overlay)
            return self._show(self.mosaic.compose(self.renderer, overlay)) if self.window else True
        if self.last is None:
            return self.pump()
        frame, faces = self.last
        if self.server:
            self._publish(next(iter(self.options.streams)), lambda: self.renderer.draw(frame.copy(), faces), overlay)
        return self._show(self.renderer.draw(frame.copy(), faces, overlay)) if self.window else True

    def help_lines(self) -> list[str]:
        keys = [(k, f"{what} (now {self.renderer.overlay})" if k == "o" else what) for k, what in KEYS
                if k != "space" or self.paces]
        return ["keys", *(f"{k}:  {what}" for k, what in keys)]

    def _show(self, frame: np.ndarray) -> bool:
        """Show ``frame`` in the window (the web app gets its pictures through ``_publish``)."""
        if not self.window:
            return True
        if self.help or self.paused:  # window only: on a copy, never in the file or the MJPEG stream
            frame = frame.copy()
            scale = max(0.45, min(1.0, frame.shape[0] / 700))
            if self.paused:
                self.renderer.draw_panel(frame, "paused", ["paused: space resumes"], scale, "bottom-right")
            if self.help:
                self.renderer.draw_panel(frame, "help", self.help_lines(), scale, "centre")
        return self.window.show(frame) and self._keys()

    def pump(self, wait_ms: int = 1) -> bool:
        """Let the window handle its events (and keys) for up to ``wait_ms``; False once the user quits."""
        if not self.window:
            return True
        return self.window.pump(wait_ms) and self._keys()

    def _keys(self) -> bool:
        """Act on the keys pressed since the last look: o overlay, space pause (paced files), h / ? help. A change
        is shown at once (the last picture drawn again)."""
        keys, self.window.keys[:] = list(self.window.keys), []
        changed = False
        for key in keys:
            if key == "o":
                self.renderer.overlay = next_mode(self.renderer.overlay)
            elif key == " " and self.paces:
                self.paused = not self.paused
            elif key in ("h", "?"):
                self.help = not self.help
            else:
                continue
            changed = True
        return self.refresh() if changed else True

    def close(self, ok: bool = True) -> None:
        for out in (self.window, self.server, self.tracks):
            if out:
                out.close()
        for video in self.videos.values():
            video.close(keep=ok)
