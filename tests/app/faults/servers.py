"""Live sources that tests can really take down, on loopback, looping a video file: an HTTP MJPEG server
(``MjpegSource``, in this process) and an RTSP server (``RtspSource``, GStreamer's in a subprocess).
The MJPEG server and the run helpers live in ``bench/live.py`` (the soak uses them too) and are re-exported here.

OpenCV/FFmpeg reads them as ``http://127.0.0.1:PORT/stream.mjpg`` and ``rtsp://127.0.0.1:PORT/clip`` like any
IP camera. ``stop()`` closes the listening socket *and* every open connection (the client sees the stream end,
then "connection refused" while it is down); ``start()`` serves again on the same port. MJPEG frames are
JPEG-encoded once up front and the RTSP server sends the clip's own H.264 (no re-encoding), so serving costs
almost no CPU next to the pipeline under test.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import urllib.request
from functools import cache
from pathlib import Path

import numpy as np

from bench.live import (  # noqa: F401 - re-exported: the fault tests import them from here
    LiveSource,
    MjpegSource,
    encode_video,
    fault_env,
    free_port,
    latencies_ms,
    lines,
    live_run,
    open_fds,
    rss_kib,
    shm_segments,
    stage_pids,
    start_run,
    stderr_of,
    track_rows,
    wait_for,
)

#: the system Python that has Debian's python3-gi (the venv cannot import gi), and the packages the server needs
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
RTSP_PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"


@cache
def rtsp_unavailable() -> str | None:
    """Why the RTSP test server cannot run here (a skip reason naming the apt packages), or None if it can."""
    hint = f"apt-get install {RTSP_PACKAGES} (scripts/setup.sh does, as root)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} for GStreamer's RTSP server: {hint}"
    try:
        proc = subprocess.run([SYSTEM_PYTHON, str(RTSP_SERVER), "--check"], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        return f"{RTSP_SERVER.name} --check timed out"
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or [""])[-1]  # the server's own line names the cause and packages
        if said.startswith("rtsp_server:"):
            return f"{said} (scripts/setup.sh does, as root)"
        return f"GStreamer's RTSP server is not usable from {SYSTEM_PYTHON}: {hint}"
    return None


class RtspSource:
    """A stoppable RTSP stream (``rtsp://[user:password@]127.0.0.1:PORT/clip``, H.264 over RTP, TCP or UDP)
    looping ``clip`` at its frame rate, every client from the clip's first frame.

    The server is ``rtsp_server.py`` under the system Python; ``stop()`` SIGKILLs it, so the kernel closes the
    listening socket and every client connection at once (the server really dies), and ``start()`` runs a
    new one on the same port. With ``user`` and ``password`` the server demands them (HTTP Basic)."""

    def __init__(self, clip: str | Path, port: int | None = None, user: str | None = None,
                 password: str | None = None) -> None:
        self.clip = Path(clip)
        self.port = port or free_port()
        self.user, self.password = user, password
        self.connections = 0  # RTSP connections accepted, all server lives together (a reconnect adds one)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._errors = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/clip"

    @property
    def running(self) -> bool:
        return self._proc is not None

    def _read(self, proc: subprocess.Popen, ready: threading.Event) -> None:
        for line in proc.stdout:
            if line.startswith("ready"):
                ready.set()
            elif line.startswith("client"):
                with self._lock:
                    self.connections += 1

    def start(self, timeout: float = 20.0) -> RtspSource:
        """Run the server; return once it listens (a port still held by a dying server is retried)."""
        if self._proc is not None:
            return self
        env = dict(os.environ)
        env.pop("FS_RTSP_AUTH", None)
        if self.user:
            env["FS_RTSP_AUTH"] = f"{self.user}:{self.password}"  # not on the command line: ps shows that
        deadline, err = time.monotonic() + timeout, ""
        while True:
            # stdin is a pipe that only we hold: the server exits when it closes (this process died)
            errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 - a file, not a pipe nobody reads; closed in stop()
            proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port), "--file",
                                     str(self.clip)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                    text=True, env=env)
            ready = threading.Event()
            reader = threading.Thread(target=self._read, args=(proc, ready), daemon=True, name=f"rtsp-{self.port}")
            reader.start()
            while not ready.wait(0.02) and proc.poll() is None and time.monotonic() < deadline:
                pass
            if ready.is_set():
                break
            proc.kill()
            proc.wait(10)
            reader.join(5)
            proc.stdin.close()
            proc.stdout.close()
            errors.seek(0)
            err = errors.read().strip() or err
            errors.close()
            if "cannot listen" not in err or time.monotonic() > deadline:
                raise RuntimeError(f"RTSP test server did not start on port {self.port}: {err or 'timed out'}")
            time.sleep(0.05)
        self._proc, self._reader, self._errors = proc, reader, errors
        return self

    def stop(self) -> None:
        """Kill the server: no more frames, open connections closed, new ones refused."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        for f in (proc.stdin, proc.stdout, self._errors):
            f.close()

    def __enter__(self) -> RtspSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def grab_jpeg(url: str, timeout: float = 5.0, skip: int = 0):
    """One frame (BGR) from an MJPEG stream, after skipping ``skip`` frames."""
    import cv2

    with urllib.request.urlopen(url, timeout=timeout) as r:
        for _ in range(skip + 1):
            length = 0
            while True:
                line = r.readline()
                if not line:
                    raise AssertionError(f"{url}: stream ended")
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                elif line in (b"\r\n", b"\n") and length:
                    break
            jpg = r.read(length)
    return cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)


def red_pixels(frame) -> int:
    """Pixels of the overlay's red warning text (BGR ≈ 80, 80, 255) in the bottom-left corner: red far above green
    and blue and bright. The compact panel darkens only its own two lines, so skin and red boxes of the video beside
    it are in this corner too: the bounds are set where they stay out (on the clip, red at most ~60 above the
    others)."""
    h, w = frame.shape[:2]
    panel = frame[h - 130:, : w * 2 // 5].astype(int)
    red = panel[..., 2] - np.maximum(panel[..., 1], panel[..., 0])  # white text and grey video: about 0
    return int(((red > 70) & (panel[..., 2] > 130)).sum())
