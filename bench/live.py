"""The live-run harness the soak (``bench/soak.py``) and the fault tests (``tests/app/faults``) share.

An HTTP MJPEG server on loopback looping a video file (``MjpegSource``: OpenCV/FFmpeg reads
``http://127.0.0.1:PORT/stream.mjpg`` like any IP camera; ``stop()`` closes the listening socket *and* every open
connection, ``start()`` serves again on the same port; frames are JPEG-encoded once up front, so serving costs
almost no CPU next to the pipeline under test), `facestream run` started as a user starts it, and what to watch
of it from outside: its stage processes, their RSS and fds, its shared-memory segments and its track log.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
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
