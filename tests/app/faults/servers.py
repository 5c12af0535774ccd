"""Live sources that tests can really take down, on loopback, looping a video file: an HTTP MJPEG server
(``MjpegSource``, in this process) and an RTSP server (``RtspSource``, GStreamer's in a subprocess).

OpenCV/FFmpeg reads them as ``http://127.0.0.1:PORT/stream.mjpg`` and ``rtsp://127.0.0.1:PORT/clip`` like any
IP camera. ``stop()`` closes the listening socket *and* every open connection (the client sees the stream end,
then "connection refused" while it is down); ``start()`` serves again on the same port. MJPEG frames are
JPEG-encoded once up front and the RTSP server sends the clip's own H.264 (no re-encoding), so serving costs
almost no CPU next to the pipeline under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import numpy as np

BOUNDARY = "fsframe"


def encode_video(path: str | Path, max_frames: int = 0, quality: int = 80) -> list[bytes]:
    """Every frame of ``path`` (or the first ``max_frames``) as JPEG bytes."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames: list[bytes] = []
    try:
        while not max_frames or len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"no frames decoded from {path}")
    return frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart on the same port at once, whatever TIME_WAIT sockets remain


class MjpegSource:
    """A stoppable MJPEG stream looping ``frames`` at ``fps`` (per client, from the client's first frame)."""

    def __init__(self, frames: list[bytes], fps: float = 30.0, port: int | None = None) -> None:
        self.frames = frames
        self.fps = fps
        self.port = port or free_port()
        self.served = 0  # frames written, all clients together
        self.connections = 0  # clients accepted since construction (a reconnect adds one)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._down = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/stream.mjpg":
                    self.send_error(404)
                    return
                with owner._lock:
                    owner.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                period = 1.0 / owner.fps
                t0 = time.monotonic()
                k = 0
                try:
                    while not owner._down.is_set():
                        jpg = owner.frames[k % len(owner.frames)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}"
                                         f"\r\n\r\n".encode() + jpg + b"\r\n")
                        with owner._lock:
                            owner.served += 1
                        k += 1
                        time.sleep(max(0.0, t0 + k * period - time.monotonic()))
                except OSError:  # the client went away
                    pass
                self.close_connection = True

        return Handler

    def start(self) -> MjpegSource:
        if self._server is not None:
            return self
        self._down.clear()
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self._server = _Server(("127.0.0.1", self.port), self._handler())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"mjpeg-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the stream down: no more frames, open connections closed, new ones refused."""
        server, self._server = self._server, None
        if server is None:
            return
        self._down.set()
        server.shutdown()
        server.server_close()
        server.block_on_close = True
        if self._thread is not None:
            self._thread.join(5.0)
        time.sleep(1.5 / self.fps)  # let handler threads see the flag and close their sockets

    def __enter__(self) -> MjpegSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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


class LiveSource(Protocol):
    """What the helpers below need of a test server (``MjpegSource``, ``RtspSource``)."""

    port: int
    connections: int

    @property
    def url(self) -> str: ...

    def start(self) -> LiveSource: ...

    def stop(self) -> None: ...


# -- the pipeline under test, as a user runs it ------------------------------------------------------------

def shm_segments(pids: Iterable[int] | None = None) -> set[str]:
    """The fs_* segments in /dev/shm; with ``pids`` only those these processes created (fs_<pid>_…), which
    another run on the same machine (another test session, a soak) cannot add to."""
    names = {n for n in os.listdir("/dev/shm") if n.startswith("fs_")}
    if pids is None:
        return names
    own = {str(p) for p in pids}
    return {n for n in names if n.split("_")[1] in own}


def fault_env(enrolled_env: Path, folder: Path, **keys: object) -> Path:
    """A copy of the enrolled .env with extra keys (e.g. RECONNECT_MAX_DELAY=1) in ``folder``."""
    env = folder / ".env"
    extra = "".join(f"{k}={v}\n" for k, v in keys.items())
    env.write_text(enrolled_env.read_text() + extra)
    return env


def start_run(env: Path, *args: str) -> subprocess.Popen:
    """`facestream run …` in its own process group (as from a terminal), stderr captured to a file."""
    err = open(env.parent / "stderr.txt", "w")  # noqa: SIM115 - handed to the child; closed with it
    return subprocess.Popen([sys.executable, "-m", "app", "--env", str(env), "run", *args], stdout=err, stderr=err,
                            cwd=env.parent, start_new_session=True)


@contextlib.contextmanager
def live_run(env: Path, src: LiveSource, *args: str):
    """`facestream run … --source <the test server>`; whatever happens inside, the run is killed if it is
    still alive and the server stopped on the way out."""
    proc = start_run(env, *args, "--source", src.url)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        src.stop()


def stderr_of(env: Path) -> str:
    return (env.parent / "stderr.txt").read_text()


def lines(log: Path) -> int:
    """Complete lines of a log being written (a line the writer is still in the middle of is not counted)."""
    try:
        return log.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def track_rows(log: Path, skip: int = 0) -> list[dict]:
    """The complete lines of a track log being written, parsed (after the first ``skip``). A reader can catch
    the writer mid-line (a line crossing a page boundary becomes visible one page at a time): that part is
    left for the next read."""
    try:
        text = log.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(s) for s in text[: text.rfind("\n") + 1].splitlines()[skip:] if s.strip()]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, poll: float = 0.1):
    """Poll until ``predicate()`` is truthy; fail naming ``what`` (and the run's stderr if it ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) while waiting for {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stage_pids(parent: int) -> dict[str, int]:
    """{stage name: pid} of the stage processes of ``parent`` (they name themselves fs-<stage> in comm)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and comm.startswith("fs-"):
            out[comm[3:]] = int(entry)
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def latencies_ms(log: Path, skip: int = 0) -> np.ndarray:
    """capture→display latency of every frame in a track log (after the first ``skip``), in ms."""
    rows = track_rows(log, skip)
    return np.array([(r["display_ts"] - r["capture_ts"]) * 1000 for r in rows])


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
